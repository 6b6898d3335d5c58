"""DeepSeek-V2, V2-Lite, V3, V3.1 and R1: multi-head latent attention and DeepSeek MoE.

Layer i runs a DeepSeek MoE when the config has routed experts, i >= first_k_dense_replace and
i % moe_layer_freq == 0; otherwise a dense gated MLP. The KV cache holds one latent row per token
and layer (mla.py); the experts are stacked tensors (moe.py). Checkpoint names, as released:

    model.layers.{i}.self_attn.{q_a_proj, q_a_layernorm, q_b_proj | q_proj}      query
    model.layers.{i}.self_attn.{kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj}
    model.layers.{i}.mlp.{gate_proj, up_proj, down_proj}                         dense layers
    model.layers.{i}.mlp.gate.{weight, e_score_correction_bias}                  router
    model.layers.{i}.mlp.experts.{e}.{gate_proj, up_proj, down_proj}.weight      -> stacked experts
    model.layers.{i}.mlp.shared_experts.{gate_proj, up_proj, down_proj}.weight
    model.layers.{N + k}.*    the k-th multi-token-prediction layer (N = num_hidden_layers): skipped
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.layers.fp8_checkpoint import Fp8BlockTensor
from seekserve.layers.modules import RotaryEmbedding
from seekserve.models.base import DecoderLayer, DecoderLM, DecoderStack, KVCacheSpec
from seekserve.models.llama import GatedMLP
from seekserve.models.mla import MLAConfig, MLAttention
from seekserve.models.moe import DeepseekMoE, ExpertLoader, RouterConfig
from seekserve.models.rope import rope_parameters

__all__ = ["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "is_moe_layer"]

log = logging.getLogger(__name__)

_EXPERT_WEIGHT = re.compile(
    r"^(?P<module>.+\.experts)\.(?P<expert>\d+)\.(?P<proj>gate|up|down)_proj\.weight$"
)


def is_moe_layer(config: Any, layer_idx: int) -> bool:
    """Whether layer `layer_idx` is a MoE layer (first_k_dense_replace, moe_layer_freq)."""
    if not getattr(config, "n_routed_experts", None):
        return False
    first = getattr(config, "first_k_dense_replace", 0) or 0
    freq = getattr(config, "moe_layer_freq", 1) or 1
    return layer_idx >= first and layer_idx % freq == 0


def deepseek_decoder_layer(
    config: Any, layer_idx: int, router: RouterConfig | None, dtype: torch.dtype
) -> DecoderLayer:
    """MLA, then DeepSeek MoE or a dense gated MLP."""
    mlp: nn.Module
    if router is not None and is_moe_layer(config, layer_idx):
        mlp = DeepseekMoE(config, router, dtype)
    else:
        mlp = GatedMLP(config.hidden_size, config.intermediate_size, dtype)
    attn = MLAttention(MLAConfig.from_hf(config), dtype)
    return DecoderLayer(attn, mlp, config.hidden_size, config.rms_norm_eps, dtype)


class DeepseekV2ForCausalLM(DecoderLM):
    """DeepSeek-V2 and V2-Lite (and V2.5): softmax routing, greedy or group-limited top-k."""

    default_scoring_func: ClassVar[str] = "softmax"
    default_topk_method: ClassVar[str] = "greedy"
    stacked_params: ClassVar[dict[str, tuple[str, int]]] = {
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(self, config: Any, dtype: torch.dtype, max_positions: int):
        super().__init__(config, dtype, max_positions)
        act = getattr(config, "hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"config.json has hidden_act={act!r}; DeepSeek models use silu")
        router = None
        if getattr(config, "n_routed_experts", None):
            router = RouterConfig.from_hf(config, self.default_scoring_func, self.default_topk_method)
        self.attention = MLAConfig.from_hf(config)
        layers = (deepseek_decoder_layer(config, i, router, dtype) for i in range(config.num_hidden_layers))
        self.model = DecoderStack(config, layers, dtype)
        self.init_lm_head()
        inv_freq, scaling = rope_parameters(config, config.qk_rope_head_dim)
        self.rotary = RotaryEmbedding(inv_freq, scaling, max_positions)
        self.num_mtp_layers = getattr(config, "num_nextn_predict_layers", 0) or 0

    def kv_cache_spec(self) -> KVCacheSpec:
        return KVCacheSpec(len(self.model.layers), ((self.attention.cache_row_size,),))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor | Fp8BlockTensor]]) -> None:
        """Load the decoder; the multi-token-prediction layers after it are skipped."""
        super().load_weights(self._without_mtp(weights))
        for module in self.modules():
            if isinstance(module, MLAttention):
                module.absorb()

    def _without_mtp(
        self, weights: Iterable[tuple[str, torch.Tensor | Fp8BlockTensor]]
    ) -> Iterator[tuple[str, torch.Tensor | Fp8BlockTensor]]:
        first = self.config.num_hidden_layers
        indices = "|".join(str(first + k) for k in range(self.num_mtp_layers))
        mtp = re.compile(rf"^model\.layers\.({indices})\.") if indices else None
        num_skipped = 0
        for name, tensor in weights:
            if mtp is not None and mtp.match(name):
                num_skipped += 1
                continue
            yield name, tensor
        if num_skipped:
            log.info("skipped %d tensors of the multi-token-prediction layer(s)", num_skipped)

    def _load_one(self, name: str, tensor: torch.Tensor | Fp8BlockTensor) -> tuple[str, int]:
        match = _EXPERT_WEIGHT.match(name)
        if match is None:
            return super()._load_one(name, tensor)
        try:
            module = self.get_submodule(match["module"])
        except AttributeError:
            module = None
        if not isinstance(module, ExpertLoader):
            raise ModelLoadError(f"the checkpoint has a tensor {name} that this model does not use")
        try:
            param, part = module.load_expert(int(match["expert"]), f"{match['proj']}_proj", tensor)
        except ValueError as e:
            raise ModelLoadError(f"checkpoint tensor {name}: {e}") from None
        return f"{match['module']}.{param}", part


class DeepseekV3ForCausalLM(DeepseekV2ForCausalLM):
    """DeepSeek-V3, V3.1 and R1: sigmoid routing with bias-corrected group-limited top-k (noaux_tc)."""

    default_scoring_func: ClassVar[str] = "sigmoid"
    default_topk_method: ClassVar[str] = "noaux_tc"
