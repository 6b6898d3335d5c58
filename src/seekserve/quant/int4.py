"""int4 weights: asymmetric, one scale and one zero per group of G weights along the input dimension.

    W[n, k] ≈ (q[n, k] - 8) · scale[n, g] + zero[n, g]       q ∈ [0, 15], g = k // G
    scale = (max - min) / 15 over the group,  zero = min + 8 · scale

This is the convention of torch's int4 kernels (scale and zero interleaved as [K / G, N, 2]). On
CPU the weights are packed into torch._weight_int4pack_mm_for_cpu's layout, two values a byte in
row blocks that depend on the CPU (see `int4_layout.py`); elsewhere they are kept two a byte in
row order and dequantized per call (quant/cuda.py).

Per call on CPU, by the number of token rows M: M ≤ max_kernel_rows runs a packed kernel (reads
an eighth of a float32 matmul's bytes); larger M dequantizes the layer in one pass
(int4_dequantize.cpp; a matrix of more than 16M weights, such as an LM head, a cache-sized block of
rows at a time) and runs a float matmul, which wins once the kernel's per-row cost outgrows the
unpacking (docs/quantization.md). The packed kernel is seekserve's integer-dot-product one
(layers/kernels/int4_matmul.cpp) where the CPU has AVX-512 VNNI and VBMI and torch packs 64-row
blocks, else torch's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from seekserve.layers.cpu_kernels import CpuKernels, cpu_kernels
from seekserve.quant import cuda
from seekserve.quant.base import Index, QuantizedWeight, StackShape, stack_part, storage_param
from seekserve.quant.config import INT4_GROUP_SIZES
from seekserve.quant.int4_layout import (
    BlockLayout,
    cpu_block_layout,
    dequantize_with_kernel,
    pack_cpu,
    unpack_cpu,
)
from seekserve.quant.int8 import storage_scale

__all__ = ["Int4Shape", "Int4Weight", "int4_shape", "quantize_int4"]

_FLAT_GROUP_STEP = 2.0**-12
"""A group whose values are all equal gets a grid this fine relative to them, so it stays exact."""


def vnni_kernels() -> CpuKernels | None:
    """The kernels whose `int4_matmul` reads this process's int4 packing, where there are any."""
    kernels = cpu_kernels()
    if kernels is None or not kernels.has_int4_matmul or cpu_block_layout() != BlockLayout(64, True):
        return None
    return kernels


_WHOLE_DEQUANT_ELEMENTS = 1 << 24
"""Matrices up to this many elements (32 MB in bf16) are dequantized whole for one product; larger
ones (an LM head) a cache-sized block of rows at a time."""


def _dequantizer(dtype: torch.dtype) -> CpuKernels | None:
    """The kernels whose `int4_dequantize` reads this process's packing in `dtype`, where there are any."""
    kernels = cpu_kernels()
    if kernels is None or not kernels.supports(dtype) or cpu_block_layout() is None:
        return None
    return kernels


class Int4Shape(NamedTuple):
    """Storage shape of an int4 matrix: rows padded for the kernel's row blocks, columns for groups."""

    rows: int
    cols: int
    group: int


def int4_shape(out_features: int, in_features: int, group: int) -> Int4Shape:
    """Rows padded to a multiple of 16 (the packing's smallest row block); the group is the largest
    supported size up to `group` that divides the input width, or 32 with the width padded to it."""
    fits = [g for g in INT4_GROUP_SIZES if g <= group and in_features % g == 0]
    group = max(fits) if fits else INT4_GROUP_SIZES[0]
    return Int4Shape(-(-out_features // 16) * 16, -(-in_features // group) * group, group)


def quantize_int4(
    w: torch.Tensor, group: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows w [n, K] (K a multiple of `group`) -> (q uint8 [n, K] in [0, 15], scale, zero [n, K / group])."""
    n, k = w.shape
    g = w.float().view(n, k // group, group)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    span = torch.maximum(hi - lo, torch.maximum(hi.abs(), lo.abs()) * _FLAT_GROUP_STEP)
    scale = storage_scale(span.clamp(min=torch.finfo(torch.float32).tiny) / 15, dtype)
    zero = (lo + 8 * scale.float()).to(dtype)
    q = torch.round((g - zero.float()[..., None]) / scale.float()[..., None]).add_(8).clamp_(0, 15)
    return q.view(n, k).to(torch.uint8), scale, zero


class Int4Weight(QuantizedWeight):
    """Packed values [*lead, Np, Kp / 2] uint8 and scales_zeros [*lead, Kp / G, Np, 2] (compute dtype)."""

    def __init__(self, shape: StackShape, dtype: torch.dtype, max_kernel_rows: int, group: int):
        super().__init__(shape, dtype, max_kernel_rows)
        self.layout = int4_shape(shape.out_features, shape.in_features, group)
        rows, cols, group = self.layout
        self.packed = storage_param(*shape.lead, rows, cols // 2, dtype=torch.uint8)
        self.scales_zeros = storage_param(*shape.lead, cols // group, rows, 2, dtype=dtype)
        self.on_cpu = self.packed.device.type == "cpu"
        kernels = vnni_kernels() if self.on_cpu and rows % 64 == 0 else None
        self.kernels = kernels if kernels is not None and kernels.supports(dtype) else None
        """Set where `matmul` runs the integer-dot-product kernel for up to max_kernel_rows rows
        (float32 and bfloat16; float16 keeps torch's kernel)."""
        self.dequantizer = _dequantizer(dtype) if self.on_cpu else None
        """Set where the large-row path dequantizes with int4_dequantize.cpp (float32 and bfloat16 on a
        probed packing; else `dequantize_rows_reference`)."""
        self._pending: dict[Index, torch.Tensor] = {}

    def load_rows(self, index: Index, start: int, rows: torch.Tensor) -> None:
        n, k = rows.shape
        rows = rows.to(self.packed.device)
        if k < self.layout.cols:
            rows = F.pad(rows.float(), (0, self.layout.cols - k))
        q, scale, zero = quantize_int4(rows, self.layout.group, self.dtype)
        pending = self._pending.get(index)
        if pending is None:
            pending = torch.zeros(self.layout.rows, self.layout.cols, dtype=torch.uint8, device=q.device)
            self._pending[index] = pending
        pending[start : start + n] = q
        sz = self.scales_zeros.data[index]  # [groups, Np, 2]
        sz[:, start : start + n, 0] = scale.t()
        sz[:, start : start + n, 1] = zero.t()

    def finish(self, index: Index) -> None:
        q = self._pending.pop(index)
        self.scales_zeros.data[index][:, self.out_features :] = 0  # padding rows dequantize to 0
        if self.on_cpu:
            self.packed.data[index].copy_(pack_cpu(q))
        else:
            self.packed.data[index].copy_(q[:, 0::2] | (q[:, 1::2] << 4))

    def matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        if not self.on_cpu:
            return cuda.dense_matmul(x, self.dequantize(index))
        if x.shape[0] > self.max_kernel_rows and cpu_block_layout() is not None:
            return self.dequantized_matmul(x, index)
        if x.shape[1] < self.layout.cols:
            x = F.pad(x, (0, self.layout.cols - x.shape[1]))
        packed, sz = stack_part(self.packed, index), stack_part(self.scales_zeros, index)
        if self.kernels is not None and x.dtype == sz.dtype and x.stride(1) == 1:
            y = self.kernels.int4_matmul(x, packed, sz, self.layout.group)
        else:
            y = torch._weight_int4pack_mm_for_cpu(x.contiguous(), packed, self.layout.group, sz)
        return y if self.layout.rows == self.out_features else y[:, : self.out_features]

    def dequantized_matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        """As QuantizedWeight's, dequantized by the kernel in one pass: a layer's matrix whole, a larger one
        block by block into one buffer."""
        if self.dequantizer is None:
            return super().dequantized_matmul(x, index)
        n, rows = self.out_features, self.dequant_block_rows()
        if self.layout.rows * self.layout.cols <= _WHOLE_DEQUANT_ELEMENTS:
            # A layer's matrix: one pass writes it whole (a few MB) and one product reads it, as bf16
            # runs; blocks cost more in products and column copies than the dequantized bytes save.
            rows = self.layout.rows
        buffer = x.new_empty(min(rows, self.layout.rows), self.layout.cols)  # [rows, Kp]
        if rows >= n:
            return F.linear(x, self.dequantize_rows_into(index, 0, n, buffer))
        y = x.new_empty(x.shape[0], n)
        for start in range(0, n, rows):
            end = min(n, start + rows)
            y[:, start:end] = F.linear(x, self.dequantize_rows_into(index, start, end, buffer))
        return y

    def dequantize_rows(self, index: Index, start: int, end: int) -> torch.Tensor:
        if self.dequantizer is None:
            return self.dequantize_rows_reference(index, start, end)
        n = (self.layout.rows if end == self.out_features else end) - start
        return self.dequantize_rows_into(
            index, start, end, torch.empty(n, self.layout.cols, dtype=self.dtype)
        )

    def dequantize_rows_into(self, index: Index, start: int, end: int, out: torch.Tensor) -> torch.Tensor:
        """`dequantize_rows` through the kernel (needs `dequantizer`), written into the first rows of
        out [>= block rows, Kp] (dense, the compute dtype); returns the view of out it filled."""
        assert self.dequantizer is not None, "no dequantization kernel: use dequantize_rows_reference"
        layout = cpu_block_layout()
        assert layout is not None, "the kernel reads a probed packing"
        stop = self.layout.rows if end == self.out_features else end  # the padding rows close the last block
        packed, sz = self.packed[index][start:stop], self.scales_zeros[index][:, start:stop]
        w = self.dequantizer.int4_dequantize(packed, sz, self.layout.group, layout, out[: stop - start])
        return w[: end - start, : self.in_features]

    def dequantize_rows_reference(self, index: Index, start: int, end: int) -> torch.Tensor:
        """`dequantize_rows` in torch ops: the arithmetic the kernel reproduces bit for bit."""
        rows, cols, group = self.layout
        stop = rows if end == self.out_features else end  # the padding rows close the last row block
        packed, sz = self.packed[index][start:stop], self.scales_zeros[index][:, start:stop]
        if self.on_cpu and cpu_block_layout() is None:
            w = dequantize_with_kernel(packed, group, sz).to(self.dtype)
        else:
            n = stop - start
            q = (
                unpack_cpu(packed)
                if self.on_cpu
                else torch.stack((packed & 15, packed >> 4), -1).view(n, cols)
            )
            # in the compute dtype: (q - 8) is exact, and this runs per call on the large-batch path
            scale, zero = sz[..., 0].t()[..., None], sz[..., 1].t()[..., None]  # [n, groups, 1]
            w = ((q.view(n, cols // group, group).to(self.dtype) - 8) * scale + zero).view(n, cols)
        return w[: end - start, : self.in_features]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group={self.layout.group}"
