"""A GGUF file's metadata as the transformers config of the same model.

llama.cpp writes hyperparameters under `<arch>.<key>` (e.g. `gemma3.attention.head_count`) and
leaves out what its own code hard-wires; those gaps are filled with the values llama.cpp assumes,
each noted where it is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from huggingface_hub.errors import StrictDataclassError

from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.models.gguf.reader import GGUFFile

__all__ = ["ARCHITECTURES", "config_from_gguf", "eos_token_ids"]

_MISSING = object()
_METADATA_ERRORS = (
    TypeError, ValueError, KeyError, IndexError, OverflowError, ZeroDivisionError, StrictDataclassError,
)  # fmt: skip
"""What values of the wrong type or range raise: int("x"), float([1]), a division by 0, and the config
classes' own checks (a hidden size that is not a multiple of the head count)."""


class _Meta:
    """Typed access to `<arch>.<key>` metadata with errors that name the missing key."""

    def __init__(self, gguf: GGUFFile):
        self.gguf = gguf
        self.arch = gguf.architecture
        self.md = gguf.metadata

    def get(self, key: str, default: Any = _MISSING) -> Any:
        value = self.md.get(f"{self.arch}.{key}", default)
        if value is _MISSING:
            raise ModelLoadError(f"{self.gguf.path} lacks the metadata key {self.arch}.{key}")
        return value

    def per_layer(self, key: str, default: Any = _MISSING) -> Any:
        """A value llama.cpp may store per layer; seekserve needs it equal across layers."""
        value = self.get(key, default)
        if isinstance(value, list):
            if len(set(value)) != 1:
                raise UnsupportedModelError(
                    f"{self.gguf.path}: {self.arch}.{key} differs between layers ({sorted(set(value))}); "
                    f"seekserve needs one value for all layers"
                )
            value = value[0]
        return value

    def has_tensor(self, name: str) -> bool:
        return self.gguf.tensor(name) is not None

    def common(self) -> dict[str, Any]:
        """Fields every decoder-only family shares."""
        heads = int(self.per_layer("attention.head_count"))
        embed = self.gguf.tensor("token_embd.weight")
        if embed is None:
            raise ModelLoadError(f"{self.gguf.path} has no token_embd.weight tensor")
        return dict(
            vocab_size=embed.shape[0],
            hidden_size=int(self.get("embedding_length")),
            intermediate_size=int(self.per_layer("feed_forward_length", 0)),
            num_hidden_layers=int(self.get("block_count")),
            num_attention_heads=heads,
            num_key_value_heads=int(self.per_layer("attention.head_count_kv", heads)),
            max_position_embeddings=int(self.get("context_length")),
            rms_norm_eps=float(self.get("attention.layer_norm_rms_epsilon", 1e-6)),
            tie_word_embeddings=not self.has_tensor("output.weight"),
            **self.special_tokens(),
        )

    def special_tokens(self) -> dict[str, Any]:
        ids = {}
        for gguf_key, name in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
            value = self.md.get(f"tokenizer.ggml.{gguf_key}_token_id")
            if value is not None:
                ids[name] = int(value)
        return ids

    def rope_scaling(self) -> dict[str, Any]:
        """Rope scaling entries of `rope_parameters` ({} when the file has none)."""
        kind = self.get("rope.scaling.type", None)
        factor = self.get("rope.scaling.factor", None) or self.get("rope.scale_linear", None)
        if kind in (None, "none") and factor is None:
            return {}
        if kind in (None, "linear"):
            return {"rope_type": "linear", "factor": float(factor)}
        if kind == "yarn":
            return {
                "rope_type": "yarn",
                "factor": float(factor),
                "original_max_position_embeddings": int(self.get("rope.scaling.original_context_length")),
                "beta_fast": float(self.get("rope.scaling.yarn_beta_fast", 32.0)),
                "beta_slow": float(self.get("rope.scaling.yarn_beta_slow", 1.0)),
            }
        raise UnsupportedModelError(f"{self.gguf.path}: rope scaling type {kind!r} is not supported")


def _llama(meta: _Meta) -> tuple[str, dict[str, Any]]:
    values = meta.common()
    heads = values["num_attention_heads"]
    values["head_dim"] = int(meta.get("attention.key_length", values["hidden_size"] // heads))
    values["rope_parameters"] = {"rope_type": "default", "rope_theta": float(meta.get("rope.freq_base", 1e4))}
    values["rope_parameters"].update(meta.rope_scaling())
    values["attention_bias"] = meta.has_tensor("blk.0.attn_q.bias")
    factors = meta.gguf.tensor("rope_freqs.weight")
    if factors is not None:
        # Llama 3.1-style scaling, which llama.cpp stores as a divisor per rotary frequency.
        values["rope_freq_factors"] = np.frombuffer(meta.gguf.data(factors), dtype=np.float32).tolist()
    return "LlamaForCausalLM", values


def _qwen2(meta: _Meta) -> tuple[str, dict[str, Any]]:
    values = meta.common()
    values["rope_parameters"] = {"rope_type": "default", "rope_theta": float(meta.get("rope.freq_base", 1e6))}
    values["rope_parameters"].update(meta.rope_scaling())
    return "Qwen2ForCausalLM", values


def _gemma3(meta: _Meta) -> tuple[str, dict[str, Any]]:
    values = meta.common()
    head_dim = int(meta.get("attention.key_length"))
    layers = values["num_hidden_layers"]
    # llama.cpp: every 6th layer is global and sliding layers use rope base 10000, unless the file says
    # otherwise; queries are scaled by 1/sqrt(head_dim), except in the 62-layer 27B (hidden/heads).
    pattern = meta.get("attention.sliding_window_pattern", 6)
    if isinstance(pattern, list):
        sliding = [bool(p) for p in pattern]
    else:
        sliding = [(i + 1) % int(pattern) != 0 for i in range(layers)]
    scalar = values["hidden_size"] // values["num_attention_heads"] if layers == 62 else head_dim
    full = {"rope_type": "default", "rope_theta": float(meta.get("rope.freq_base", 1e6))}
    full.update(meta.rope_scaling())
    local = {"rope_type": "default", "rope_theta": float(meta.get("rope.freq_base_swa", 1e4))}
    values.update(
        head_dim=head_dim,
        sliding_window=int(meta.get("attention.sliding_window")),
        layer_types=["sliding_attention" if s else "full_attention" for s in sliding],
        rope_parameters={"full_attention": full, "sliding_attention": local},
        query_pre_attn_scalar=scalar,
        final_logit_softcapping=meta.get("final_logit_softcapping", None),
    )
    return "Gemma3ForCausalLM", values


def _deepseek2(meta: _Meta) -> tuple[str, dict[str, Any]]:
    """DeepSeek-V2/V3/R1 (MLA attention, MoE); V3 is told apart by its sigmoid expert gating."""
    values = meta.common()
    heads = values["num_attention_heads"]
    rope_dim = int(meta.get("rope.dimension_count"))
    # Files converted for MLA absorption store K/V as one shared head: the per-head sizes are the *_mla keys.
    key_length = int(meta.get("attention.key_length_mla", None) or meta.get("attention.key_length"))
    value_length = int(meta.get("attention.value_length_mla", None) or meta.get("attention.value_length"))
    # expert_gating_func 2 is sigmoid; older V3 files lack the key but carry the routing bias tensors.
    is_v3 = meta.get("expert_gating_func", 1) == 2 or any(
        t.name.endswith("exp_probs_b.bias") for t in meta.gguf.tensors
    )
    values.update(
        num_key_value_heads=heads,
        q_lora_rank=int(meta.get("attention.q_lora_rank", 0)) or None,
        kv_lora_rank=int(meta.get("attention.kv_lora_rank")),
        qk_rope_head_dim=rope_dim,
        qk_nope_head_dim=key_length - rope_dim,
        v_head_dim=value_length,
        first_k_dense_replace=int(meta.get("leading_dense_block_count", 0)),
        moe_intermediate_size=int(meta.get("expert_feed_forward_length")),
        n_routed_experts=int(meta.get("expert_count")),
        n_shared_experts=int(meta.get("expert_shared_count", 0)),
        num_experts_per_tok=int(meta.get("expert_used_count")),
        routed_scaling_factor=float(meta.get("expert_weights_scale", 1.0)),
        norm_topk_prob=bool(meta.get("expert_weights_norm", False)),
        rope_parameters=_deepseek_rope(meta),
    )
    # Group-limited routing: without the keys (older files) llama.cpp routes over all experts at once.
    groups, used = meta.get("expert_group_count", None), meta.get("expert_group_used_count", None)
    if is_v3:
        values.update(n_group=int(groups or 1), topk_group=int(used or 1))
        return "DeepseekV3ForCausalLM", values
    if groups and int(groups) > 1:
        values.update(n_group=int(groups), topk_group=int(used), topk_method="group_limited_greedy")
    else:
        values.update(n_group=None, topk_group=None, topk_method="greedy")
    return "DeepseekV2ForCausalLM", values


def _deepseek_rope(meta: _Meta) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(meta.get("rope.freq_base", 1e4))}
    rope.update(meta.rope_scaling())
    if rope["rope_type"] == "yarn":
        # llama.cpp stores 0.1 * mscale_all_dim; DeepSeek's configs set mscale equal to it.
        mscale = float(meta.get("rope.scaling.yarn_log_multiplier", 0.0)) / 0.1
        rope.update(mscale=mscale, mscale_all_dim=mscale)
    return rope


ARCHITECTURES: dict[str, Callable[[_Meta], tuple[str, dict[str, Any]]]] = {
    "llama": _llama,
    "qwen2": _qwen2,
    "gemma3": _gemma3,
    "deepseek2": _deepseek2,
}
"""GGUF `general.architecture` -> the function giving (transformers architecture, config fields)."""

_CONFIG_CLASSES = {
    "LlamaForCausalLM": "LlamaConfig",
    "Qwen2ForCausalLM": "Qwen2Config",
    "Gemma3ForCausalLM": "Gemma3TextConfig",
    "DeepseekV2ForCausalLM": "DeepseekV2Config",
    "DeepseekV3ForCausalLM": "DeepseekV3Config",
}


def config_from_gguf(gguf: GGUFFile) -> Any:
    """The transformers config of the model in `gguf`, with `architectures` set."""
    import transformers

    build = ARCHITECTURES.get(gguf.architecture)
    if build is None:
        raise UnsupportedModelError(
            f"{gguf.path} holds a {gguf.architecture!r} model; seekserve loads GGUF architectures "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    try:  # metadata of the wrong type (a string for a count, a list for a float) fails here
        architecture, values = build(_Meta(gguf))
        config_class = getattr(transformers, _CONFIG_CLASSES[architecture])
        config = config_class(architectures=[architecture], **values)
    except _METADATA_ERRORS as e:
        raise ModelLoadError(
            f"{gguf.path}: its metadata does not make a valid {gguf.architecture} config "
            f"({type(e).__name__}: {e}); download the file again or convert it with a current llama.cpp"
        ) from e
    config.dtype = _stored_dtype(gguf)
    return config


def _stored_dtype(gguf: GGUFFile) -> str:
    """The dtype the weights were written in; quantized files run in bfloat16 unless told otherwise."""
    types = {t.ggml_type.name for t in gguf.tensors if len(t.shape) > 1}
    if types == {"F32"}:
        return "float32"
    if types == {"F16"}:
        return "float16"
    return "bfloat16"


def eos_token_ids(gguf: GGUFFile) -> frozenset[int]:
    """End-of-sequence, end-of-turn and end-of-message token ids the file names."""
    keys = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
    ids = {k: gguf.metadata[k] for k in keys if k in gguf.metadata}
    for key, value in ids.items():
        if type(value) is not int or value < 0:
            raise ModelLoadError(f"{gguf.path}: {key}={value!r} is not a token id; download the file again")
    return frozenset(ids.values())
