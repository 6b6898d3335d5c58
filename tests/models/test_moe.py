"""DeepSeek MoE routing and grouped experts against transformers' own modules."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from factories import deepseek_v2_config, deepseek_v3_config
from seekserve.errors import ModelLoadError
from seekserve.models.moe import FusedExperts, RouterConfig, Routing, TopKRouter

HIDDEN = 64


def _sorted_routing(weights: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = ids.argsort(dim=-1)
    return weights.gather(1, order), ids.gather(1, order)


def _compare_routers(config: Any, reference: Any, scoring: str, method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    router = TopKRouter(RouterConfig.from_hf(config, scoring, method), HIDDEN)
    with torch.no_grad():
        router.weight.copy_(torch.randn(router.weight.shape, generator=gen))
        reference.weight.copy_(router.weight)
        if router.e_score_correction_bias is not None:
            router.e_score_correction_bias.copy_(torch.randn(config.n_routed_experts, generator=gen) * 0.5)
            reference.e_score_correction_bias.copy_(router.e_score_correction_bias)
        h = torch.randn(200, HIDDEN, generator=gen)
        weights, ids = _sorted_routing(*router(h))
        _, ref_weights, ref_ids = reference(h)
    ref_weights, ref_ids = _sorted_routing(ref_weights, ref_ids)
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(weights, ref_weights)


@pytest.mark.parametrize("norm_topk_prob", [True, False])
@pytest.mark.parametrize(("n_group", "topk_group"), [(4, 2), (4, 1), (1, 1)])
def test_v3_sigmoid_noaux_tc_router_matches_transformers(
    n_group: int, topk_group: int, norm_topk_prob: bool
) -> None:
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    config = deepseek_v3_config(
        n_routed_experts=16,
        num_experts_per_tok=4,
        n_group=n_group,
        topk_group=topk_group,
        norm_topk_prob=norm_topk_prob,
    )
    _compare_routers(config, DeepseekV3TopkRouter(config), "sigmoid", "noaux_tc")


@pytest.mark.parametrize("method", ["greedy", "group_limited_greedy"])
def test_v2_softmax_router_matches_transformers(method: str) -> None:
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter

    config = deepseek_v2_config(
        n_routed_experts=12,
        num_experts_per_tok=3,
        n_group=4,
        topk_group=2,
        topk_method=method,
        routed_scaling_factor=16.0,
    )
    _compare_routers(config, DeepseekV2TopkRouter(config), "softmax", "greedy")


def test_group_limit_keeps_every_choice_inside_the_best_groups() -> None:
    cfg = RouterConfig(16, 3, "sigmoid", "noaux_tc", num_groups=4, topk_groups=2)
    router = TopKRouter(cfg, HIDDEN)
    with torch.no_grad():
        router.weight.normal_()
        assert router.e_score_correction_bias is not None
        router.e_score_correction_bias.zero_()
        routing = router(torch.randn(50, HIDDEN))
    groups_used = (routing.expert_ids // 4).tolist()
    assert all(len(set(g)) <= 2 for g in groups_used)


@pytest.mark.parametrize("num_tokens", [1, 7, 64])
def test_grouped_experts_match_transformers_experts(num_tokens: int) -> None:
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Experts

    config = deepseek_v3_config(n_routed_experts=8, moe_intermediate_size=32)
    reference = DeepseekV3Experts(config)
    experts = FusedExperts(8, HIDDEN, 32, torch.float32)
    gen = torch.Generator().manual_seed(num_tokens)
    with torch.no_grad():
        experts.gate_up_proj.copy_(torch.randn(experts.gate_up_proj.shape, generator=gen) * 0.2)
        experts.down_proj.copy_(torch.randn(experts.down_proj.shape, generator=gen) * 0.2)
        reference.gate_up_proj.copy_(experts.gate_up_proj)
        reference.down_proj.copy_(experts.down_proj)
        x = torch.randn(num_tokens, HIDDEN, generator=gen)
        ids = torch.stack([torch.randperm(8, generator=gen)[:2] for _ in range(num_tokens)])
        weights = torch.rand(num_tokens, 2, generator=gen)
        torch.testing.assert_close(experts(x, Routing(weights, ids)), reference(x, ids, weights))


def test_all_tokens_on_one_expert() -> None:
    experts = FusedExperts(4, HIDDEN, 16, torch.float32)
    with torch.no_grad():
        experts.gate_up_proj.normal_()
        experts.down_proj.normal_()
        x = torch.randn(5, HIDDEN)
        out = experts(x, Routing(torch.full((5, 1), 0.5), torch.full((5, 1), 2)))
        gate, up = (x @ experts.gate_up_proj[2].T).chunk(2, dim=-1)
        expected = 0.5 * (torch.nn.functional.silu(gate) * up) @ experts.down_proj[2].T
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(scoring_func="relu"), "scoring_func='relu'"),
        (dict(topk_method="random"), "topk_method='random'"),
        (dict(num_groups=3), "n_group=3 for n_routed_experts=16"),
        (dict(topk_groups=5), r"topk_group=5: it must be in \[1, n_group=4\]"),
        (dict(top_k=9), r"num_experts_per_tok=9: it must be in \[1, 8\]"),
    ],
)
def test_router_config_rejects_impossible_values(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = dict(
        num_experts=16, top_k=4, scoring_func="sigmoid", topk_method="noaux_tc", num_groups=4, topk_groups=2
    )
    with pytest.raises(ModelLoadError, match=message):
        RouterConfig(**{**values, **kwargs})
