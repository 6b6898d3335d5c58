"""GGUF round trip: a tiny model written to GGUF (F32, Q8_0, K-quants) runs in seekserve exactly as
transformers runs the weights the file dequantizes to (float32 greedy tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factories import (
    deepseek_v2_config,
    deepseek_v3_config,
    gemma3_config,
    greedy,
    hf_greedy,
    llama_config,
    make_model_dir,
    qwen2_config,
    random_prompts,
)
from gguf_factories import Q, Storage, save_reference, write_gguf
from seekserve import LLM

PROMPTS = random_prompts(3, lengths=[4, 21, 37], seed=5)
STORAGES = {
    "f32": Storage(Q.F32),
    "q8_0": Storage(Q.Q8_0),
    "q4_k+q6_k": Storage(Q.Q4_K, embedding=Q.Q6_K),
}
# K-quant blocks hold 256 values, so those models need in-features that are multiples of 256.
WIDE = dict(hidden_size=256, intermediate_size=512)
ARCHS = {
    "llama": (llama_config, {}),
    "qwen2": (qwen2_config, {}),
    "gemma3": (gemma3_config, dict(head_dim=64, query_pre_attn_scalar=64)),
}


def make_gguf(tmp_path: Path, arch: str, storage_name: str, **overrides: Any) -> tuple[Path, Path]:
    """(GGUF file, Hugging Face directory of the weights it dequantizes to)."""
    make_config, arch_overrides = ARCHS[arch]
    size = WIDE if storage_name.startswith("q4_k") else {}
    model_dir = make_model_dir(tmp_path / "hf", make_config(**arch_overrides, **size, **overrides))
    gguf_path = tmp_path / f"{arch}-{storage_name}.gguf"
    weights = write_gguf(gguf_path, model_dir, arch, STORAGES[storage_name])
    return gguf_path, save_reference(model_dir, weights, tmp_path / "reference")


@pytest.mark.parametrize("storage_name", list(STORAGES))
@pytest.mark.parametrize("arch", list(ARCHS))
def test_greedy_tokens_match_dequantized_reference(tmp_path: Path, arch: str, storage_name: str) -> None:
    assert_matches_reference(*make_gguf(tmp_path, arch, storage_name))


def assert_matches_reference(gguf_path: Path, reference: Path) -> None:
    llm = LLM(str(gguf_path), dtype="float32", num_kv_blocks=40, max_num_batched_tokens=256, max_num_seqs=4)
    outs = llm.generate(PROMPTS, greedy(12))
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(reference, PROMPTS, 12)


def test_llama3_rope_scaling_from_rope_freqs(tmp_path: Path) -> None:
    """Llama 3.1 GGUFs carry their rope scaling as a rope_freqs tensor, not as metadata."""
    rope = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    assert_matches_reference(*make_gguf(tmp_path, "llama", "f32", rope_parameters=rope))


# GGUF keeps YaRN's mscale_all_dim only (llama.cpp assumes mscale equals it), and Q8_0 blocks need
# in-features that are multiples of 32.
V3_YARN = {**deepseek_v3_config().rope_parameters, "mscale": 0.8, "mscale_all_dim": 0.8}
DEEPSEEK = {
    "v3": lambda: deepseek_v3_config(q_lora_rank=64, moe_intermediate_size=32, rope_parameters=V3_YARN),
    "v2-lite": lambda: deepseek_v2_config(moe_intermediate_size=32),
}


@pytest.mark.parametrize(
    ("version", "storage_name", "split_kv_b"),
    [("v3", "f32", False), ("v3", "q8_0", False), ("v3", "f32", True), ("v2-lite", "q8_0", False)],
    ids=["v3-f32", "v3-q8_0", "v3-mla-split-kv_b", "v2-lite-q8_0"],
)
def test_deepseek2(tmp_path: Path, version: str, storage_name: str, split_kv_b: bool) -> None:
    model_dir = make_model_dir(tmp_path / "hf", DEEPSEEK[version]())
    gguf_path = tmp_path / "deepseek.gguf"
    weights = write_gguf(gguf_path, model_dir, "deepseek2", STORAGES[storage_name], split_kv_b=split_kv_b)
    assert_matches_reference(gguf_path, save_reference(model_dir, weights, tmp_path / "reference"))
