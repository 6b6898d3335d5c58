"""FP8 weights: float8_e4m3fn values with one float32 scale per block (DeepSeek-V3's format).

    W[i, j] ≈ fp8[i, j] · scale_inv[row_block(i), j // block]        scale_inv = max |W| / 448 per block

Blocks are block×block tiles (128×128 by default), cut afresh at each part of a fused layer as a
checkpoint that stores q, k and v apart would cut them; block 0 means one scale per output channel.
DeepSeek's FP8 checkpoints come in exactly this form and are copied in without a float round trip.

Storage and matmul depend on the device (docs/quantization.md has the measurements):
  CUDA sm_89+          FP8 bytes in memory, torch._scaled_mm (quant/cuda.py)
  CPU, "dequantized"   the FP8-rounded weights in the compute dtype: FP8's accuracy at float speed,
                       no memory saved (converting FP8 on this CPU costs ~40× a bf16 matmul per use)
  CPU, "fp8"           FP8 bytes in memory, dequantized (through a 256-entry table) each call
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seekserve.layers.fp8_checkpoint import Fp8BlockTensor
from seekserve.quant import cuda
from seekserve.quant.base import Index, QuantizedWeight, StackShape, storage_param

__all__ = ["FP8_MAX", "Fp8Weight", "fp8_to_float", "quantize_fp8"]

FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)


def quantize_fp8(w: torch.Tensor, row_block: int, col_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize rows w [n, K]: float8_e4m3fn values [n, K] and float32 scale_inv, one per
    row_block × col_block block, [ceil(n / row_block), ceil(K / col_block)]."""
    n, k = w.shape
    nr, nc = -(-n // row_block), -(-k // col_block)
    padded = F.pad(w.float(), (0, nc * col_block - k, 0, nr * row_block - n))
    blocks = padded.view(nr, row_block, nc, col_block)
    scale = (blocks.abs().amax(dim=(1, 3)) / FP8_MAX).clamp_(min=torch.finfo(torch.float32).tiny)
    q = (blocks / scale[:, None, :, None]).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.view(nr * row_block, nc * col_block)[:n, :k].contiguous(), scale


@torch.no_grad()
def fp8_to_float(values: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn -> float32; on CPU through a 256-entry table (several times faster than a cast)."""
    if values.device.type != "cpu":
        return values.float()
    table = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    codes = values.view(torch.uint8).reshape(-1).to(torch.int32)
    return table.index_select(0, codes).view(values.shape)


class Fp8Weight(QuantizedWeight):
    """values [*lead, N, K] float8_e4m3fn and scale_inv [*lead, row blocks, column blocks] float32, or,
    when `keep_fp8` is off, the FP8-rounded values in the compute dtype and no scales."""

    row_block_of: torch.Tensor

    def __init__(
        self, shape: StackShape, dtype: torch.dtype, max_kernel_rows: int, block: int, keep_fp8: bool
    ):
        super().__init__(shape, dtype, max_kernel_rows)
        lead, out_features, in_features, part_sizes = shape
        self.keep_fp8 = keep_fp8
        self.row_block = self.row_alignment = block or 1
        self.col_block = block or in_features
        self.num_col_blocks = -(-in_features // self.col_block)
        sizes = self._row_block_sizes(self.row_block)
        # _scaled_mm takes per-channel scales, or 128×128 blocks that tile the whole matrix
        self._scaled_mm_layout = block == 0 or (block == 128 and all(p % 128 == 0 for p in part_sizes))
        self._part_blocks = self._part_start_blocks(self.row_block)
        if keep_fp8:
            self.values = storage_param(*lead, out_features, in_features, dtype=torch.float8_e4m3fn)
            self.scale_inv = storage_param(*lead, len(sizes), self.num_col_blocks, dtype=torch.float32)
        else:
            self.values = storage_param(*lead, out_features, in_features, dtype=dtype)
        blocks = torch.arange(len(sizes), device=self.values.device)
        sizes_t = torch.tensor(sizes, device=self.values.device)
        self.register_buffer("row_block_of", blocks.repeat_interleave(sizes_t), persistent=False)

    def load_rows(self, index: Index, start: int, rows: torch.Tensor) -> None:
        q, scale = quantize_fp8(rows.to(self.values.device), self.row_block, self.col_block)
        end = start + rows.shape[0]
        if self.keep_fp8:
            self.values.data[index][start:end].copy_(q)
            first = self._first_block(start)
            self.scale_inv.data[index][first : first + scale.shape[0]].copy_(scale)
        else:
            self.values.data[index][start:end].copy_(self._expand(fp8_to_float(q), scale))

    def load_fp8(self, index: Index, start: int, rows: Fp8BlockTensor) -> None:
        """A checkpoint's FP8 rows in blocks like ours are taken as they are: bytes and scales copied,
        or dequantized once into the compute dtype. Other blocks are requantized."""
        block = (self.row_block, self.col_block)
        same = rows.weight.dtype == torch.float8_e4m3fn and rows.fmt.block_size == block
        if not (same and start in self._part_blocks):
            super().load_fp8(index, start, rows)
            return
        end = start + rows.shape[0]
        if not self.keep_fp8:
            self.values.data[index][start:end].copy_(rows.dequantize(self.dtype))
            return
        self.values.data[index][start:end].copy_(rows.weight)
        first = self._part_blocks[start]
        self.scale_inv.data[index][first : first + rows.scale_inv.shape[0]].copy_(rows.scale_inv)

    def matmul(self, x: torch.Tensor, index: Index = ()) -> torch.Tensor:
        if not self.keep_fp8:
            return F.linear(x, self.values[index])
        if x.is_cuda and self._scaled_mm_layout:
            y = cuda.fp8_matmul(x, self.values[index], self.scale_inv[index], self.row_block)
            if y is not None:
                return y
        return self.dequantized_matmul(x, index)

    def dequantize_rows(self, index: Index, start: int, end: int) -> torch.Tensor:
        if not self.keep_fp8:
            return self.values[index][start:end]
        scales = self.scale_inv[index].index_select(0, self.row_block_of[start:end])  # [n, column blocks]
        return self._expand(fp8_to_float(self.values[index][start:end]), scales, per_row=True)

    def gather_rows(self, rows: torch.Tensor, index: Index = ()) -> torch.Tensor:
        values = self.values[index].index_select(0, rows)
        if not self.keep_fp8:
            return values
        scales = self.scale_inv[index].index_select(0, self.row_block_of.index_select(0, rows))
        return self._expand(fp8_to_float(values), scales, per_row=True)

    @property
    def supports_gather(self) -> bool:
        return True

    def _first_block(self, start: int) -> int:
        """Row block where rows from `start` begin: a part's start, or a whole number of blocks into it."""
        part_start = max(s for s in self._part_blocks if s <= start)
        assert (start - part_start) % self.row_block == 0, "rows must start on a block boundary"
        return self._part_blocks[part_start] + (start - part_start) // self.row_block

    def _expand(self, w: torch.Tensor, scale: torch.Tensor, per_row: bool = False) -> torch.Tensor:
        """w [n, K] float32 times its scales, given per row ([n, column blocks], `per_row`) or per row
        block ([row blocks, column blocks])."""
        n, k = w.shape
        if not per_row:
            scale = scale.repeat_interleave(self.row_block, dim=0)[:n]
        if k % self.col_block == 0:
            return (w.view(n, -1, self.col_block) * scale[:, :, None]).view(n, k).to(self.dtype)
        return (w * scale.repeat_interleave(self.col_block, dim=1)[:, :k]).to(self.dtype)
