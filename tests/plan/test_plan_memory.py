"""Per-GPU memory of a layout, against figures worked out by hand from the published configs.

fp8 stores a linear weight in 1 byte plus a float32 scale per 128x128 block; bf16 stores 2 bytes;
embeddings, norms and the router stay bf16. The budget is 0.90 of the device memory the driver
reports; activations are 8192 tokens x hidden x 16 values x 2 bytes plus 256 rows (per pool) of
float32 logits; the runtime is 2 GiB.
"""

from __future__ import annotations

import pytest

from seekserve.errors import ConfigError
from seekserve.plan.catalog import load_model
from seekserve.plan.gpus import parse_cluster
from seekserve.plan.memory import Layout, PlanConfig, gpu_memory, layout_error

GIB = 1 << 30
H100 = 81559 << 20  # 85,520,809,984 bytes
H200 = 143771 << 20
RUNTIME = 2 * GIB


def fp8(rows: int, cols: int) -> int:
    """Bytes of one fp8 linear weight with its block scales."""
    return rows * cols + 4 * -(-rows // 128) * -(-cols // 128)


def deepseek_v3_fp8_bytes() -> tuple[int, int]:
    """(all weights, routed experts) of DeepSeek-V3 in fp8, without the MTP layer."""
    hidden, layers, dense_layers, moe_layers = 7168, 61, 3, 58
    attention = (
        fp8(1536, hidden)  # q_a_proj
        + fp8(128 * (128 + 64), 1536)  # q_b_proj: 128 heads x (nope 128 + rope 64)
        + fp8(512 + 64, hidden)  # kv_a_proj_with_mqa: the latent and the rope key
        + fp8(128 * (128 + 128), 512)  # kv_b_proj: 128 heads x (nope 128 + v 128)
        + fp8(hidden, 128 * 128)  # o_proj
        + 2 * (512 + 1536 + 2 * hidden)  # kv_a and q_a layernorms, two layer norms (bf16)
    )
    dense_mlp = 3 * fp8(18432, hidden)  # gate, up, down (down is its transpose: same bytes)
    expert = 3 * fp8(2048, hidden)
    moe = 2 * (256 * hidden + 256) + 256 * expert + expert  # router + bias (bf16), 256 routed, 1 shared
    embeddings = 2 * (2 * 129280 * hidden + hidden)  # embed_tokens, lm_head and the final norm (bf16)
    total = layers * attention + dense_layers * dense_mlp + moe_layers * moe + embeddings
    return total, moe_layers * 256 * expert


def test_deepseek_v3_fp8_weights_are_671b_in_about_673_gb() -> None:
    total, experts = deepseek_v3_fp8_bytes()
    size = load_model("DeepSeek-V3").size
    assert size.weight_bytes("fp8") == total == 673_150_582_112
    assert size.expert_weight_bytes("fp8") == experts == 654_068_416_512
    assert size.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2 == 70_272


def test_deepseek_v3_tp8_on_8xh200() -> None:
    total, experts = deepseek_v3_fp8_bytes()
    memory = gpu_memory(load_model("DeepSeek-V3"), parse_cluster("8xH200"), Layout(8), PlanConfig())
    assert memory.budget_bytes == int(0.9 * H200) == 135_679_338_086
    assert memory.weights_bytes == (total - experts) // 8 + experts // 8 == 84_143_822_764
    assert memory.activation_bytes == 8192 * 7168 * 16 * 2 + 256 * 129280 * 4 == 2_011_430_912
    assert memory.runtime_bytes == RUNTIME
    assert memory.kv_cache_bytes == 135_679_338_086 - 84_143_822_764 - 2_011_430_912 - RUNTIME
    # MLA: every tensor-parallel rank keeps the whole 576-value latent row of all 61 layers.
    assert memory.kv_bytes_per_token == 70_272
    assert memory.kv_tokens == 47_376_600_762 // 70_272 == 674_188


def test_deepseek_v3_tp8_pp2_on_2x8xh100() -> None:
    total, experts = deepseek_v3_fp8_bytes()
    memory = gpu_memory(load_model("DeepSeek-V3"), parse_cluster("2x8xH100"), Layout(8, pp=2), PlanConfig())
    # The first stage holds ceil(61 / 2) = 31 of the 61 layers: 31/61 of the weights, split 8 ways.
    assert memory.weights_bytes == -(-(total - experts) * 31 // (61 * 8)) + -(-experts * 31 // (61 * 8))
    assert memory.weights_bytes == 42_761_614_849
    assert memory.kv_bytes_per_token == 31 * 576 * 2 == 35_712
    assert memory.kv_cache_bytes == int(0.9 * H100) - 42_761_614_849 - 2_011_430_912 - RUNTIME
    assert memory.kv_tokens == 30_048_199_576 // 35_712 == 841_403


def test_deepseek_v3_dp_attention_and_ep16_on_2x8xh100() -> None:
    total, experts = deepseek_v3_fp8_bytes()
    layout = Layout(1, dp=16, expert_parallel=True)
    memory = gpu_memory(load_model("DeepSeek-V3"), parse_cluster("2x8xH100"), layout, PlanConfig())
    # Everything but the routed experts on every GPU (vLLM's placement), the experts split 16 ways.
    assert memory.weights_bytes == (total - experts) + experts // 16 == 59_961_441_632
    assert memory.activation_bytes == 8192 * 7168 * 32 + 16 * 129280 * 4  # 256 rows over 16 pools
    assert memory.kv_bytes_per_token == 70_272
    assert layout.num_pools == 16 and layout.name == "DP16 attention + EP16"


def test_deepseek_v3_does_not_fit_8xh100_even_in_fp8() -> None:
    memory = gpu_memory(load_model("DeepSeek-V3"), parse_cluster("8xH100"), Layout(8), PlanConfig())
    # 84.1 GB of weights per GPU: more than the 77.0 GB budget, and with 2 GiB of runtime more than
    # the whole 85.5 GB: 8 x 85.5 GB = 684 GB holds the 673 GB of weights with nothing to run them.
    assert memory.weights_bytes + memory.runtime_bytes > H100
    assert memory.kv_cache_bytes < 0 and memory.kv_tokens == 0


def test_r1_distill_qwen_7b_on_one_h100() -> None:
    # embed and lm_head 152064 x 3584 each, norm 3584; per layer q and o 3584 x 3584, k and v
    # 512 x 3584 (4 KV heads of 128), q/k/v biases, two norms, gate/up/down 18944 x 3584.
    layer = 2 * 3584 * 3584 + 2 * 512 * 3584 + (3584 + 2 * 512) + 2 * 3584 + 3 * 18944 * 3584
    params = 28 * layer + 2 * 152064 * 3584 + 3584
    assert params == 7_615_616_512
    model = load_model("DeepSeek-R1-Distill-Qwen-7B")
    memory = gpu_memory(model, parse_cluster("1xH100"), Layout(1), PlanConfig())
    assert memory.weights_bytes == 2 * params
    assert memory.activation_bytes == 8192 * 3584 * 32 + 256 * 152064 * 4 == 1_095_237_632
    assert memory.kv_bytes_per_token == 28 * 2 * 4 * 128 * 2 == 57_344
    assert memory.kv_cache_bytes == int(0.9 * H100) - 2 * params - 1_095_237_632 - RUNTIME == 58_494_774_681
    assert memory.kv_tokens == 58_494_774_681 // 57_344 == 1_020_067
    # TP4 splits the 4 KV heads one per rank; TP8 would need 28 heads divisible by 8.
    tp4 = gpu_memory(model, parse_cluster("4xH100"), Layout(4), PlanConfig())
    assert tp4.kv_bytes_per_token == 57_344 // 4
    assert layout_error(model, Layout(8)) == (
        "TP8 does not divide the 28 attention heads (vLLM and SGLang require it)"
    )
    assert layout_error(model, Layout(4)) is None


def test_r1_distill_llama_70b_tp8_on_8xh100() -> None:
    layer = 2 * 8192 * 8192 + 2 * 1024 * 8192 + 2 * 8192 + 3 * 28672 * 8192
    params = 80 * layer + 2 * 128256 * 8192 + 8192
    assert params == 70_553_706_496
    memory = gpu_memory(
        load_model("DeepSeek-R1-Distill-Llama-70B"), parse_cluster("8xH100"), Layout(8), PlanConfig()
    )
    assert memory.weights_bytes == 2 * params // 8 == 17_638_426_624
    assert memory.kv_bytes_per_token == 80 * 2 * 1 * 128 * 2 == 40_960  # one of the 8 KV heads per rank
    activations = 8192 * 8192 * 32 + 256 * 128256 * 4
    assert memory.kv_cache_bytes == int(0.9 * H100) - 17_638_426_624 - activations - RUNTIME
    assert memory.kv_tokens == memory.kv_cache_bytes // 40_960 == 1_340_429


def test_kv_cache_dtype_and_quantization() -> None:
    model = load_model("DeepSeek-R1-Distill-Llama-70B")
    config = PlanConfig(quantization="int4", kv_cache_dtype="fp8")
    memory = gpu_memory(model, parse_cluster("8xH100"), Layout(8), config)
    assert memory.kv_bytes_per_token == 20_480
    assert memory.weights_bytes == -(-model.size.weight_bytes("int4") // 8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quantization": "fp4"}, "quantization 'fp4' is not one of bf16, fp8, int8, int4"),
        ({"kv_cache_dtype": "int8"}, "kv_cache_dtype 'int8' is not one of bf16, fp8"),
        ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization must be in \(0, 1\], got 1.5"),
        ({"max_model_len": 0}, "max_model_len must be at least 1"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
    ],
)
def test_plan_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlanConfig(**options)  # type: ignore[arg-type]
