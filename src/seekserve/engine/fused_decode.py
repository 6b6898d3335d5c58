"""Decode steps of int4 models on CPUs: one kernel call for all decoder layers (kernels/decode_layer.cpp).

A decode step of a small model spends as long calling its ~10 operations a layer from Python as
running them (Gemma 3 270M with int4 weights: ~2 ms of a ~5 ms forward). For a step made only of
decodes, `FusedDecode` runs all layers in one call of the same kernels in the same order, the
rotary rows of each position looked up there too, so the hidden states are those of the
layer-by-layer path bit for bit. It applies where every linear layer of every decoder layer is int4
with the integer-dot-product kernel (`Int4Weight.kernels`), Gemma 3 or the Llama family (Llama,
Mistral, Qwen2), on float32 or bfloat16; elsewhere `build` returns None and the model runs as
before. The model runner builds the plan once over its KV cache and hands it to the model, through
`AttentionMetadata.layer_stack`, on the steps it applies to.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import nn

from seekserve.layers.attention import AttentionMetadata
from seekserve.layers.cpu_kernels import CpuKernels
from seekserve.layers.modules import RMSNorm, RotaryEmbedding
from seekserve.models.base import DecoderLayer, LayerCache
from seekserve.quant.int4 import Int4Weight
from seekserve.quant.linear import QuantizedLinear

__all__ = ["FusedDecode"]

_I64, _P = ctypes.c_int64, ctypes.c_void_p


class _Int4Matrix(ctypes.Structure):
    _fields_ = [
        ("packed", _P),
        ("scales_zeros", _P),
        ("out_features", _I64),
        ("in_features", _I64),
        ("group", _I64),
    ]


class _DecodeLayer(ctypes.Structure):
    _fields_ = [
        ("hidden", _I64), ("num_heads", _I64), ("num_kv_heads", _I64), ("head_dim", _I64),
        ("intermediate", _I64),
        ("eps", ctypes.c_float), ("scale", ctypes.c_float), ("window", _I64),
        ("gemma", ctypes.c_int32), ("gelu", ctypes.c_int32),
        ("input_norm", _P), ("post_attention_norm", _P), ("pre_feedforward_norm", _P),
        ("post_feedforward_norm", _P), ("q_norm", _P), ("k_norm", _P), ("qkv_bias", _P),
        ("qkv", _Int4Matrix), ("o", _Int4Matrix), ("gate_up", _Int4Matrix), ("down", _Int4Matrix),
        ("k_cache", _P), ("v_cache", _P),
    ]  # fmt: skip


class _DecodeStep(ctypes.Structure):
    _fields_ = [
        ("rows", _I64), ("slots", _P), ("block_tables", _P), ("max_blocks", _I64), ("seq_lens", _P),
        ("block_size", _I64),
    ]  # fmt: skip


class _DecodeRope(ctypes.Structure):
    _fields_ = [("cos", _P), ("sin", _P), ("positions", _I64), ("rot_half", _I64)]


def _int4(
    linear: nn.Module, dtype: torch.dtype, rows: list[int], bias_ok: bool = False
) -> _Int4Matrix | None:
    """The matrix of an unstacked int4 layer the kernel reads as it is (no padding), else None;
    appends the layer's `max_kernel_rows` to `rows`."""
    if not isinstance(linear, QuantizedLinear) or (linear.bias is not None and not bias_ok):
        return None
    w = linear.qweight
    if not isinstance(w, Int4Weight) or w.kernels is None or w.dtype != dtype or w.lead:
        return None
    out_features, in_features, group = w.layout
    if out_features != w.out_features or in_features != w.in_features or not w.packed.is_contiguous():
        return None
    rows.append(w.max_kernel_rows)
    return _Int4Matrix(w.packed.data_ptr(), w.scales_zeros.data_ptr(), out_features, in_features, group)


def _norm(norm: nn.Module, dtype: torch.dtype) -> RMSNorm | None:
    if not isinstance(norm, RMSNorm) or norm.weight.dtype != dtype or not norm.weight.is_contiguous():
        return None
    return norm


class FusedDecode:
    """The fused decode of one model over one set of KV caches; built by `FusedDecode.build`."""

    def __init__(
        self,
        kernels: CpuKernels,
        dtype: torch.dtype,
        layers: list[_DecodeLayer],
        rotaries: list[RotaryEmbedding],
        max_rows: int,
    ) -> None:
        self.run_layers = kernels.decode_layers[dtype]
        self.dtype = dtype
        self.gemma = bool(layers[0].gemma)
        self.max_rows = max_rows
        """Most rows a step may have: the int4 kernel's own limit (`max_kernel_rows`)."""
        self.layers = (_DecodeLayer * len(layers))(*layers)
        tables = list({id(r): r for r in rotaries}.values())  # one per layer type, in first use order
        for r in tables:
            assert r.cos.dtype == r.sin.dtype == torch.float32, "rotary tables are float32"
            assert r.cos.is_contiguous() and r.sin.is_contiguous(), "rotary tables are dense"
        self.rotaries = tables  # keeps the tables the ropes point into
        self.ropes = (_DecodeRope * len(tables))(
            *(_DecodeRope(r.cos.data_ptr(), r.sin.data_ptr(), r.cos.shape[0], r.cos.shape[1]) for r in tables)
        )
        index = {id(r): i for i, r in enumerate(tables)}
        self.rope_of = (ctypes.c_int32 * len(layers))(*(index[id(r)] for r in rotaries))

    @classmethod
    def build(cls, model: Any, caches: list[LayerCache], kernels: CpuKernels | None) -> FusedDecode | None:
        """The fused decode of `model` (its decoder layers, `model.model.layers`, rotating with
        `model.layer_rotaries()`) over `caches`, or None where some layer is not one the kernel runs."""
        dtype = model.dtype
        if kernels is None or not kernels.has_int4_matmul or dtype not in (torch.float32, torch.bfloat16):
            return None
        layers: list[_DecodeLayer] = []
        rows: list[int] = []
        for layer, cache in zip(model.model.layers, caches, strict=True):
            spec = _layer(layer, cache, dtype, rows)
            if spec is None:
                return None
            layers.append(spec)
        if not layers or min(rows) < 1:
            return None
        return cls(kernels, dtype, layers, model.layer_rotaries(), min(rows))

    def applies(self, meta: AttentionMetadata) -> bool:
        """Whether a step is one this plan runs: decodes only, within the kernels' row limit."""
        return not meta.prefills and 0 < meta.num_decodes <= self.max_rows

    def run(
        self, h: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All layers on the step's embedded rows h, as the layer-by-layer loop leaves them:
        Gemma 3, (h updated in place, None); Llama, (the last MLP's output, the residual)."""
        tables = meta.decode_block_tables
        assert h.dtype == self.dtype and h.is_contiguous(), (
            "the embedded rows are dense, in the model's dtype"
        )
        assert positions.dtype == torch.int64 and positions.is_contiguous() and tables.is_contiguous(), (
            "step tensors are dense int64"
        )
        rows = h.shape[0]
        step = _DecodeStep(
            rows, meta.slot_mapping.data_ptr(), tables.data_ptr(), tables.shape[1],
            meta.decode_lens.data_ptr(), meta.block_size,
        )  # fmt: skip
        out = None if self.gemma else torch.empty((2, *h.shape), dtype=h.dtype)
        last = self.run_layers(
            self.layers, len(self.layers), self.rope_of, self.ropes, len(self.ropes), ctypes.byref(step),
            positions.data_ptr(), h.data_ptr(), None if out is None else out[0].data_ptr(),
            None if out is None else out[1].data_ptr(),
        )  # fmt: skip
        if last < 0:
            raise ValueError(
                f"a position of {positions.tolist()} is past the rotary table's "
                f"{self.rotaries[0].cos.shape[0]} positions"
            )
        return (h, None) if out is None else (out[last - 1], h)


def _layer(layer: Any, cache: LayerCache, dtype: torch.dtype, rows: list[int]) -> _DecodeLayer | None:
    """The kernel's description of one decoder layer, or None where it is not one the kernel runs."""
    from seekserve.models.gemma3 import Gemma3DecoderLayer  # gemma3 imports this module
    from seekserve.models.llama import GatedMLP, LlamaAttention

    gemma = isinstance(layer, Gemma3DecoderLayer)
    if not (gemma or type(layer) is DecoderLayer):
        return None
    attn, mlp = layer.self_attn, layer.mlp
    if not isinstance(attn, LlamaAttention) or not isinstance(mlp, GatedMLP) or len(cache) != 2:
        return None  # e.g. DeepSeek's MLA (one latent row a token) or MoE layers
    k_cache, v_cache = cache
    if (
        not k_cache.dtype == v_cache.dtype == dtype
        or not (k_cache.is_contiguous() and v_cache.is_contiguous())
        or k_cache.shape[1] != attn.num_kv_heads
    ):
        return None
    bias = attn.qkv_proj.bias
    qkv = _int4(attn.qkv_proj, dtype, rows, bias_ok=bias is None or bias.dtype == dtype)
    o, gate_up, down = (_int4(m, dtype, rows) for m in (attn.o_proj, mlp.gate_up_proj, mlp.down_proj))
    names = ["input_layernorm", "post_attention_layernorm"]
    names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"] if gemma else []
    norms = [_norm(getattr(layer, name), dtype) for name in names]
    qk, qk_eps = attn.qk_norms()
    if qk is not None and any(w.dtype != dtype or not w.is_contiguous() for w in qk):
        return None
    if qkv is None or o is None or gate_up is None or down is None or any(n is None for n in norms):
        return None
    present = [n for n in norms if n is not None]
    eps = {n.eps for n in present} | ({qk_eps} if qk else set())
    if len(eps) != 1 or {n.unit_offset for n in present} != {gemma}:
        return None
    head_dim = attn.head_dim
    if qkv.out_features != (attn.num_heads + 2 * attn.num_kv_heads) * head_dim:
        return None
    weights = [n.weight.data_ptr() for n in present] + [0] * (4 - len(present))
    qk_weights = [w.data_ptr() for w in qk] if qk else [0, 0]
    return _DecodeLayer(
        o.out_features, attn.num_heads, attn.num_kv_heads, head_dim, gate_up.out_features // 2, eps.pop(),
        attn.scale, attn.window or 0, int(gemma), int(mlp.gelu), *weights, *qk_weights,
        0 if bias is None else bias.data_ptr(), qkv, o, gate_up, down, k_cache.data_ptr(), v_cache.data_ptr(),
    )  # fmt: skip
