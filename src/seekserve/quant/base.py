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
from collections.abc import Sequence

import torch
from torch import nn

from seekserve.models.fp8_checkpoint import Fp8BlockTensor

__all__ = ["Index", "QuantizedWeight", "storage_param"]

Index = tuple[int, ...]
"""Which matrix of the stack: () for an unstacked weight, (expert,) for stacked experts."""


def storage_param(*shape: int, dtype: torch.dtype, device: torch.device | str | None = None) -> nn.Parameter:
    """A frozen parameter for quantized storage (counted by `model.parameters()` like any weight)."""
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class QuantizedWeight(nn.Module, abc.ABC):
    """A stack of [N, K] matrices in a low-bit format, with the matmuls that read it.

    Subclasses allocate their storage as parameters in `__init__` (on the current default device)
    and implement the methods below. `dtype` is the compute dtype: activations come in it and
    results and dequantized weights go out in it. `max_kernel_rows` selects the path per call:
    steps with at most that many rows run the packed kernel, larger ones the large-batch path.
    """

    def __init__(
        self,
        lead: tuple[int, ...],
        out_features: int,
        in_features: int,
        part_sizes: Sequence[int],
        dtype: torch.dtype,
        max_kernel_rows: int,
    ):
        super().__init__()
        if sum(part_sizes) != out_features:
            raise ValueError(f"part sizes {tuple(part_sizes)} do not add up to {out_features} rows")
        self.lead = lead
        self.out_features = out_features
        self.in_features = in_features
        self.part_sizes = tuple(part_sizes)
        self.dtype = dtype
        self.max_kernel_rows = max_kernel_rows

    @abc.abstractmethod
    def load_rows(self, index: Index, start: int, rows: torch.Tensor) -> None:
        """Quantize float rows [n, K] into rows [start, start + n) of matrix `index`."""

    def load_fp8(self, index: Index, start: int, rows: Fp8BlockTensor) -> None:
        """Rows given as an FP8 checkpoint tensor; formats that keep FP8 override this to copy them."""
        self.load_rows(index, start, rows.dequantize(torch.float32))

    def finish(self, index: Index) -> None:  # noqa: B027 - most formats need no finishing step
        """All rows of matrix `index` are in: prepare it for `matmul` (e.g. pack for the kernel)."""

    @abc.abstractmethod
    def matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        """x [M, K] (compute dtype, contiguous rows) @ W[index]^T -> [M, N] in the compute dtype."""

    @abc.abstractmethod
    def dequantize(self, index: Index = ()) -> torch.Tensor:
        """W[index] as a float matrix [N, K] in the compute dtype."""

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

    def _num_row_blocks(self, block: int) -> int:
        return sum(-(-size // block) for size in self.part_sizes)

    def _row_block_sizes(self, block: int) -> list[int]:
        """Rows in each row block, in order (the last block of a part may be short)."""
        sizes: list[int] = []
        for size in self.part_sizes:
            sizes += [block] * (size // block) + ([size % block] if size % block else [])
        return sizes
