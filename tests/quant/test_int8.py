"""int8 per-channel weights: error bounds, both batch paths, outliers, stacked matrices."""

from __future__ import annotations

import pytest
import torch

from factories import fill_weight, relative_error
from seekserve.quant.base import StackShape
from seekserve.quant.int8 import Int8Weight, int8_dynamic_matmul

# Gaussian weights and activations: rounding to a step of max|row| / 127 leaves ~0.75 % relative
# error on the weights and the outputs; per-token int8 activations add about as much again.
WEIGHT_ONLY_BOUND = 0.015
DYNAMIC_BOUND = 0.025
DTYPES = [torch.float32, torch.bfloat16]


def make(
    w: torch.Tensor, dtype: torch.dtype, parts: tuple[int, ...] | None = None, **kw: object
) -> Int8Weight:
    n, k = w.shape
    return fill_weight(Int8Weight(StackShape((), n, k, parts or (n,)), dtype, max_kernel_rows=4, **kw), w)  # type: ignore[arg-type]


def step_bound(q: Int8Weight, w: torch.Tensor) -> torch.Tensor:
    """Half a quantization step per row, plus the compute dtype's rounding of the dequantized value."""
    deq = q.dequantize().float()
    return q.scales.float()[:, None] / 2 + deq.abs() * torch.finfo(q.dtype).eps + 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantized_weights_are_within_half_a_step(dtype: torch.dtype) -> None:
    w = torch.randn(96, 80, generator=torch.Generator().manual_seed(0))
    q = make(w, dtype, parts=(64, 16, 16))
    assert q.values.dtype == torch.int8 and q.values.abs().max() <= 127
    assert (q.dequantize().float() - w).abs().le(step_bound(q, w)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 40])
def test_matmul_error_is_within_the_bound_on_both_batch_paths(dtype: torch.dtype, rows: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    w, x = torch.randn(128, 96, generator=gen), torch.randn(rows, 96, generator=gen).to(dtype)
    q = make(w, dtype)  # kernel up to 4 rows, dequantized matmul above
    y = q.matmul(x)
    assert y.dtype == dtype and y.shape == (rows, 128)
    assert relative_error(y, x.float() @ w.t()) < WEIGHT_ONLY_BOUND
    # both paths compute with the same int8 weights: they differ by the output's rounding only
    assert relative_error(y, x.float() @ q.dequantize().float().t()) < 4 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_activations_take_over_above_the_kernel_rows(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    w, x = torch.randn(128, 96, generator=gen), torch.randn(40, 96, generator=gen).to(dtype)
    q = make(w, dtype, dynamic_activations=True)
    y = q.matmul(x)
    assert relative_error(y, x.float() @ w.t()) < DYNAMIC_BOUND
    torch.testing.assert_close(y, int8_dynamic_matmul(x, q.values, q.scales))
    assert not torch.equal(y, q.dequantized_matmul(x)), "above max_kernel_rows the int8×int8 path runs"


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_zero_row_and_a_huge_value_stay_exact_finite_and_local(dtype: torch.dtype) -> None:
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    w[5] = 0.0
    w[9, 17] = 1e4
    q = make(w, dtype)
    deq = q.dequantize().float()
    assert torch.isfinite(deq).all() and torch.isfinite(q.scales.float()).all()
    assert torch.equal(deq[5], torch.zeros(64))
    assert (deq - w).abs().le(step_bound(q, w)).all()
    assert abs(deq[9, 17] - 1e4) <= 1e4 * 2**-7, "the outlier sets its row's scale and is kept"
    alone = make(torch.cat((w[:9], w[10:])), dtype).dequantize()
    assert torch.equal(torch.cat((deq[:9], deq[10:])), alone.float()), "other rows keep their own scales"
    for rows in (1, 40):
        y = q.matmul(torch.randn(rows, 64).to(dtype))
        assert torch.isfinite(y).all() and torch.equal(y[:, 5], torch.zeros(rows, dtype=dtype))


def test_gathered_rows_are_the_dequantized_rows() -> None:
    q = make(torch.randn(50, 24), torch.bfloat16)
    rows = torch.tensor([0, 49, 7, 7])
    assert q.supports_gather
    assert torch.equal(q.gather_rows(rows), q.dequantize()[rows])


def test_stacked_matrices_are_quantized_and_used_one_by_one() -> None:
    ws = torch.randn(3, 40, 32, generator=torch.Generator().manual_seed(3))
    q = Int8Weight(StackShape((3,), 40, 32, (20, 20)), torch.float32, max_kernel_rows=4)
    for e in (2, 0, 1):
        fill_weight(q, ws[e], (e,))
    x = torch.randn(2, 32)
    for e in range(3):
        assert relative_error(q.matmul(x, (e,)), x @ ws[e].t()) < WEIGHT_ONLY_BOUND
        assert relative_error(q.dequantize((e,)), ws[e]) < WEIGHT_ONLY_BOUND
