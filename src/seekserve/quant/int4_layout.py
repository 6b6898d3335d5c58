"""The byte layout of torch's CPU int4 kernel, and how to read values back out of it.

torch._convert_weight_to_int4pack_for_cpu(q [N, K] int32) -> [N, K / 2] uint8 packs rows in blocks
of B rows (B = 64 with AVX-512, 32 otherwise), each block stored as [K, B / 2] bytes:

    full block, vectorised CPUs:   byte j of column k = row j (low nibble) | row j + B/2 (high nibble)
    last partial block, or none:   byte j of column k = row 2j (low nibble) | row 2j + 1 (high nibble)

The layout is an implementation detail of torch, so it is probed once per process (`cpu_block_layout`)
by packing a known matrix; where neither variant matches, values are read back through the kernel
itself (`dequantize_with_kernel`, exact but slow) and the large-batch path is not used.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

__all__ = ["BlockLayout", "cpu_block_layout", "dequantize_with_kernel", "pack_cpu", "unpack_cpu"]

_INNER_K_TILES = 2
"""Accepted and ignored by the CPU packing; required by the signature."""


class BlockLayout(NamedTuple):
    rows: int
    """Rows per block."""
    split: bool
    """Full blocks pair row j with row j + rows / 2 (True) or row 2j with 2j + 1 (False)."""


def pack_cpu(q: torch.Tensor) -> torch.Tensor:
    """q [N, K] uint8 values in [0, 15] (N a multiple of 16) -> the CPU kernel's packed [N, K / 2]."""
    return torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), _INNER_K_TILES)


def _unpack(packed: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    n, half = packed.shape
    k, block = 2 * half, layout.rows
    flat = packed.reshape(-1)
    out = torch.empty(n, k, dtype=torch.uint8, device=packed.device)
    num_full = n // block
    if num_full:
        b = flat[: num_full * block * half].view(num_full, k, block // 2)
        lo, hi = b & 15, b >> 4
        if layout.split:
            rows = torch.cat((lo, hi), dim=-1)  # [blocks, K, B]: rows j, then rows j + B/2
        else:
            rows = torch.stack((lo, hi), dim=-1).view(num_full, k, block)
        out[: num_full * block] = rows.transpose(1, 2).reshape(num_full * block, k)
    rest = n - num_full * block
    if rest:
        b = flat[num_full * block * half :].view(k, rest // 2)
        out[num_full * block :] = torch.stack((b & 15, b >> 4), dim=-1).view(k, rest).t()
    return out


@functools.cache
def cpu_block_layout() -> BlockLayout | None:
    """The layout this process's torch packs with, probed on a matrix with full and partial blocks."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (80, 64), generator=gen, dtype=torch.uint8)
    packed = pack_cpu(q)
    for layout in (BlockLayout(64, True), BlockLayout(32, True), BlockLayout(32, False)):
        if torch.equal(_unpack(packed, layout), q):
            return layout
    return None


def unpack_cpu(packed: torch.Tensor) -> torch.Tensor:
    """The values [N, K] uint8 of a CPU-packed [N, K / 2] matrix; needs a known layout."""
    layout = cpu_block_layout()
    assert layout is not None, "unpack_cpu needs a probed layout; use dequantize_with_kernel"
    return _unpack(packed, layout)


def dequantize_with_kernel(packed: torch.Tensor, group: int, scales_zeros: torch.Tensor) -> torch.Tensor:
    """W [N, K] float32 read back through the kernel: identity activations give W^T exactly."""
    k = packed.shape[1] * 2
    eye = torch.eye(k, dtype=torch.float32, device=packed.device)
    return torch._weight_int4pack_mm_for_cpu(eye, packed, group, scales_zeros.float()).t()
