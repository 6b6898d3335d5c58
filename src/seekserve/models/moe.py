"""DeepSeek mixture of experts: a router that picks top-k experts per token, routed experts held as
stacked tensors, and shared experts every token passes through.

Routing (all in float32), for each token:

    scores  = softmax(logits) (V2) or sigmoid(logits) (V3)
    choice  = scores + e_score_correction_bias              (noaux_tc only)
    groups  = the topk_group best of n_group expert groups, a group scored by its best expert
              (group_limited_greedy) or the sum of its two best (noaux_tc); other groups are out
    experts = top_k of choice within the kept groups
    weights = scores of those experts, renormalised to sum 1 if norm_topk_prob, × routed_scaling_factor

The routed experts run grouped by expert: the (token, expert) pairs are sorted by expert, and each
expert that received tokens runs one gate/up matmul and one down matmul over all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.errors import ModelLoadError
from seekserve.layers.fp8_checkpoint import Fp8BlockTensor, as_dense
from seekserve.layers.modules import empty_param
from seekserve.models.llama import GatedMLP

__all__ = [
    "DeepseekMoE",
    "ExpertLoader",
    "FusedExperts",
    "RouterConfig",
    "Routing",
    "TopKRouter",
    "expert_part",
    "run_grouped",
]

ScoringFunc = Literal["softmax", "sigmoid"]
TopKMethod = Literal["greedy", "group_limited_greedy", "noaux_tc"]
_SCORING_FUNCS = ("softmax", "sigmoid")
_TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")


@dataclass(frozen=True)
class RouterConfig:
    """How a MoE layer routes tokens, read from a DeepSeek config.json."""

    num_experts: int
    """Routed experts (n_routed_experts)."""
    top_k: int
    """Experts per token (num_experts_per_tok)."""
    scoring_func: ScoringFunc
    """softmax (DeepSeek-V2) or sigmoid (DeepSeek-V3) of the router logits."""
    topk_method: TopKMethod
    """greedy: plain top-k; group_limited_greedy: top-k within the best groups (V2);
    noaux_tc: like it with the bias-corrected scores and top-2-sum group scores (V3)."""
    num_groups: int = 1
    """Expert groups (n_group): expert e belongs to group e // (num_experts // n_group)."""
    topk_groups: int = 1
    """Groups a token may use (topk_group)."""
    norm_topk_prob: bool = False
    """Renormalise the chosen experts' weights to sum to 1."""
    routed_scaling_factor: float = 1.0
    """Multiplies the routed experts' weights."""

    def __post_init__(self) -> None:
        if self.scoring_func not in _SCORING_FUNCS:
            raise ModelLoadError(
                f"config.json has scoring_func={self.scoring_func!r}: "
                f"supported are {', '.join(_SCORING_FUNCS)}"
            )
        if self.topk_method not in _TOPK_METHODS:
            raise ModelLoadError(
                f"config.json has topk_method={self.topk_method!r}: supported are {', '.join(_TOPK_METHODS)}"
            )
        if self.num_groups < 1 or self.num_experts % self.num_groups:
            raise ModelLoadError(
                f"config.json has n_group={self.num_groups} for n_routed_experts={self.num_experts}: "
                f"the experts must split into equal groups"
            )
        if not 1 <= self.topk_groups <= self.num_groups:
            raise ModelLoadError(
                f"config.json has topk_group={self.topk_groups}: it must be in [1, n_group={self.num_groups}]"
            )
        reachable = self.topk_groups * (self.num_experts // self.num_groups)
        if not 1 <= self.top_k <= reachable:
            raise ModelLoadError(
                f"config.json has num_experts_per_tok={self.top_k}: it must be in [1, {reachable}], the "
                f"experts in topk_group={self.topk_groups} groups of {self.num_experts // self.num_groups}"
            )

    @classmethod
    def from_hf(cls, config: Any, scoring_func: str, topk_method: str) -> RouterConfig:
        """The config's routing; `scoring_func` and `topk_method` are the defaults where it names none."""
        groups = getattr(config, "n_group", None) or 1
        return cls(
            num_experts=config.n_routed_experts,
            top_k=config.num_experts_per_tok,
            scoring_func=getattr(config, "scoring_func", None) or scoring_func,  # type: ignore[arg-type]
            topk_method=getattr(config, "topk_method", None) or topk_method,  # type: ignore[arg-type]
            num_groups=groups,
            topk_groups=getattr(config, "topk_group", None) or groups,
            norm_topk_prob=bool(getattr(config, "norm_topk_prob", False)),
            routed_scaling_factor=float(getattr(config, "routed_scaling_factor", 1.0) or 1.0),
        )


class Routing(NamedTuple):
    weights: torch.Tensor
    """[num_tokens, top_k] float32 weight of each chosen expert."""
    expert_ids: torch.Tensor
    """[num_tokens, top_k] int64."""


class TopKRouter(nn.Module):
    """Router logits and top-k choice; weights kept in float32 as the checkpoints' routers are used."""

    e_score_correction_bias: torch.Tensor | None

    def __init__(self, cfg: RouterConfig, hidden_size: int):
        super().__init__()
        self.cfg = cfg
        self.weight = empty_param(cfg.num_experts, hidden_size, dtype=torch.float32)
        self.e_score_correction_bias = (
            empty_param(cfg.num_experts, dtype=torch.float32) if cfg.topk_method == "noaux_tc" else None
        )

    def forward(self, h: torch.Tensor) -> Routing:
        cfg = self.cfg
        logits = F.linear(h.float(), self.weight)  # [num_tokens, num_experts]
        scores = logits.softmax(dim=-1) if cfg.scoring_func == "softmax" else logits.sigmoid()
        choice = scores
        if self.e_score_correction_bias is not None:
            choice = scores + self.e_score_correction_bias
        if cfg.topk_method != "greedy" and cfg.topk_groups < cfg.num_groups:
            choice = self._keep_best_groups(choice)
        expert_ids = torch.topk(choice, cfg.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, expert_ids)
        if cfg.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return Routing(weights * cfg.routed_scaling_factor, expert_ids)

    def _keep_best_groups(self, choice: torch.Tensor) -> torch.Tensor:
        """choice with the experts outside each token's topk_group best groups pushed out of reach."""
        cfg = self.cfg
        grouped = choice.view(choice.shape[0], cfg.num_groups, -1)  # [tokens, groups, experts per group]
        if cfg.topk_method == "noaux_tc":
            group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(dim=-1)
            dropped = float("-inf")
        else:
            group_scores = grouped.max(dim=-1).values
            dropped = 0.0  # scores are positive, so a dropped expert never outranks a kept one
        best = torch.topk(group_scores, cfg.topk_groups, dim=-1, sorted=False).indices
        keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)
        return grouped.masked_fill(~keep.unsqueeze(-1), dropped).view_as(choice)


@runtime_checkable
class ExpertLoader(Protocol):
    """Stacked routed experts filled one expert's checkpoint tensor at a time (quantized or not)."""

    def load_expert(
        self, expert: int, proj: str, tensor: torch.Tensor | Fp8BlockTensor
    ) -> tuple[str, int]: ...


class FusedExperts(nn.Module):
    """The routed experts' gated MLPs as stacked tensors, the layout grouped-GEMM kernels take.

    gate_up_proj: [num_experts, 2 * intermediate, hidden] (gate rows, then up rows)
    down_proj:    [num_experts, hidden, intermediate]
    """

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, dtype: torch.dtype):
        super().__init__()
        self.num_experts = num_experts
        self.intermediate_size = intermediate_size
        self.gate_up_proj = empty_param(num_experts, 2 * intermediate_size, hidden_size, dtype=dtype)
        self.down_proj = empty_param(num_experts, hidden_size, intermediate_size, dtype=dtype)

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """x: [num_tokens, hidden] -> Σ_k weight_k · expert_k(x), [num_tokens, hidden]."""
        return run_grouped(x, routing, self.num_experts, self._expert)

    def _expert(self, expert: int, xs: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(xs, self.gate_up_proj[expert]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj[expert])

    def load_expert(self, expert: int, proj: str, tensor: torch.Tensor | Fp8BlockTensor) -> tuple[str, int]:
        """Copy one expert's gate_proj, up_proj or down_proj weight; return (parameter, part index)."""
        name, part, rows = expert_part(self.num_experts, self.intermediate_size, expert, proj)
        target = getattr(self, name).data[expert, rows]
        dense = as_dense(tensor, target.dtype)
        if target.shape != dense.shape:
            raise ValueError(f"shape {tuple(dense.shape)} does not fit {tuple(target.shape)}")
        target.copy_(dense)
        return name, part

    def checkpoint_params(self) -> dict[str, int]:
        """Checkpoint tensors that make up each stacked parameter."""
        return {"gate_up_proj": 2 * self.num_experts, "down_proj": self.num_experts}


def expert_part(num_experts: int, intermediate: int, expert: int, proj: str) -> tuple[str, int, slice]:
    """Where one expert's checkpoint tensor goes: (stacked parameter, part index, its rows there)."""
    if not 0 <= expert < num_experts:
        raise ValueError(f"expert {expert} is outside the config's n_routed_experts={num_experts}")
    if proj == "down_proj":
        return "down_proj", expert, slice(None)
    is_up = proj == "up_proj"
    rows = slice(intermediate, 2 * intermediate) if is_up else slice(0, intermediate)
    return "gate_up_proj", 2 * expert + is_up, rows


def run_grouped(
    x: torch.Tensor,
    routing: Routing,
    num_experts: int,
    expert_fn: Callable[[int, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Σ_k weight_k · expert_k(x) with each expert run once over all its tokens: the (token, expert)
    pairs are sorted by expert and `expert_fn(expert, xs [count, hidden])` maps each group."""
    top_k = routing.expert_ids.shape[1]
    flat_ids = routing.expert_ids.flatten()  # [num_tokens * top_k], pair i is token i // top_k
    order = torch.argsort(flat_ids, stable=True)
    tokens = order // top_k
    counts = torch.bincount(flat_ids, minlength=num_experts).tolist()
    xs = x.index_select(0, tokens)  # [pairs, hidden], grouped by expert
    ys = torch.empty_like(xs)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            end = start + count
            ys[start:end] = expert_fn(expert, xs[start:end])
            start = end
    weighted = ys.float() * routing.weights.flatten()[order, None]
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    return out.index_add_(0, tokens, weighted).to(x.dtype)


class DeepseekMoE(nn.Module):
    """Routed experts plus the shared experts (one gated MLP n_shared_experts times as wide)."""

    def __init__(self, config: Any, router: RouterConfig, dtype: torch.dtype):
        super().__init__()
        hidden, inter = config.hidden_size, config.moe_intermediate_size
        self.gate = TopKRouter(router, hidden)
        self.experts = FusedExperts(router.num_experts, hidden, inter, dtype)
        num_shared = getattr(config, "n_shared_experts", None) or 0
        self.shared_experts = GatedMLP(hidden, inter * num_shared, dtype) if num_shared else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.experts(h, self.gate(h))
        if self.shared_experts is not None:
            out = out + self.shared_experts(h)
        return out
