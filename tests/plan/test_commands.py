"""vLLM and SGLang command lines for the layouts that fit."""

from __future__ import annotations

from seekserve.plan.catalog import load_model
from seekserve.plan.commands import commands
from seekserve.plan.gpus import parse_cluster
from seekserve.plan.layouts import plan_layout
from seekserve.plan.memory import Layout, PlanConfig


def lines(
    model: str, gpus: str, layout: Layout, **options: object
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    config = PlanConfig(**options)  # type: ignore[arg-type]
    planned = load_model(model)
    plan = plan_layout(planned, parse_cluster(gpus), layout, config)
    assert plan.fits, plan.reason
    result = commands(plan, planned, config)
    return result.vllm, result.sglang


def test_one_node() -> None:
    vllm, sglang = lines("DeepSeek-R1", "8xH200", Layout(8), max_model_len=32768, concurrency=64)
    assert vllm == (
        "vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --max-model-len 32768 "
        "--gpu-memory-utilization 0.9 --max-num-seqs 64",
    )
    assert sglang == (
        "python3 -m sglang.launch_server --model-path deepseek-ai/DeepSeek-R1 --tp 8 --trust-remote-code "
        "--context-length 32768 --mem-fraction-static 0.9 --max-running-requests 64",
    )


def test_pipeline_over_two_nodes() -> None:
    vllm, sglang = lines("DeepSeek-V3", "2x8xH100", Layout(8, pp=2))
    assert vllm[0].startswith("# node 0: ray start --head")
    assert vllm[2].startswith(
        "vllm serve deepseek-ai/DeepSeek-V3 --tensor-parallel-size 8 --pipeline-parallel-size 2 "
        "--distributed-executor-backend ray"
    )
    assert sglang[0] == "# on node R = 0 .. 1:"
    assert "--tp 8 --pp-size 2 --nnodes 2 --node-rank R --dist-init-addr NODE0_IP:5000" in sglang[1]


def test_dp_attention_with_expert_parallelism_over_two_nodes() -> None:
    vllm, sglang = lines("DeepSeek-V3", "2x8xH100", Layout(1, dp=16, expert_parallel=True))
    head = "--data-parallel-size-local 8 --data-parallel-address NODE0_IP --data-parallel-rpc-port 13345"
    assert vllm[0] == "# node 0:"
    assert vllm[1].startswith(
        f"vllm serve deepseek-ai/DeepSeek-V3 --data-parallel-size 16 --enable-expert-parallel {head} "
    )
    assert vllm[2] == "# node 1:"
    assert f"{head} --headless --data-parallel-start-rank 8 " in vllm[3]
    assert "--max-num-seqs 16" in vllm[1]  # 256 sequences over 16 DP ranks
    assert "--tp 16 --dp 16 --enable-dp-attention --ep-size 16 --nnodes 2" in sglang[1]


def test_replicas_on_each_node_behind_the_gateway() -> None:
    vllm, sglang = lines("DeepSeek-R1-Distill-Qwen-7B", "2x8xH100", Layout(1, dp=16), max_model_len=8192)
    assert vllm[0] == "# on each of the 2 nodes, with seekserve gateway in front of them:"
    assert vllm[1].startswith(
        "vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --data-parallel-size 8 --tensor-parallel-size 1 "
    )
    assert sglang[1].startswith(
        "python3 -m sglang.launch_server --model-path deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --tp 1 --dp 8 "
    )
    assert "--max-running-requests 128" in sglang[1]  # 256 sequences over 2 servers


def test_quantization_kv_dtype_and_mtp_flags() -> None:
    vllm, sglang = lines(
        "DeepSeek-R1-Distill-Qwen-7B", "1xH100", Layout(1), quantization="fp8", kv_cache_dtype="fp8"
    )
    assert vllm[0].endswith("--kv-cache-dtype fp8 --quantization fp8")
    assert sglang[0].endswith("--kv-cache-dtype fp8_e4m3 --quantization fp8")
    vllm, sglang = lines("DeepSeek-R1-Distill-Qwen-7B", "1xH100", Layout(1), quantization="int4")
    assert (
        vllm[0]
        == sglang[0]
        == (
            "# give the path of an AWQ or GPTQ (int4) checkpoint of "
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B instead"
        )
    )
    vllm, sglang = lines("DeepSeek-V3", "4x8xH100", Layout(8, pp=4), quantization="bf16", include_mtp=True)
    assert (
        vllm[0]
        == "# deepseek-ai/DeepSeek-V3 is released in FP8: give the path of its BF16 conversion instead"
    )
    assert vllm[-1].endswith(
        """--speculative-config '{"method": "deepseek_mtp", "num_speculative_tokens": 1}'"""
    )
    assert "--speculative-algorithm EAGLE --speculative-num-steps 1" in sglang[-1]
