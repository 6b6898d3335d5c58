"""FP8 block-scaled weights: DeepSeek's checkpoint format, error bounds, storage modes, outliers."""

from __future__ import annotations

import pytest
import torch

from factories import FP8_MAX, fill_weight, fp8_block_quantize, relative_error
from seekserve.layers.fp8_checkpoint import Fp8BlockFormat, Fp8BlockTensor, dequantize_fp8
from seekserve.quant.base import StackShape
from seekserve.quant.fp8 import Fp8Weight, fp8_to_float, quantize_fp8

# e4m3 keeps 3 mantissa bits: a value rounds by at most 2^-4 of itself, or by half the smallest
# subnormal step (2^-10 of its block's scale) near zero. Gaussian weights: ~2.7 % relative error.
BOUND = 0.035
DTYPES = [torch.float32, torch.bfloat16]


def make(
    w: torch.Tensor,
    dtype: torch.dtype,
    block: int = 128,
    keep: bool = True,
    parts: tuple[int, ...] | None = None,
) -> Fp8Weight:
    n, k = w.shape
    return fill_weight(
        Fp8Weight(StackShape((), n, k, parts or (n,)), dtype, 0, block=block, keep_fp8=keep), w
    )


def rounding_bound(w: torch.Tensor, q: Fp8Weight) -> torch.Tensor:
    """|w| 2^-4 plus 2^-10 of the element's block scale, plus the compute dtype's rounding."""
    scale = q.scale_inv.index_select(0, q.row_block_of).repeat_interleave(q.col_block, 1)[:, : q.in_features]
    return w.abs() * 2**-4 + scale * 2**-10 + w.abs() * torch.finfo(q.dtype).eps + 1e-30


def test_the_table_decodes_every_fp8_code_like_a_cast() -> None:
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
    torch.testing.assert_close(fp8_to_float(codes), codes.float(), equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(256, 384), (200, 130)])
def test_blocks_are_deepseek_v3s_format(shape: tuple[int, int]) -> None:
    """quantize_fp8 makes exactly what DeepSeek's FP8 release stores (weight + weight_scale_inv), and
    the checkpoint dequantizer reads our weights back bit for bit."""
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1]))
    q, scale = quantize_fp8(w, 128, 128)
    ref_q, ref_scale = fp8_block_quantize(w, 128)
    assert torch.equal(q.view(torch.uint8), ref_q.view(torch.uint8)) and torch.equal(scale, ref_scale)
    weight = make(w, torch.float32)
    via_checkpoint = dequantize_fp8(
        weight.values, weight.scale_inv, Fp8BlockFormat((128, 128)), torch.float32
    )
    assert torch.equal(weight.dequantize(), via_checkpoint)


def test_checkpoint_fp8_tensors_are_copied_without_a_float_round_trip() -> None:
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(6))
    parts = [fp8_block_quantize(w[:128], 128), fp8_block_quantize(w[128:], 128)]
    weight = Fp8Weight(StackShape((), 256, 256, (128, 128)), torch.bfloat16, 0, block=128, keep_fp8=True)
    fmt = Fp8BlockFormat((128, 128))
    for i, (q, scale) in enumerate(parts):
        weight.load_fp8((), 128 * i, Fp8BlockTensor(q, scale, fmt))
    values = torch.cat([q for q, _ in parts])
    assert torch.equal(weight.values.view(torch.uint8), values.view(torch.uint8))
    assert torch.equal(weight.scale_inv, torch.cat([s for _, s in parts]))


def test_checkpoint_blocks_of_another_size_are_requantized() -> None:
    w = torch.randn(96, 64, generator=torch.Generator().manual_seed(7))
    q, scale = fp8_block_quantize(w, 16)
    checkpoint = Fp8BlockTensor(q, scale, Fp8BlockFormat((16, 16)))
    weight = Fp8Weight(StackShape((), 96, 64, (96,)), torch.float32, 0, block=32, keep_fp8=True)
    weight.load_fp8((), 0, checkpoint)
    reference = checkpoint.dequantize(torch.float32)
    assert weight.scale_inv.shape == (3, 2)
    assert (weight.dequantize() - reference).abs().le(rounding_bound(reference, weight)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [128, 16, 0])
def test_error_bounds_per_element_and_per_output(dtype: torch.dtype, block: int) -> None:
    gen = torch.Generator().manual_seed(block)
    w, x = torch.randn(160, 192, generator=gen), torch.randn(9, 192, generator=gen).to(dtype)
    weight = make(w, dtype, block)
    assert weight.scale_inv.shape == ((160, 1) if block == 0 else (-(-160 // block), -(-192 // block)))
    assert (weight.dequantize().float() - w).abs().le(rounding_bound(w, weight)).all()
    assert relative_error(weight.matmul(x), x.float() @ w.t()) < BOUND


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantized_storage_holds_the_same_weights_in_the_compute_dtype(dtype: torch.dtype) -> None:
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(8))
    kept, dequantized = make(w, dtype, 32, keep=True), make(w, dtype, 32, keep=False)
    assert kept.values.dtype == torch.float8_e4m3fn and dequantized.values.dtype == dtype
    assert torch.equal(kept.dequantize(), dequantized.dequantize())
    x = torch.randn(5, 96).to(dtype)
    assert relative_error(kept.matmul(x), dequantized.matmul(x)) < 4 * torch.finfo(dtype).eps
    rows = torch.tensor([63, 0, 5])
    assert torch.equal(kept.gather_rows(rows), kept.dequantize()[rows])


def test_scale_blocks_restart_at_each_part() -> None:
    """q, k and v quantized apart, as a checkpoint stores them: a huge value in one part leaves the
    scales of the next part's rows in the same 32-row span alone."""
    w = torch.randn(64, 32, generator=torch.Generator().manual_seed(9))
    w[39, 3] = 1e4  # last row of part 0 (rows 0..39)
    weight = make(w, torch.float32, 32, parts=(40, 24))
    assert weight.scale_inv.shape == (3, 1)  # rows 0-31, 32-39, 40-63
    assert weight.scale_inv[1, 0] == pytest.approx(1e4 / FP8_MAX)
    assert weight.scale_inv[2, 0] == pytest.approx(float(w[40:].abs().max()) / FP8_MAX)
    assert relative_error(weight.dequantize()[40:], w[40:]) < BOUND


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_and_outlier_blocks(dtype: torch.dtype) -> None:
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(10))
    w[:32, :32] = 0.0
    w[40, 50] = 1e4
    weight = make(w, dtype, 32)
    deq = weight.dequantize().float()
    assert torch.isfinite(deq).all() and torch.equal(deq[:32, :32], torch.zeros(32, 32))
    assert (deq - w).abs().le(rounding_bound(w, weight)).all()
    assert relative_error(deq[:32, 32:], w[:32, 32:]) < BOUND, "other blocks keep their own scales"
    assert torch.isfinite(weight.matmul(torch.randn(3, 64).to(dtype))).all()
