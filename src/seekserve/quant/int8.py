"""int8 weights: one symmetric scale per output channel.

    W[n, k] ≈ q[n, k] · scale[n]        q ∈ [-127, 127] int8, scale = max_k |W[n, k]| / 127

Per call, by the number of token rows M:
    M ≤ max_kernel_rows   torch._weight_int8pack_mm: bf16/fp32 activations times int8 weights; it
                          reads half the bytes of a bf16 matmul (decode is memory-bound), but its cost
                          grows linearly with M, so it loses to a float matmul beyond a few rows
    larger M              the layer dequantized to the compute dtype, then a float matmul (same
                          weights, so the same results up to rounding); or, with `dynamic_activations`,
                          an int8 × int8 matmul (torch._int_mm, int32 accumulation) with one scale per
                          token row: faster than bf16 from ~16 rows, but per-token activation scales
                          cost accuracy on models with activation outliers (docs/quantization.md)
"""

from __future__ import annotations

import torch

from seekserve.quant import cuda
from seekserve.quant.base import Index, QuantizedWeight, StackShape, stack_part, storage_param

__all__ = ["Int8Weight", "int8_dynamic_matmul", "quantize_int8", "storage_scale"]

_QMAX = 127


def storage_scale(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`scale` (float32, positive) in `dtype`, rounded up so that no quantized value overflows its range."""
    finfo = torch.finfo(dtype)
    return (scale * (1 + finfo.eps)).clamp(min=finfo.tiny, max=finfo.max).to(dtype)


def quantize_int8(w: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows w [n, K] -> (q int8 [n, K], scale [n] in `scale_dtype`); an all-zero row gets scale tiny."""
    w = w.float()
    scale = storage_scale(w.abs().amax(dim=-1) / _QMAX, scale_dtype)
    q = torch.round(w / scale.float()[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q, scale


def int8_dynamic_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ (q [N, K] · scale [N])^T with x quantized to int8 per row; int32 accumulation."""
    xf = x.float()
    x_scale = xf.abs().amax(dim=-1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny) / _QMAX
    xq = torch.round(xf / x_scale).to(torch.int8)
    acc = torch._int_mm(xq, q.t())  # [M, N] int32
    # in place, one float32 temporary: half the time of (acc * (x_scale * scale)) on a 262k-wide head
    return acc.float().mul_(scale.float()).mul_(x_scale).to(x.dtype)


class Int8Weight(QuantizedWeight):
    """int8 values [*lead, N, K] and per-channel scales [*lead, N] in the compute dtype."""

    def __init__(
        self, shape: StackShape, dtype: torch.dtype, max_kernel_rows: int, dynamic_activations: bool = False
    ):
        super().__init__(shape, dtype, max_kernel_rows)
        self.dynamic_activations = dynamic_activations
        self.values = storage_param(*shape.lead, shape.out_features, shape.in_features, dtype=torch.int8)
        self.scales = storage_param(*shape.lead, shape.out_features, dtype=dtype)

    def load_rows(self, index: Index, start: int, rows: torch.Tensor) -> None:
        q, scale = quantize_int8(rows.to(self.values.device), self.dtype)
        end = start + rows.shape[0]
        self.values.data[index][start:end].copy_(q)
        self.scales.data[index][start:end].copy_(scale)

    def matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        q, scale = stack_part(self.values, index), stack_part(self.scales, index)
        large = x.shape[0] > self.max_kernel_rows
        if large and self.dynamic_activations and (x.is_cpu or x.shape[0] > 16):  # CUDA's _int_mm: M > 16
            return int8_dynamic_matmul(x, q, scale)
        if x.is_cuda:
            return cuda.int8_matmul(x, q, scale)
        if not large:
            return torch._weight_int8pack_mm(x, q, scale)
        return self.dequantized_matmul(x, index)

    def dequantize_rows(self, index: Index, start: int, end: int) -> torch.Tensor:
        # in the compute dtype: int8 values are exact in bf16, so one rounding, as in the kernel's output
        return self.values[index][start:end].to(self.dtype) * self.scales[index][start:end, None]

    def gather_rows(self, rows: torch.Tensor, index: Index = ()) -> torch.Tensor:
        q = self.values[index].index_select(0, rows).float()
        return (q * self.scales[index].index_select(0, rows).float()[:, None]).to(self.dtype)

    @property
    def supports_gather(self) -> bool:
        return True
