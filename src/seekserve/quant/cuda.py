"""CUDA matmuls for quantized weights, kept apart from the CPU paths.

None of this runs on the CPU-only machines seekserve is developed on; tests/quant/test_cuda.py
exercises it where a GPU is present (pytest marker `gpu`). Each fast path is therefore checked once
per device and kind against dequantize-then-matmul on a small random problem before it is used;
a path that raises or disagrees is switched off for the process and the weights are dequantized
per call instead (correct, memory-saving, not faster).

    fp8   torch._scaled_mm on sm_89+: per-token activation scales with per-channel weight scales,
          or 1×128 activation blocks with DeepSeek's 128×128 weight blocks (cuBLAS block scaling)
    int8  torch._weight_int8pack_mm where this torch has it for CUDA (quant/int8.py adds the
          int8×int8 torch._int_mm path for steps of more than 16 rows)
    int4  dequantized per call (quant/int4.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["dense_matmul", "fp8_matmul", "has_fp8_matmul", "int8_matmul"]

log = logging.getLogger(__name__)

_FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)
_checked: dict[tuple[str, str], bool] = {}


def has_fp8_matmul(device: torch.device) -> bool:
    """Whether `device` multiplies FP8 matrices natively (compute capability 8.9 or later)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def dense_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w)


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x @ (q · scale)^T through the packed kernel when it works here, else dequantized."""
    if _works("int8pack", x.device, _check_int8pack):
        return torch._weight_int8pack_mm(x, q, scale.to(x.dtype))
    return F.linear(x, q.to(x.dtype) * scale.to(x.dtype)[:, None])


def fp8_matmul(
    x: torch.Tensor, values: torch.Tensor, scale_inv: torch.Tensor, row_block: int
) -> torch.Tensor | None:
    """x [M, K] @ W^T with W FP8 [N, K] in per-channel (row_block 1) or 128×128 blocks; None where no
    FP8 matmul applies (the caller dequantizes)."""
    n, k = values.shape
    if not has_fp8_matmul(x.device) or k % 128 or n % 16:
        return None
    kind = "fp8_rowwise" if row_block == 1 else "fp8_block128"
    if not _works(kind, x.device, _check_fp8):
        return None
    return _fp8_mm(x, values, scale_inv, row_block)


def _fp8_mm(x: torch.Tensor, values: torch.Tensor, scale_inv: torch.Tensor, row_block: int) -> torch.Tensor:
    m, k = x.shape
    xf = x.float()
    if row_block == 1:
        x_scale = xf.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12) / _FP8_MAX  # [M, 1]
        xq = (xf / x_scale).to(torch.float8_e4m3fn)
        scale_b = scale_inv.view(1, -1)  # [1, N]
    else:
        blocks = xf.view(m, k // 128, 128)
        x_scale = blocks.abs().amax(dim=-1).clamp_(min=1e-12) / _FP8_MAX  # [M, K / 128]
        xq = (blocks / x_scale[..., None]).view(m, k).to(torch.float8_e4m3fn)
        x_scale = x_scale.t().contiguous().t()  # outer-dimension-major, as cuBLAS block scaling reads it
        scale_b = scale_inv.t().contiguous().t()
    return torch._scaled_mm(xq, values.t(), scale_a=x_scale, scale_b=scale_b, out_dtype=x.dtype)


def _works(kind: str, device: torch.device, check: Callable[[str, torch.device], bool]) -> bool:
    key = (kind, str(device))
    if key not in _checked:
        try:
            _checked[key] = check(kind, device)
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
            log.info("%s matmul unavailable on %s (%s); dequantizing instead", kind, device, e)
            _checked[key] = False
        if not _checked[key]:
            log.warning("%s matmul is off on %s: weights are dequantized per call", kind, device)
    return _checked[key]


def _close(y: torch.Tensor, ref: torch.Tensor, tol: float) -> bool:
    return bool(((y.float() - ref).norm() / ref.norm()).item() < tol)


def _check_int8pack(kind: str, device: torch.device) -> bool:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(4, 256, device=device, generator=gen, dtype=torch.bfloat16)
    q = torch.randint(-127, 128, (64, 256), device=device, generator=gen, dtype=torch.int8)
    scale = torch.rand(64, device=device, generator=gen, dtype=torch.bfloat16)
    ref = x.float() @ (q.float() * scale.float()[:, None]).t()
    return _close(torch._weight_int8pack_mm(x, q, scale), ref, 0.02)


def _check_fp8(kind: str, device: torch.device) -> bool:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(32, 256, device=device, generator=gen, dtype=torch.bfloat16)
    w = torch.randn(256, 256, device=device, generator=gen)
    row_block = 1 if kind == "fp8_rowwise" else 128
    nr, nc = 256 // row_block, 256 // 128 if row_block == 128 else 1
    blocks = w.view(nr, row_block, nc, 256 // nc)
    scale = blocks.abs().amax(dim=(1, 3)) / _FP8_MAX
    q = (blocks / scale[:, None, :, None]).view(256, 256).to(torch.float8_e4m3fn)
    ref = x.float() @ (q.float().view(nr, row_block, nc, -1) * scale[:, None, :, None]).view(256, 256).t()
    return _close(_fp8_mm(x, q, scale, row_block), ref, 0.05)
