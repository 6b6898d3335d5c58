"""Write tiny Hugging Face models to GGUF as llama.cpp's converter does, with gguf's own writer.

Tensor names come from gguf's table (`get_tensor_name_map`), not from seekserve's, and the
conversions llama.cpp applies (q/k row permutation for llama, norm + 1 for gemma3, stacked experts
and split kv_b for deepseek2) are written out here independently. Each 2-D weight is stored in the
requested type; `write_gguf` also returns the weights the file holds once dequantized (by gguf's
numpy reference), in Hugging Face layout, so a reference model can be built from them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

Q = GGMLQuantizationType
K_QUANTS = (Q.Q4_K, Q.Q5_K, Q.Q6_K)


@dataclass(frozen=True)
class Storage:
    """How to store weights: `weights` for 2-D tensors, `embedding` for token_embd (None: as weights)."""

    weights: GGMLQuantizationType
    embedding: GGMLQuantizationType | None = None


def write_gguf(
    path: Path,
    model_dir: Path,
    arch: str,
    storage: Storage,
    split_kv_b: bool = False,
    chat_template: bool = True,
    extra_tensors: dict[str, np.ndarray] | None = None,
    **metadata: Any,
) -> dict[str, torch.Tensor]:
    """Write the model saved in `model_dir` to the GGUF file `path`; return its dequantized weights.

    `split_kv_b` (deepseek2) writes kv_b as per-head k_b and v_b, as llama.cpp does for MLA;
    `chat_template=False` leaves the template out (a base model); `extra_tensors` are written as they
    are; `metadata` adds `<arch>.<key>` values.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    state = load_file(str(model_dir / "model.safetensors"))
    writer = gguf.GGUFWriter(str(path), arch)
    _write_hparams(writer, arch, config, split_kv_b)
    for key, value in metadata.items():
        writer.add_key_value(f"{arch}.{key}", value, _value_type(value))
    _write_tokenizer(writer, model_dir, chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    reference: dict[str, torch.Tensor] = {}
    experts: dict[str, list[np.ndarray]] = {}
    expert_types: dict[str, GGMLQuantizationType] = {}
    for name, tensor in state.items():
        raw, ref, qtype = _encode(name, tensor.float().numpy(), arch, config, storage)
        reference[name] = torch.from_numpy(ref)
        gguf_name = _gguf_name(names, name)
        if split_kv_b and name.endswith("kv_b_proj.weight"):
            for part, data in zip(("attn_k_b", "attn_v_b"), _split_kv_b(raw, config), strict=True):
                writer.add_tensor(gguf_name.replace("attn_kv_b", part), data, raw_dtype=qtype)
            continue
        if ".experts." in name:  # llama.cpp stacks experts into one tensor per projection
            experts.setdefault(gguf_name, []).append(raw)
            expert_types[gguf_name] = qtype
            continue
        writer.add_tensor(gguf_name, raw, raw_dtype=qtype)
    for gguf_name, parts in experts.items():
        writer.add_tensor(gguf_name, np.stack(parts), raw_dtype=expert_types[gguf_name])
    for gguf_name, data in (extra_tensors or {}).items():
        writer.add_tensor(gguf_name, data)
    if getattr(config, "rope_parameters", {}).get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", _llama3_rope_factors(config))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return reference


def _llama3_rope_factors(config: Any) -> np.ndarray:
    """What llama.cpp stores for Llama 3.1 rope scaling: the divisor of each rotary frequency."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    head_dim = config.hidden_size // config.num_attention_heads
    base = config.rope_parameters["rope_theta"]
    plain = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
    return (plain / scaled).numpy().astype(np.float32)


def _gguf_name(names: Any, hf_name: str) -> str:
    base, _, suffix = hf_name.rpartition(".")
    if hf_name.endswith("e_score_correction_bias"):
        base, suffix = hf_name.removesuffix("_bias"), "bias"
    if ".experts." in base:  # model.layers.0.mlp.experts.3.gate_proj -> ...experts.gate_proj
        head, _, tail = base.partition(".experts.")
        base = f"{head}.experts.{tail.partition('.')[2]}"
    mapped = names.get_name(base)
    assert mapped is not None, f"gguf has no name for {hf_name}"
    return f"{mapped}.{suffix}"


def _encode(
    name: str, w: np.ndarray, arch: str, config: Any, storage: Storage
) -> tuple[np.ndarray, np.ndarray, GGMLQuantizationType]:
    """(what the GGUF stores, the Hugging Face weight it dequantizes to, its type)."""
    if w.ndim == 1:  # norms and biases stay float32, as llama.cpp keeps them
        if arch == "gemma3" and name.endswith("norm.weight"):
            stored = (w + np.float32(1.0)).astype(np.float32)
            return stored, stored - np.float32(1.0), Q.F32
        return w, w, Q.F32
    qtype = storage.embedding if storage.embedding and "embed_tokens" in name else storage.weights
    raw = _quantize(w, qtype)
    ref = raw if qtype == Q.F32 else dequantize(raw, qtype)
    if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config.num_attention_heads if "q_proj" in name else config.num_key_value_heads
        raw = _permute_rows(raw, heads)  # rows hold whole blocks, so quantized rows permute alike
    return raw, np.ascontiguousarray(ref, dtype=np.float32), qtype


def _split_kv_b(kv_b: np.ndarray, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's MLA split of kv_b [heads * (nope + v), rank] into k_b [heads, rank, nope]
    and v_b [heads, v, rank]."""
    assert kv_b.dtype == np.float32, "split kv_b is written unquantized here"
    heads, nope, v = config.num_attention_heads, config.qk_nope_head_dim, config.v_head_dim
    per_head = kv_b.reshape(heads, nope + v, -1)
    k_b = np.ascontiguousarray(per_head[:, :nope].transpose(0, 2, 1))
    return k_b, np.ascontiguousarray(per_head[:, nope:])


def _permute_rows(raw: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permute: per head, the two rotary halves [2, d/2] become pairs [d/2, 2]."""
    rows = raw.shape[0]
    return raw.reshape(heads, 2, rows // heads // 2, *raw.shape[1:]).swapaxes(1, 2).reshape(raw.shape)


def _quantize(w: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    if qtype == Q.F32:
        return w
    if qtype in K_QUANTS:
        return k_quant_blocks(qtype, w.shape, seed=zlib.crc32(w.tobytes()))
    return quantize(w, qtype)


def k_quant_blocks(qtype: GGMLQuantizationType, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random K-quant blocks whose values are centred with a standard deviation near 0.15.

    gguf cannot quantize to K types, so the quants are random and the scales fixed: every
    sub-block scale and min is 8 (Q4_K/Q5_K), every Q6_K scale is 8.
    """
    rows, cols = shape
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // block_size, type_size), dtype=np.uint8)
    if qtype == Q.Q6_K:
        blocks[:, 192:208] = 8
        blocks[:, 208:210] = np.full(len(blocks), 0.001, np.float16).view(np.uint8).reshape(-1, 2)
    else:
        d = 0.004 if qtype == Q.Q4_K else 0.002
        centre = 7.5 if qtype == Q.Q4_K else 15.5
        blocks[:, 0:2] = np.full(len(blocks), d, np.float16).view(np.uint8).reshape(-1, 2)
        blocks[:, 2:4] = np.full(len(blocks), d * centre, np.float16).view(np.uint8).reshape(-1, 2)
        blocks[:, 4:12] = 8
        blocks[:, 12:16] = 0x88
    return blocks.reshape(rows, -1)


def _write_hparams(writer: Any, arch: str, config: Any, split_kv_b: bool) -> None:
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    if not split_kv_b:  # the MLA layout stores one shared K/V head (see _write_deepseek_hparams)
        writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = config.rope_parameters
    if arch == "gemma3":
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
        writer.add_sliding_window(config.sliding_window)
        writer.add_sliding_window_pattern([t == "sliding_attention" for t in config.layer_types])
        writer.add_rope_freq_base(rope["full_attention"]["rope_theta"])
        writer.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
    else:
        writer.add_rope_freq_base(rope["rope_theta"])
    if arch == "deepseek2":
        _write_deepseek_hparams(writer, config, split_kv_b)


def _write_deepseek_hparams(writer: Any, config: Any, split_kv_b: bool) -> None:
    """As llama.cpp's DeepseekV2 converter writes them (the MLA layout when kv_b is split)."""
    key_length = config.qk_nope_head_dim + config.qk_rope_head_dim
    if split_kv_b:
        writer.add_head_count_kv(1)
        writer.add_key_length(config.kv_lora_rank + config.qk_rope_head_dim)
        writer.add_value_length(config.kv_lora_rank)
        writer.add_key_length_mla(key_length)
        writer.add_value_length_mla(config.v_head_dim)
    else:
        writer.add_key_length(key_length)
        writer.add_value_length(config.v_head_dim)
    if config.q_lora_rank:
        writer.add_q_lora_rank(config.q_lora_rank)
    writer.add_kv_lora_rank(config.kv_lora_rank)
    writer.add_rope_dimension_count(config.qk_rope_head_dim)
    writer.add_leading_dense_block_count(config.first_k_dense_replace)
    writer.add_expert_feed_forward_length(config.moe_intermediate_size)
    writer.add_expert_count(config.n_routed_experts)
    writer.add_expert_shared_count(config.n_shared_experts)
    writer.add_expert_used_count(config.num_experts_per_tok)
    writer.add_expert_weights_scale(config.routed_scaling_factor)
    writer.add_expert_weights_norm(bool(config.norm_topk_prob))
    rope = config.rope_parameters
    if rope.get("rope_type") == "yarn":  # llama.cpp keeps only mscale_all_dim, as 0.1 * it
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        writer.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])
    gating = gguf.ExpertGatingFuncType
    writer.add_expert_gating_func(gating.SIGMOID if config.model_type == "deepseek_v3" else gating.SOFTMAX)
    if config.n_group:
        writer.add_expert_group_count(config.n_group)
        writer.add_expert_group_used_count(config.topk_group)


def _value_type(value: Any) -> gguf.GGUFValueType:
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    return gguf.GGUFValueType.STRING


def _write_tokenizer(writer: Any, model_dir: Path, chat_template: bool) -> None:
    """The byte-level BPE tokenizer of `factories.make_tokenizer`, as llama.cpp stores a "gpt2" one."""
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for added in spec["added_tokens"]:
        vocab[added["content"]] = added["id"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab[config["bos_token"]])
    writer.add_eos_token_id(vocab[config["eos_token"]])
    writer.add_pad_token_id(vocab[config["pad_token"]])
    template = model_dir / "chat_template.jinja"
    if chat_template:
        writer.add_chat_template(template.read_text() if template.is_file() else config["chat_template"])


def save_reference(model_dir: Path, weights: dict[str, torch.Tensor], target: Path) -> Path:
    """`model_dir` with its weights replaced by `weights`: the model a GGUF file holds."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(model_dir, target)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(target / "model.safetensors"))
    return target
