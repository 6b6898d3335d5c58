"""Which layouts fit: published facts about DeepSeek-V3/R1 and the distilled models."""

from __future__ import annotations

import pytest

from seekserve.plan.catalog import load_model
from seekserve.plan.gpus import parse_cluster
from seekserve.plan.layouts import candidate_layouts, default_clusters, plan_layout, plan_layouts
from seekserve.plan.memory import Layout, PlanConfig


def fits(model: str, gpus: str, layout: Layout, **options: object) -> bool:
    return plan_layout(load_model(model), parse_cluster(gpus), layout, PlanConfig(**options)).fits  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1"])
def test_published_facts_about_the_671b_models(model: str) -> None:
    # FP8 (as released): one 8xH200 node holds it; one 8xH100 node does not (673 GB of weights in
    # 8 x 85.5 GB); two 8xH100 nodes do, as TP8 x PP2 or with DP attention and expert parallelism.
    assert fits(model, "8xH200", Layout(8))
    assert not fits(model, "8xH100", Layout(8))
    assert fits(model, "2x8xH100", Layout(8, pp=2))
    assert fits(model, "2x8xH100", Layout(1, dp=16, expert_parallel=True))
    assert fits(model, "4x8xH100", Layout(1, dp=32, expert_parallel=True))
    # BF16 (1.34 TB): neither node, not even 8xH200 (1.2 TB).
    assert not fits(model, "8xH100", Layout(8), quantization="bf16")
    assert not fits(model, "8xH200", Layout(8), quantization="bf16")
    assert fits(model, "4x8xH100", Layout(8, pp=4), quantization="bf16")


def test_reasons_give_the_figures_and_the_fix() -> None:
    v3 = load_model("DeepSeek-V3")
    plan = plan_layout(v3, parse_cluster("8xH100"), Layout(8), PlanConfig())
    assert plan.reason == (
        "per GPU, weights 84.1 GB + activations 2.0 GB + runtime 2.1 GB = 88.3 GB, over the budget of "
        "77.0 GB (0.90 of the GPU's memory); weights and runtime alone exceed all 85.5 GB of one H100"
    )
    assert plan.max_concurrent_tokens == 0 and plan.notes == ()
    llama = load_model("DeepSeek-R1-Distill-Llama-70B")
    short = plan_layout(llama, parse_cluster("2xH100"), Layout(2), PlanConfig())
    assert not short.fits
    assert short.reason.endswith(f"lower --max-model-len to {short.memory.kv_tokens:,}")
    assert short.memory.kv_tokens < 131072
    assert plan_layout(llama, parse_cluster("2xH100"), Layout(2), PlanConfig(max_model_len=8192)).fits


def test_concurrent_tokens_count_every_pool() -> None:
    v3 = load_model("DeepSeek-V3")
    plan = plan_layout(v3, parse_cluster("2x8xH100"), Layout(1, dp=16, expert_parallel=True), PlanConfig())
    assert plan.max_concurrent_tokens == 16 * plan.memory.kv_tokens
    assert plan.max_full_sequences == 16 * (plan.memory.kv_tokens // 163840)
    assert plan.tokens_per_sequence == plan.max_concurrent_tokens // 256


def test_candidates_for_a_671b_model_on_two_nodes() -> None:
    layouts = candidate_layouts(load_model("DeepSeek-R1"), parse_cluster("2x8xH100"), PlanConfig())
    assert [layout.name for layout in layouts] == ["DP2 x TP8", "TP8 x PP2", "TP16", "DP16 attention + EP16"]


def test_candidates_for_a_small_model_start_at_the_smallest_tp_that_fits() -> None:
    qwen = load_model("DeepSeek-R1-Distill-Qwen-7B")
    assert [x.name for x in candidate_layouts(qwen, parse_cluster("8xH100"), PlanConfig())] == [
        "DP8 x TP1",
        "TP8",
    ]
    llama = load_model("DeepSeek-R1-Distill-Llama-70B")
    plans = plan_layouts(llama, [parse_cluster("8xH100")], PlanConfig())
    assert [(p.layout.name, p.fits) for p in plans] == [("DP2 x TP4", True), ("TP8", True)]
    qwen_tp8 = plan_layouts(qwen, [parse_cluster("8xH100")], PlanConfig())[1]
    assert not qwen_tp8.fits and "does not divide the 28 attention heads" in qwen_tp8.reason


def test_notes_on_links_and_fp8_support() -> None:
    qwen = load_model("DeepSeek-R1-Distill-Qwen-14B")
    plan = plan_layout(qwen, parse_cluster("2xL40S"), Layout(2), PlanConfig(max_model_len=8192))
    assert plan.fits
    assert plan.notes == ("TP2 all-reduces over PCIe Gen4, 64 GB/s every layer: expect low throughput",)
    a100 = plan_layout(qwen, parse_cluster("1xA100"), Layout(1), PlanConfig(quantization="fp8"))
    assert a100.notes == ("A100-80G has no FP8 tensor cores: FP8 weights run weight-only (Marlin), slower",)


def test_default_clusters_follow_the_size_of_the_weights() -> None:
    assert default_clusters(15 * 10**9) == "1xRTX4090,1xL40S,1xH100,8xH100"
    assert default_clusters(141 * 10**9) == "1xH100,2xH100,4xH100,8xH100,8xH200"
    assert default_clusters(673 * 10**9) == "8xH100,8xH200,2x8xH100,4x8xH100"
