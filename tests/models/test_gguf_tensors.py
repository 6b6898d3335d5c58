"""GGUF tensors become the checkpoint tensors the models load: names, layouts, values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from factories import (
    deepseek_v2_config,
    deepseek_v3_config,
    gemma3_config,
    llama_config,
    make_model_dir,
    qwen2_config,
)
from gguf_factories import Q, Storage, write_gguf
from seekserve.errors import ModelLoadError
from seekserve.models.gguf import GGUFCheckpoint

CPU = torch.device("cpu")
CONFIGS = {"llama": llama_config, "qwen2": qwen2_config, "gemma3": gemma3_config}


def streamed(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = GGUFCheckpoint(path)
    return dict(checkpoint.weights(torch.float32, CPU))


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_tensors_equal_transformers_gguf_loader(tmp_path: Path, arch: str) -> None:
    """transformers' own GGUF loader (independent name table, q/k un-permutation, norm offset)."""
    from transformers import AutoModelForCausalLM

    model_dir = make_model_dir(tmp_path / "hf", CONFIGS[arch](tie_word_embeddings=False))
    path = tmp_path / "model.gguf"
    write_gguf(path, model_dir, arch, Storage(Q.Q8_0))
    reference = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32)
    expected = reference.state_dict()
    got = streamed(path)
    assert sorted(got) == sorted(expected)
    for name, tensor in got.items():
        assert torch.equal(tensor, expected[name]), name


@pytest.mark.parametrize(
    ("version", "storage", "split_kv_b"),
    [(3, Q.F32, False), (3, Q.Q8_0, False), (3, Q.F32, True), (2, Q.Q8_0, False)],
    ids=["v3-f32", "v3-q8_0", "v3-mla-split", "v2-q8_0"],
)
def test_deepseek2_config_and_tensors(tmp_path: Path, version: int, storage: Q, split_kv_b: bool) -> None:
    # Q8_0 blocks hold 32 values: in-features must be multiples of 32.
    if version == 3:
        config = deepseek_v3_config(q_lora_rank=64, moe_intermediate_size=32)
    else:
        config = deepseek_v2_config(moe_intermediate_size=32)
    model_dir = make_model_dir(tmp_path / "hf", config)
    path = tmp_path / "model.gguf"
    expected = write_gguf(path, model_dir, "deepseek2", Storage(storage), split_kv_b=split_kv_b)
    checkpoint = GGUFCheckpoint(path)
    got_config = checkpoint.config
    assert got_config.architectures == [f"DeepseekV{version}ForCausalLM"]
    fields = [
        "hidden_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "n_shared_experts",
        "n_routed_experts",
        "num_experts_per_tok",
        "first_k_dense_replace",
        "kv_lora_rank",
        "q_lora_rank",
        "qk_rope_head_dim",
        "v_head_dim",
        "qk_nope_head_dim",
        "routed_scaling_factor",
        "n_group",
        "topk_group",
        "norm_topk_prob",
        "vocab_size",
        "tie_word_embeddings",
    ]
    for field in fields:
        assert getattr(got_config, field) == getattr(config, field), field
    got = dict(checkpoint.weights(torch.float32, CPU))
    assert sorted(got) == sorted(expected)
    for name, tensor in got.items():
        assert torch.equal(tensor, expected[name]), name


def test_deepseek2_yarn_rope(tmp_path: Path) -> None:
    """llama.cpp keeps YaRN's factor, original context and mscale_all_dim (and assumes mscale equal to it)."""
    yarn = {
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 40.0,
        "original_max_position_embeddings": 64,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "mscale": 0.707,
        "mscale_all_dim": 0.707,
    }
    model_dir = make_model_dir(tmp_path / "hf", deepseek_v3_config(rope_parameters=yarn))
    path = tmp_path / "model.gguf"
    write_gguf(path, model_dir, "deepseek2", Storage(Q.F32))
    assert GGUFCheckpoint(path).config.rope_parameters == pytest.approx(yarn)


def test_unknown_tensor_is_named(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "hf", llama_config())
    path = tmp_path / "model.gguf"
    write_gguf(path, model_dir, "llama", Storage(Q.F32))
    checkpoint = GGUFCheckpoint(path)
    with pytest.raises(ModelLoadError, match=r"blk\.0\.attn_sinks\.weight has no counterpart"):
        checkpoint.tensor_map.checkpoint_name("blk.0.attn_sinks.weight")


def test_gemma3_vision_tensors_are_skipped(tmp_path: Path) -> None:
    """Multimodal Gemma 3 GGUFs (as Ollama packs them) hold a vision tower seekserve does not run."""
    model_dir = make_model_dir(tmp_path / "hf", gemma3_config())
    path = tmp_path / "model.gguf"
    vision = {
        "v.blk.0.attn_q.weight": np.zeros((8, 8), dtype=np.float32),
        "mm.input_projection.weight": np.zeros((8, 64), dtype=np.float32),
    }
    expected = write_gguf(path, model_dir, "gemma3", Storage(Q.F32), extra_tensors=vision)
    got = streamed(path)
    assert sorted(got) == sorted(expected)
