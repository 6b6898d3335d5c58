"""The contract every quantized weight format follows, and the helpers the formats share.

A `QuantizedWeight` holds a stack of matrices [*lead, N, K] (lead is () for a linear layer,
(num_experts,) for DeepSeek's stacked experts) in a low-bit format:

    allocate empty  ->  load_rows(...) for every row, once  ->  finish(index)  ->  matmul / dequantize

Rows arrive as float tensors (one checkpoint tensor, i.e. one part of a fused layer, at a time) and
are quantized on arrival, so a float copy of a whole layer never exists. Rows that share a scale
never straddle two `load_rows` calls: the `part_sizes` given at construction are where scale blocks
are cut (FP8's 128-row blocks restart at every part, as in a checkpoint that stores q, k and v apart).
`finish` runs once all rows of a matrix are in (int4 packs the kernel's layout there).
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.layers.fp8_checkpoint import Fp8BlockTensor

__all__ = ["Index", "QuantizedWeight", "StackShape", "stack_part", "storage_param"]

Index = tuple[int, ...]
"""Which matrix of the stack: () for an unstacked weight, (expert,) for stacked experts."""


def stack_part(tensor: torch.Tensor, index: Index) -> torch.Tensor:
    """tensor[index]; an unstacked weight (index ()) as it is, without the view a decode step's
    many small products would otherwise each make."""
    return tensor[index] if index else tensor


class StackShape(NamedTuple):
    """A stack `lead` of [out_features, in_features] matrices whose rows come in parts (q, k, v)."""

    lead: tuple[int, ...]
    out_features: int
    in_features: int
    part_sizes: tuple[int, ...]


_DEQUANT_BLOCK_ELEMENTS = 1 << 20
"""Weights dequantized at a time by `dequantized_matmul` (2 MB in bf16: stays in cache)."""

_LOAD_CHUNK_ELEMENTS = 1 << 20
"""Weights quantized at a time by `load_rows_chunked`: bounds the float32 temporaries of quantizing
one checkpoint tensor (a 262k × 640 embedding would otherwise need several 0.7 GB copies)."""


def storage_param(*shape: int, dtype: torch.dtype) -> nn.Parameter:
    """A frozen parameter for quantized storage (counted by `model.parameters()` like any weight),
    on the current default device."""
    return nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)


class QuantizedWeight(nn.Module, abc.ABC):
    """A stack of [N, K] matrices in a low-bit format, with the matmuls that read it.

    Subclasses allocate their storage as parameters in `__init__` (on the current default device)
    and implement the methods below. `dtype` is the compute dtype: activations come in it and
    results and dequantized weights go out in it. `max_kernel_rows` selects the path per call:
    steps with at most that many rows run the packed kernel, larger ones the large-batch path.
    """

    def __init__(self, shape: StackShape, dtype: torch.dtype, max_kernel_rows: int):
        super().__init__()
        if sum(shape.part_sizes) != shape.out_features:
            raise ValueError(f"part sizes {shape.part_sizes} do not add up to {shape.out_features} rows")
        self.lead, self.out_features, self.in_features, self.part_sizes = shape
        self.dtype = dtype
        self.max_kernel_rows = max_kernel_rows
        self.row_alignment = 1
        """Rows that share scales: chunks of a part given to `load_rows` start a multiple of it apart."""

    @abc.abstractmethod
    def load_rows(self, index: Index, start: int, rows: torch.Tensor) -> None:
        """Quantize float rows [n, K] into rows [start, start + n) of matrix `index`."""

    def load_rows_chunked(self, index: Index, start: int, rows: torch.Tensor) -> None:
        """`load_rows` a few million weights at a time, chunks a whole number of 128-row blocks (and of
        the format's row blocks) long, so scale blocks never straddle two chunks."""
        block = math.lcm(128, self.row_alignment)
        step = max(block, _LOAD_CHUNK_ELEMENTS // max(1, self.in_features) // block * block)
        for offset in range(0, rows.shape[0], step):
            self.load_rows(index, start + offset, rows[offset : offset + step])

    def load_fp8(self, index: Index, start: int, rows: Fp8BlockTensor) -> None:
        """Rows given as an FP8 checkpoint tensor; formats that keep FP8 override this to copy them."""
        self.load_rows_chunked(index, start, rows.dequantize(torch.float32))

    def finish(self, index: Index) -> None:
        """All rows of matrix `index` are in: prepare it for `matmul` (e.g. pack for the kernel)."""

    @abc.abstractmethod
    def matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        """x [M, K] (compute dtype, contiguous rows) @ W[index]^T -> [M, N] in the compute dtype."""

    @abc.abstractmethod
    def dequantize_rows(self, index: Index, start: int, end: int) -> torch.Tensor:
        """Rows [start, end) of W[index] as a float matrix in the compute dtype; `start` is a multiple of
        64 (int4's row blocks) and `end` one too, or N."""

    def dequantize(self, index: Index = ()) -> torch.Tensor:
        """W[index] as a float matrix [N, K] in the compute dtype."""
        return self.dequantize_rows(index, 0, self.out_features)

    def dequant_block_rows(self) -> int:
        """Rows `dequantized_matmul` dequantizes at a time: a cache-sized block, a multiple of 64."""
        return max(64, _DEQUANT_BLOCK_ELEMENTS // self.in_features // 64 * 64)

    def dequantized_matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        """x @ W^T through the dequantized weight, a cache-sized block of rows at a time: dequantizing
        a 262k-row LM head whole runs at memory speed, about 6× slower than block by block."""
        n, rows = self.out_features, self.dequant_block_rows()
        if rows >= n:
            return F.linear(x, self.dequantize_rows(index, 0, n))
        y = x.new_empty(x.shape[0], n)
        for start in range(0, n, rows):
            end = min(n, start + rows)
            y[:, start:end] = F.linear(x, self.dequantize_rows(index, start, end))
        return y

    def gather_rows(self, rows: torch.Tensor, index: Index = ()) -> torch.Tensor:
        """Rows `rows` ([M] int64) of the dequantized W[index], [M, K]: embedding lookups of a tied head."""
        return self.dequantize(index).index_select(0, rows)

    @property
    def supports_gather(self) -> bool:
        """Whether `gather_rows` reads only the rows asked for (cheap enough for embedding lookups)."""
        return False

    def extra_repr(self) -> str:
        lead = f"{self.lead}, " if self.lead else ""
        return f"{lead}out={self.out_features}, in={self.in_features}, max_kernel_rows={self.max_kernel_rows}"

    def _part_start_blocks(self, block: int) -> dict[int, int]:
        """Row where each part starts -> index of its first row block, blocks cut at part boundaries."""
        starts: dict[int, int] = {}
        row = blocks = 0
        for size in self.part_sizes:
            starts[row] = blocks
            row += size
            blocks += -(-size // block)
        return starts

    def _row_block_sizes(self, block: int) -> list[int]:
        """Rows in each row block, in order (the last block of a part may be short)."""
        sizes: list[int] = []
        for size in self.part_sizes:
            sizes += [block] * (size // block) + ([size % block] if size % block else [])
        return sizes
