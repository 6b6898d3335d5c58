"""Llama, Mistral and Qwen2 (the DeepSeek-R1-Distill-Llama and -Qwen models), as transformers computes them.

q/k/v projections run as one fused matmul, and gate/up as another; the cache holds K and V of
every layer, [num_slots, num_kv_heads, head_dim] each.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.layers.attention import AttentionMetadata, PagedAttention
from seekserve.layers.cpu_kernels import kernels_for
from seekserve.layers.modules import Linear, RotaryEmbedding, apply_rotary
from seekserve.models.base import DecoderLayer, DecoderLM, DecoderStack, KVCacheSpec, LayerCache
from seekserve.models.rope import rope_parameters

__all__ = ["LlamaForCausalLM", "Qwen2ForCausalLM"]


def layer_window(config: Any, layer_idx: int) -> int | None:
    """The sliding window of a layer, or None for full attention (per transformers' `layer_types`)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types and layer_types[layer_idx] == "sliding_attention":
        return int(config.sliding_window)
    return None


class LlamaAttention(nn.Module):
    def __init__(self, config: Any, layer_idx: int, dtype: torch.dtype, qkv_bias: bool, o_bias: bool):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or hidden // self.num_heads
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = Linear(hidden, [q_size, kv_size, kv_size], bias=qkv_bias, dtype=dtype)
        self.o_proj = Linear(q_size, [hidden], bias=o_bias, dtype=dtype)
        self.scale = self.head_dim**-0.5
        self.window = layer_window(config, layer_idx)

    def normalize_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head transform of queries and keys before rotary; none here (Gemma 3 norms them)."""
        return q, k

    def qk_norms(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, float]:
        """(q and k norm weights, eps) of the per-head unit-offset RMS norms, for the fused kernel."""
        return None, 0.0

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        n = h.shape[0]
        qkv = self.qkv_proj(h)
        k_cache, v_cache = cache
        kernels = kernels_for(qkv)
        norms, eps = self.qk_norms()
        if (
            kernels is not None
            and k_cache.dtype == qkv.dtype == cos.dtype
            and (norms is None or all(w.dtype == qkv.dtype for w in norms))
        ):
            # One pass: per-head norms, rotary, and K/V into their cache slots.
            shape = (self.num_heads, self.num_kv_heads, self.head_dim)
            q, k = kernels.qk_prepare(qkv, shape, norms, eps, cos, sin, meta.slot_mapping, k_cache, v_cache)
            v = self.qkv_proj.split(qkv)[2].view(n, self.num_kv_heads, self.head_dim)
        else:
            q, k, v = self.qkv_proj.split(qkv)
            q = q.view(n, self.num_heads, self.head_dim)
            q, k = self.normalize_qk(q, k.view(n, self.num_kv_heads, self.head_dim))
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
            v = v.view(n, self.num_kv_heads, self.head_dim)
            PagedAttention.write(k_cache, meta.slot_mapping, k)
            PagedAttention.write(v_cache, meta.slot_mapping, v)
        out = PagedAttention.attend(q, k, v, k_cache, v_cache, meta, self.scale, self.window)
        return self.o_proj(out.view(n, self.num_heads * self.head_dim))


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up fused into one matmul."""

    def __init__(self, hidden: int, intermediate: int, dtype: torch.dtype, bias: bool = False):
        super().__init__()
        self.gate_up_proj = Linear(hidden, [intermediate, intermediate], bias=bias, dtype=dtype)
        self.down_proj = Linear(intermediate, [hidden], bias=bias, dtype=dtype)

    gelu: ClassVar[bool] = False
    """The activation: tanh-approximated gelu, else silu (for the torch path and the CPU kernel)."""

    def act(self, gate: torch.Tensor) -> torch.Tensor:
        return F.gelu(gate, approximate="tanh") if self.gelu else F.silu(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)
        kernels = kernels_for(gate_up)
        if kernels is not None and gate_up.dim() == 2 and gate_up.stride(1) == 1:
            return self.down_proj(kernels.gated_act(gate_up, self.gelu))
        gate, up = self.gate_up_proj.split(gate_up)
        return self.down_proj(self.act(gate) * up)


def llama_decoder_layer(
    config: Any, layer_idx: int, dtype: torch.dtype, qkv_bias: bool, o_bias: bool
) -> DecoderLayer:
    attn = LlamaAttention(config, layer_idx, dtype, qkv_bias, o_bias)
    mlp = GatedMLP(
        config.hidden_size, config.intermediate_size, dtype, bias=getattr(config, "mlp_bias", False)
    )
    return DecoderLayer(attn, mlp, config.hidden_size, config.rms_norm_eps, dtype)


class LlamaForCausalLM(DecoderLM):
    """Llama 2/3/3.1 and Mistral; DeepSeek-R1-Distill-Llama-8B/70B."""

    stacked_params: ClassVar[dict[str, tuple[str, int]]] = {
        "q_proj": ("qkv_proj", 0),
        "k_proj": ("qkv_proj", 1),
        "v_proj": ("qkv_proj", 2),
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(self, config: Any, dtype: torch.dtype, max_positions: int):
        super().__init__(config, dtype, max_positions)
        qkv_bias, o_bias = self.attention_biases(config)
        layers = (
            llama_decoder_layer(config, i, dtype, qkv_bias, o_bias) for i in range(config.num_hidden_layers)
        )
        self.model = DecoderStack(config, layers, dtype)
        self.init_lm_head()
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        inv_freq, scaling = rope_parameters(config, self.head_dim)
        self.rotary = RotaryEmbedding(inv_freq, scaling, max_positions)

    @staticmethod
    def attention_biases(config: Any) -> tuple[bool, bool]:
        """(bias on q/k/v, bias on o)."""
        bias = bool(getattr(config, "attention_bias", False))
        return bias, bias

    def kv_cache_spec(self) -> KVCacheSpec:
        shape = (self.num_kv_heads, self.head_dim)
        return KVCacheSpec(len(self.model.layers), (shape, shape))


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 and Qwen2.5: biases on q/k/v, none on o; DeepSeek-R1-Distill-Qwen-1.5B/7B/14B/32B."""

    @staticmethod
    def attention_biases(config: Any) -> tuple[bool, bool]:
        return True, False
