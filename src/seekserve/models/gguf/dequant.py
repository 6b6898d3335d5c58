"""Dequantize GGUF tensors with torch, on the device the model runs on.

Each block type is unpacked with whole-tensor bit operations (no Python loop over blocks); integer
quants are multiplied by their float32 scales directly (type promotion, no separate float copy), in
the same order of operations as the reference (`gguf.quants`), so the values are bit-identical to it;
the result is then cast to the model's dtype. Types without a kernel here fall back to
`gguf.quants.dequantize` (numpy, on the CPU).

Block layouts (bytes; d, dmin: float16; 256-element "K" super-blocks have 8 or 16 sub-blocks):

    Q8_0  34 = d | int8 q[32]                                  x = d * q
    Q4_0  18 = d | q[16] (low nibbles: x0..15, high: x16..31)  x = d * (q - 8)
    Q5_0  22 = d | u32 qh (bit i: 5th bit of xi) | q[16]       x = d * (q | h << 4 - 16)
    Q4_K 144 = d | dmin | scales[12] (6-bit sc, m per 32) | q[128]           x = d*sc * q - dmin*m
    Q5_K 176 = d | dmin | scales[12] | qh[32] | q[128]                       x = d*sc * (q | h << 4) - dmin*m
    Q6_K 210 = ql[128] | qh[64] | int8 scales[16] (one per 16) | d          x = d*sc * (ql | qh << 4 - 32)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from seekserve.errors import ModelLoadError

__all__ = ["SUPPORTED_TYPES", "dequantize"]

Q = GGMLQuantizationType
_FLOATS = {Q.F32: torch.float32, Q.F16: torch.float16, Q.BF16: torch.bfloat16}


def dequantize(
    raw: np.ndarray,
    ggml_type: GGMLQuantizationType,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The tensor stored in `raw` ([nbytes] uint8) as `dtype` on `device`, shaped `shape`."""
    data = torch.from_numpy(np.array(raw, copy=True)).to(device)
    if ggml_type in _FLOATS:
        return data.view(_FLOATS[ggml_type]).view(shape).to(dtype)
    kernel = _KERNELS.get(ggml_type)
    if kernel is None:
        return _numpy_fallback(raw, ggml_type, shape).to(device=device, dtype=dtype)
    type_size = GGML_QUANT_SIZES[ggml_type][1]
    values = kernel(data.view(-1, type_size))  # [num_blocks, block_size] float32
    return values.view(shape).to(dtype)


def _numpy_fallback(raw: np.ndarray, ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> torch.Tensor:
    from gguf.quants import dequantize as reference

    try:
        values = reference(np.asarray(raw), ggml_type)
    except NotImplementedError:
        raise ModelLoadError(
            f"tensors of type {ggml_type.name} cannot be dequantized; seekserve reads "
            f"{', '.join(t.name for t in SUPPORTED_TYPES)} and what the gguf package can dequantize"
        ) from None
    return torch.from_numpy(np.ascontiguousarray(values)).view(shape)


def _half(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 at byte `start` of each block, as float32 [num_blocks, 1]."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _nibbles(packed: torch.Tensor, groups: int) -> torch.Tensor:
    """[n, groups * w] bytes -> [n, groups, 2, w]: low nibbles, then high nibbles, per group."""
    split = packed.reshape(packed.shape[0], groups, 1, -1)
    return torch.cat((split & 0x0F, split >> 4), dim=2)


def _bits(packed: torch.Tensor, shifts: list[int], mask: int) -> torch.Tensor:
    """[n, g, w] -> [n, g, len(shifts), w]: (packed >> s) & mask for each shift s."""
    return torch.stack([(packed >> s) & mask for s in shifts], dim=2)


def _q8_0(blocks: torch.Tensor) -> torch.Tensor:
    return _half(blocks, 0) * blocks[:, 2:].view(torch.int8)


def _q4_0(blocks: torch.Tensor) -> torch.Tensor:
    q = _nibbles(blocks[:, 2:], 1).reshape(blocks.shape[0], 32)
    return _half(blocks, 0) * (q.to(torch.int8) - 8)


def _q5_0(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    qh = blocks[:, 2:6].contiguous().view(torch.int32)  # [n, 1], bit i is the 5th bit of element i
    high = (qh >> torch.arange(32, dtype=torch.int32, device=blocks.device)) & 1
    low = _nibbles(blocks[:, 6:], 1).reshape(n, 32)
    q = (low | (high.to(torch.uint8) << 4)).to(torch.int8) - 16
    return _half(blocks, 0) * q


def _k_scales(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack 12 bytes into 8 six-bit scales and 8 six-bit mins per super-block ([n, 8] each).

    bytes 0-3: sc0-3 (low 6 bits) + high bits of sc4-7; 4-7: m0-3 + high bits of m4-7;
    8-11: low nibble sc4-7, high nibble m4-7.
    """
    d, m, md = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = torch.cat((d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)), dim=1)
    mins = torch.cat((m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)), dim=1)
    return sc.float(), mins.float()


def _k_affine(blocks: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d*sc * q - dmin*m per 32-element sub-block; q is [n, 8, 32] uint8."""
    n = blocks.shape[0]
    sc, mins = _k_scales(blocks[:, 4:16])
    d = (_half(blocks, 0) * sc).view(n, 8, 1)
    dm = (_half(blocks, 2) * mins).view(n, 8, 1)
    return (d * q - dm).view(n, 256)


def _q4_k(blocks: torch.Tensor) -> torch.Tensor:
    q = _nibbles(blocks[:, 16:144], 4).reshape(blocks.shape[0], 8, 32)
    return _k_affine(blocks, q)


def _q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    low = _nibbles(blocks[:, 48:176], 4).reshape(n, 8, 32)
    high = _bits(blocks[:, 16:48].reshape(n, 1, 32), list(range(8)), 0x01).reshape(n, 8, 32)
    return _k_affine(blocks, low | (high << 4))


def _q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    low = _nibbles(blocks[:, :128], 2).reshape(n, 8, 32)
    high = _bits(blocks[:, 128:192].reshape(n, 2, 32), [0, 2, 4, 6], 0x03).reshape(n, 8, 32)
    q = ((low | (high << 4)).to(torch.int8) - 32).view(n, 16, 16)
    d = (_half(blocks, 208) * blocks[:, 192:208].view(torch.int8)).view(n, 16, 1)
    return (d * q).view(n, 256)


_KERNELS: dict[GGMLQuantizationType, Callable[[torch.Tensor], torch.Tensor]] = {
    Q.Q8_0: _q8_0,
    Q.Q4_0: _q4_0,
    Q.Q5_0: _q5_0,
    Q.Q4_K: _q4_k,
    Q.Q5_K: _q5_k,
    Q.Q6_K: _q6_k,
}

SUPPORTED_TYPES: tuple[GGMLQuantizationType, ...] = (*_FLOATS, *_KERNELS)
"""Types dequantized with torch (others go through gguf's numpy code where it has them)."""
