"""Gemma 3 (the text model), as transformers' Gemma3ForCausalLM computes it.

Differences from Llama, each visible below: embeddings scaled by sqrt(hidden) in the model dtype;
RMS norms that scale by (1 + weight); a norm on each head's query and key; norms both before and
after attention and the MLP; GeGLU with tanh GELU; query scale 1/sqrt(query_pre_attn_scalar);
interleaved sliding-window and global layers (`config.layer_types`), each kind with its own rope base.
The KV cache holds K and V of every layer for every position, sliding layers included.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import nn

from seekserve.errors import UnsupportedModelError
from seekserve.layers.attention import AttentionMetadata
from seekserve.layers.cpu_kernels import kernels_for
from seekserve.layers.modules import RMSNorm, RotaryEmbedding
from seekserve.models.base import DecoderLM, DecoderStack, KVCacheSpec, LayerCache
from seekserve.models.llama import GatedMLP, LlamaAttention, LlamaForCausalLM
from seekserve.models.rope import rope_parameters

__all__ = ["Gemma3ForCausalLM"]

_GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")


class Gemma3Attention(LlamaAttention):
    def __init__(self, config: Any, layer_idx: int, dtype: torch.dtype):
        bias = bool(config.attention_bias)
        super().__init__(config, layer_idx, dtype, qkv_bias=bias, o_bias=bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype, unit_offset=True)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype, unit_offset=True)
        self.scale = float(config.query_pre_attn_scalar) ** -0.5

    def normalize_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)

    def qk_norms(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, float]:
        return (self.q_norm.weight, self.k_norm.weight), self.q_norm.eps


class GeGLU(GatedMLP):
    """down(gelu_tanh(gate(x)) * up(x))."""

    gelu = True


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, config: Any, layer_idx: int, dtype: torch.dtype):
        super().__init__()
        hidden, eps = config.hidden_size, config.rms_norm_eps
        self.self_attn = Gemma3Attention(config, layer_idx, dtype)
        self.mlp = GeGLU(hidden, config.intermediate_size, dtype)
        self.input_layernorm = RMSNorm(hidden, eps, dtype, unit_offset=True)
        self.post_attention_layernorm = RMSNorm(hidden, eps, dtype, unit_offset=True)
        self.pre_feedforward_layernorm = RMSNorm(hidden, eps, dtype, unit_offset=True)
        self.post_feedforward_layernorm = RMSNorm(hidden, eps, dtype, unit_offset=True)

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        attn = self.self_attn(self.input_layernorm(h), cos, sin, cache, meta)
        kernels = kernels_for(attn)
        if kernels is not None and h.is_contiguous() and attn.is_contiguous() and self._same_dtype(attn):
            # Fused: h += post_norm(attn) in place (h is this layer's own input), then pre_norm(h).
            eps = self.post_attention_layernorm.eps
            mlp_in = kernels.residual_norm(
                attn, h, self.post_attention_layernorm.weight, self.pre_feedforward_layernorm.weight, eps
            )
            mlp = self.mlp(mlp_in)
            kernels.residual_norm(mlp, h, self.post_feedforward_layernorm.weight, None, eps)
            return h
        h = h + self.post_attention_layernorm(attn)
        mlp = self.mlp(self.pre_feedforward_layernorm(h))
        return h + self.post_feedforward_layernorm(mlp)

    def _same_dtype(self, x: torch.Tensor) -> bool:
        norms = (
            self.post_attention_layernorm,
            self.pre_feedforward_layernorm,
            self.post_feedforward_layernorm,
        )
        return all(n.weight.dtype == x.dtype for n in norms)


class Gemma3ForCausalLM(DecoderLM):
    """Gemma 3 text models (270M, 1B; the language part of 4B/12B/27B), e.g. the default model."""

    stacked_params: ClassVar[dict[str, tuple[str, int]]] = LlamaForCausalLM.stacked_params

    def __init__(self, config: Any, dtype: torch.dtype, max_positions: int):
        _check_supported(config)
        super().__init__(config, dtype, max_positions)
        layers = (Gemma3DecoderLayer(config, i, dtype) for i in range(config.num_hidden_layers))
        self.model = DecoderStack(config, layers, dtype)
        # Gemma's final norm, like all its norms, scales by (1 + weight).
        self.model.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype, unit_offset=True)
        self.init_lm_head()
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        # One rope table per layer type: sliding and global layers have their own base.
        self.rope_tables = nn.ModuleDict()
        for layer_type in sorted(set(config.layer_types)):
            inv_freq, scaling = rope_parameters(config, self.head_dim, layer_type)
            self.rope_tables[layer_type] = RotaryEmbedding(inv_freq, scaling, max_positions)
        # transformers multiplies by sqrt(hidden) rounded to the model dtype; so do we.
        self.embed_scale = float(torch.tensor(config.hidden_size**0.5, dtype=dtype))
        self.softcap: float | None = config.final_logit_softcapping

    def kv_cache_spec(self) -> KVCacheSpec:
        shape = (self.num_kv_heads, self.head_dim)
        return KVCacheSpec(len(self.model.layers), (shape, shape))

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[LayerCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        h = self.model.embed_tokens(input_ids) * self.embed_scale
        if meta.layer_stack is not None:
            h, _ = meta.layer_stack.run(h, positions, meta)
            return self.model.norm(h)
        tables = self._rope_tables(positions, h.dtype)
        layers = zip(self.config.layer_types, self.model.layers, kv_caches, strict=True)
        for layer_type, layer, cache in layers:
            h = layer(h, *tables[layer_type], cache, meta)
        return self.model.norm(h)

    def layer_rotaries(self) -> list[RotaryEmbedding]:
        """Each decoder layer's rotary tables: sliding and global layers have their own base."""
        return [cast(RotaryEmbedding, self.rope_tables[layer_type]) for layer_type in self.config.layer_types]

    def _rope_tables(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """cos and sin of each position, per layer type (its own rope base)."""
        tables = {}
        for layer_type, rotary in self.rope_tables.items():
            assert isinstance(rotary, RotaryEmbedding), "rotary holds RotaryEmbedding modules only"
            tables[layer_type] = rotary.lookup(positions, dtype)
        return tables

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden)
        if self.softcap is not None:
            logits = torch.tanh(logits.float() / self.softcap) * self.softcap
        return logits

    def logits_head(self) -> nn.Module | None:
        return None if self.softcap is not None else super().logits_head()


def _check_supported(config: Any) -> None:
    """Reject the Gemma variants whose computation this implementation does not follow."""
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedModelError(
            "this Gemma 3 checkpoint uses bidirectional attention (an embedding model such as "
            "EmbeddingGemma); seekserve runs the causal text-generation models only"
        )
    if getattr(config, "attn_logit_softcapping", None) is not None:
        raise UnsupportedModelError(
            f"attn_logit_softcapping={config.attn_logit_softcapping} is not supported (Gemma 3 sets it to "
            f"null); remove it from config.json if the checkpoint is Gemma 3"
        )
    activation = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
    if activation not in _GELU_TANH:
        raise UnsupportedModelError(
            f"hidden_activation={activation!r} is not supported for Gemma 3: seekserve implements "
            f"{' / '.join(_GELU_TANH)}"
        )
