"""Building blocks shared by the model families: linear layers that load fused shards, norms, rotary.

Layers hold their weights as frozen parameters created with `torch.empty` on the current default
device; `load_weights` of each model fills them from checkpoint tensors.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.layers.cpu_kernels import CpuKernels, kernels_for
from seekserve.layers.fp8_checkpoint import Fp8BlockTensor, as_dense

__all__ = [
    "Embedding",
    "FusedParts",
    "Linear",
    "PartLoader",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rotary",
    "deferred_weights",
    "empty_param",
    "packed_rows",
    "prepack_linears",
]

_MKLDNN_LAYOUT: torch.layout = torch._mkldnn  # type: ignore[attr-defined]
"""The layout of weights prepacked for oneDNN (`Linear.prepack`)."""
PACKED_ROW_STEP = 16
"""Prepacked matmuls run on a multiple of this many rows (`packed_rows`)."""

_DEFERRED = contextvars.ContextVar("seekserve_deferred_weights", default=False)


@contextlib.contextmanager
def deferred_weights(enabled: bool = True) -> Iterator[None]:
    """Within it, `empty_param` makes parameters on the meta device (no memory): a model built so
    can have layers swapped (e.g. for quantized ones) before its remaining weights are allocated."""
    token = _DEFERRED.set(enabled)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def empty_param(*shape: int, dtype: torch.dtype) -> nn.Parameter:
    device = "meta" if _DEFERRED.get() else None
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


@runtime_checkable
class PartLoader(Protocol):
    """A layer filled from checkpoint tensors part by part (fused q/k/v, gate/up; quantized or not)."""

    def load_part(self, index: int, tensor: torch.Tensor | Fp8BlockTensor, is_bias: bool = False) -> None: ...


class FusedParts:
    """Output rows made of several checkpoint tensors (parts, e.g. q, k, v): where each part lies,
    and how the checkpoint loader counts them. Shared by `Linear` and the quantized linear layer."""

    output_sizes: tuple[int, ...]
    bias: nn.Parameter | None

    def part_slice(self, index: int) -> slice:
        start = sum(self.output_sizes[:index])
        return slice(start, start + self.output_sizes[index])

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return y.split(self.output_sizes, dim=-1)

    def checkpoint_params(self) -> dict[str, int]:
        """Checkpoint parameter name (relative to this module) -> number of parts that make it."""
        parts = {"weight": len(self.output_sizes)}
        if self.bias is not None:
            parts["bias"] = len(self.output_sizes)
        return parts

    def load_bias_part(self, index: int, tensor: torch.Tensor) -> None:
        assert self.bias is not None, "checkpoint has a bias this layer was built without"
        _copy_checked(self.bias.data[self.part_slice(index)], tensor)


class Linear(FusedParts, nn.Module):
    """y = x W^T + b, with W possibly the row-wise concatenation of several checkpoint tensors.

    `output_sizes` lists the parts (e.g. q, k, v) so that `load_part(i, w)` can fill part i;
    one matmul then computes all parts, and `split` separates them again.
    """

    def __init__(self, in_features: int, output_sizes: Sequence[int], bias: bool, dtype: torch.dtype):
        super().__init__()
        self.in_features = in_features
        self.output_sizes = tuple(output_sizes)
        self.out_features = sum(self.output_sizes)
        self.weight = empty_param(self.out_features, in_features, dtype=dtype)
        self.bias = empty_param(self.out_features, dtype=dtype) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.layout == _MKLDNN_LAYOUT:
            rows = x.shape[0]
            padded = packed_rows(rows)
            if padded != rows:  # [rows, in] -> [padded, in]; the extra rows' outputs are dropped
                x = torch.cat([x, x.new_zeros(padded - rows, *x.shape[1:])])
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")[:rows]
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def load_part(self, index: int, tensor: torch.Tensor | Fp8BlockTensor, is_bias: bool = False) -> None:
        if is_bias:
            self.load_bias_part(index, as_dense(tensor, self.weight.dtype))
        else:
            _copy_checked(self.weight.data[self.part_slice(index)], as_dense(tensor, self.weight.dtype))

    def dense_weight(self) -> torch.Tensor:
        """The weight as a float matrix [out, in] (quantized layers dequantize it)."""
        return self.weight.to_dense() if self.weight.layout == _MKLDNN_LAYOUT else self.weight

    def prepack(self) -> bool:
        """Lay a CPU bfloat16 weight out once in oneDNN's blocked format, which its matmul reads
        faster than the plain one (1.5x for one token at Gemma 3 270M's shapes, docs/performance.md).
        The layer then holds only the packed weight; a weight shared with another module (a tied
        LM head) is copied, not moved. Returns whether the weight was packed."""
        w = self.weight
        if w.device.type != "cpu" or w.dtype != torch.bfloat16 or w.layout != torch.strided:
            return False
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1)
        self.weight = nn.Parameter(packed, requires_grad=False)
        return True

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.output_sizes}, bias={self.bias is not None}"


def packed_rows(rows: int) -> int:
    """The rows a prepacked matmul runs for `rows` input rows: as many up to PACKED_ROW_STEP, else
    rounded up to a multiple of it.

    oneDNN keeps a primitive, with scratch memory of its own, for every input shape it meets (up to
    1,024 of them), and prefill chunks come in any length: an engine's resident memory climbed by
    hundreds of MB over ten minutes of mixed traffic (benchmarks/soak.py, docs/reliability.md).
    In steps of 16 rows a few dozen shapes cover every step, for at most 15 padded rows of work.
    """
    if rows <= PACKED_ROW_STEP:
        return rows
    return -(-rows // PACKED_ROW_STEP) * PACKED_ROW_STEP


def prepack_linears(model: nn.Module, keep: Sequence[nn.Module] = ()) -> int:
    """Prepack every `Linear` of the model but those in `keep` for the CPU (see `Linear.prepack`);
    returns how many."""
    return sum(
        m.prepack() for m in model.modules() if isinstance(m, Linear) and all(m is not k for k in keep)
    )


def _copy_checked(target: torch.Tensor, tensor: torch.Tensor) -> None:
    if target.shape != tensor.shape:
        raise ValueError(f"shape {tuple(tensor.shape)} does not fit {tuple(target.shape)}")
    target.copy_(tensor)


class Embedding(nn.Module):
    def __init__(self, num_embeddings: int, dim: int, dtype: torch.dtype):
        super().__init__()
        self.weight = empty_param(num_embeddings, dim, dtype=dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class RMSNorm(nn.Module):
    """RMS normalisation in float32; `unit_offset` scales by (1 + weight) as Gemma does."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = empty_param(dim, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = self._kernels(x)
        if kernels is not None:
            return kernels.rms_norm(x, self.weight, self.eps, self.unit_offset)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:
            return (h * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * h.to(x.dtype)

    def add_forward(
        self, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise x + residual; return (normalised, the new residual). May update `residual`
        in place (callers own it: it is the previous add's result)."""
        kernels = self._kernels(x)
        if kernels is not None and residual is not None and residual.is_contiguous():
            return kernels.rms_norm(x, self.weight, self.eps, self.unit_offset, residual), residual
        if residual is not None:
            x = x + residual
        return self(x), x

    def _kernels(self, x: torch.Tensor) -> CpuKernels | None:
        """The fused CPU kernel applies to 2-D rows of the weight's dtype."""
        if x.dim() != 2 or x.stride(-1) != 1 or x.dtype != self.weight.dtype:
            return None
        return kernels_for(x)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding with a precomputed cos/sin table in float32.

    `inv_freq` ([rotary_dim // 2]) and `scaling` come from the model's rope configuration, so every
    scaling type transformers knows (linear, llama3, yarn, ...) gives the same table it would.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, inv_freq: torch.Tensor, scaling: float, max_positions: int):
        super().__init__()
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq.float())  # [max_positions, rotary_dim // 2]
        self.register_buffer("cos", freqs.cos() * scaling, persistent=False)
        self.register_buffer("sin", freqs.sin() * scaling, persistent=False)

    def lookup(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of each position, [num_tokens, 1, rotary_dim // 2], in `dtype`."""
        return self.cos[positions, None].to(dtype), self.sin[positions, None].to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [num_tokens, heads, dim] by position, the halves layout (GPT-NeoX, Llama, Qwen2, Gemma)."""
    half = cos.shape[-1]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if 2 * half == x.shape[-1]:
        return rotated
    return torch.cat((rotated, x[..., 2 * half :]), dim=-1)
