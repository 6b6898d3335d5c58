"""Sizing from config.json: published parameter counts, and exact counts against built models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from factories import deepseek_v2_config, deepseek_v3_config, llama_config, qwen2_config
from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.models import model_class
from seekserve.models.sizing import model_size, read_config

# The published config.json values (deepseek-ai/DeepSeek-V3; R1 and V3.1 share them), trimmed of the
# fields that do not affect size.
DEEPSEEK_V3: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": 129280,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "num_nextn_predict_layers": 1,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]},
}
DEEPSEEK_V2_LITE: dict[str, Any] = {
    **DEEPSEEK_V3,
    "model_type": "deepseek_v2",
    "vocab_size": 102400,
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "n_group": 1,
    "topk_group": 1,
    "topk_method": "greedy",
    "scoring_func": "softmax",
    "first_k_dense_replace": 1,
    "q_lora_rank": None,
    "num_nextn_predict_layers": None,
}
DEEPSEEK_V2: dict[str, Any] = {
    **DEEPSEEK_V2_LITE,
    "hidden_size": 5120,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "num_hidden_layers": 60,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 160,
    "n_group": 8,
    "topk_group": 3,
    "topk_method": "group_limited_greedy",
    "q_lora_rank": 1536,
}
LLAMA_3_1_8B: dict[str, Any] = {  # DeepSeek-R1-Distill-Llama-8B
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
}
QWEN2_5_7B: dict[str, Any] = {  # DeepSeek-R1-Distill-Qwen-7B
    "model_type": "qwen2",
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}


def test_deepseek_v3_is_671b_with_37b_activated() -> None:
    size = model_size(DEEPSEEK_V3)
    assert size.num_params == pytest.approx(671e9, rel=0.01)
    assert size.num_active_params == pytest.approx(37e9, rel=0.03)
    # The released checkpoint adds the MTP layer and its own copies of embedding and head: 685B.
    embed = 129280 * 7168
    assert size.num_params + size.num_mtp_params + 2 * embed == pytest.approx(685e9, rel=0.01)
    # MLA: (512 + 64) values per layer, 61 layers, 2 bytes: about 70 KB per token.
    assert size.kv_bytes_per_token("bf16") == 576 * 61 * 2 == 70272
    assert size.kv_bytes_per_token("fp8") == 576 * 61


def test_weight_bytes_per_dtype() -> None:
    size = model_size(DEEPSEEK_V3)
    bf16, fp8, int4 = (size.weight_bytes(d) for d in ("bf16", "fp8", "int4"))
    assert bf16 == 2 * size.num_params
    # fp8: about one byte per parameter (embedding and head stay bf16, plus 4 bytes per 128×128 block).
    assert size.num_params < fp8 < 1.01 * size.num_params
    assert 0.5 * size.num_params < int4 < 0.53 * size.num_params
    assert size.weight_bytes("fp8", include_mtp=True) > fp8
    with pytest.raises(ValueError, match="weight dtype 'fp4'"):
        size.weight_bytes("fp4")


def test_int8_is_one_byte_plus_a_bf16_scale_per_output_channel() -> None:
    size = model_size(LLAMA_3_1_8B)
    # Linear weights: per layer q 4096x4096, k and v 1024x4096, o 4096x4096, gate and up 14336x4096,
    # down 4096x14336; everything else (embedding, head, norms) stays bf16.
    linear = 32 * (4096 * 4096 * 2 + 1024 * 4096 * 2 + 14336 * 4096 * 3)
    rows = 32 * (4096 + 1024 + 1024 + 4096 + 14336 * 2 + 4096)
    other = size.num_params - linear
    assert size.weight_bytes("int8") == linear + 2 * rows + 2 * other


def test_routed_experts_and_shape_figures() -> None:
    size = model_size(DEEPSEEK_V3)
    # 58 MoE layers (61 - 3 dense) x 256 experts x gate, up, down of 2048x7168 each.
    experts = 58 * 256 * 3 * 2048 * 7168
    assert size.expert_weight_bytes("bf16") == 2 * experts
    assert size.expert_weight_bytes("fp8") == experts + 4 * 58 * 256 * 3 * (16 * 56)
    assert size.expert_weight_bytes("fp8", include_mtp=True) == experts * 59 // 58 + 4 * 59 * 256 * 3 * 896
    assert (size.num_layers, size.hidden_size, size.vocab_size) == (61, 7168, 129280)
    assert (size.num_attention_heads, size.num_kv_heads) == (128, 0)  # MLA: no heads in the cache
    dense = model_size(QWEN2_5_7B)
    assert dense.expert_weight_bytes() == 0
    assert (dense.num_layers, dense.num_attention_heads, dense.num_kv_heads) == (28, 28, 4)


@pytest.mark.parametrize(
    ("config", "total", "active"),
    [
        (DEEPSEEK_V2_LITE, 15.7e9, 2.4e9),
        (DEEPSEEK_V2, 236e9, 21e9),
        (LLAMA_3_1_8B, 8.03e9, 8.03e9 - 128256 * 4096),
        (QWEN2_5_7B, 7.62e9, 7.62e9 - 152064 * 3584),
    ],
    ids=["deepseek-v2-lite", "deepseek-v2", "llama-3.1-8b", "qwen2.5-7b"],
)
def test_published_sizes(config: dict[str, Any], total: float, active: float) -> None:
    size = model_size(config)
    assert size.num_params == pytest.approx(total, rel=0.01)
    assert size.num_active_params == pytest.approx(active, rel=0.03)


def test_dense_kv_bytes_are_keys_and_values_of_every_layer() -> None:
    assert model_size(LLAMA_3_1_8B).kv_bytes_per_token() == 2 * 8 * 128 * 32 * 2


_ARCH = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "deepseek_v2": "DeepseekV2ForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}


@pytest.mark.parametrize(
    "config",
    [
        deepseek_v3_config(),
        deepseek_v3_config(num_hidden_layers=5, moe_layer_freq=2, n_group=1, topk_group=1),
        deepseek_v2_config(),
        deepseek_v2_config(q_lora_rank=24, attention_bias=True, n_shared_experts=0),
        llama_config(),
        llama_config(attention_bias=True, mlp_bias=True, tie_word_embeddings=True),
        qwen2_config(),
    ],
    ids=["v3", "v3-moe-every-2nd", "v2-lite", "v2-bias-no-shared", "llama", "llama-biases-tied", "qwen2"],
)
def test_counts_equal_the_built_model(config: Any) -> None:
    values = config.to_dict()
    model = model_class(_ARCH[values["model_type"]])(config, torch.float32, 64)
    size = model_size(values)
    assert size.num_params == sum(p.numel() for p in model.parameters())
    assert size.kv_bytes_per_token("fp32") == model.kv_cache_spec().bytes_per_token(torch.float32)


def test_read_config_and_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(DEEPSEEK_V3))
    assert model_size(read_config(tmp_path)).num_params == model_size(DEEPSEEK_V3).num_params
    with pytest.raises(UnsupportedModelError, match="model_type 'gpt2'"):
        model_size({"model_type": "gpt2"})
    with pytest.raises(ModelLoadError, match="lacks an integer 'kv_lora_rank'"):
        model_size({k: v for k, v in DEEPSEEK_V3.items() if k != "kv_lora_rank"})
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_config(tmp_path / "missing")
