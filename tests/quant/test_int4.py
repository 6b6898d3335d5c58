"""int4 group-wise weights: error bounds, the CPU packing layout, padding, both batch paths, outliers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factories import fill_weight, greedy, random_prompts, relative_error
from seekserve import LLM
from seekserve.layers.cpu_kernels import cpu_kernels
from seekserve.quant.base import QuantizedWeight, StackShape
from seekserve.quant.int4 import Int4Weight, int4_shape, vnni_kernels
from seekserve.quant.int4_layout import cpu_block_layout, dequantize_with_kernel, pack_cpu, unpack_cpu

# Gaussian weights: groups of 32 span ~4σ in 15 steps, so rounding leaves ~7.5 % relative error
# (64: ~9 %, 128: ~10 %); outputs of Gaussian activations carry the same relative error.
BOUND = {32: 0.09, 64: 0.105, 128: 0.12}
OUTPUT_BOUND = 0.12
"""Outputs of a few rows are a small sample of that error: allow a third more."""
DTYPES = [torch.float32, torch.bfloat16]


def make(
    w: torch.Tensor, dtype: torch.dtype, group: int = 32, parts: tuple[int, ...] | None = None
) -> Int4Weight:
    n, k = w.shape
    return fill_weight(
        Int4Weight(StackShape((), n, k, parts or (n,)), dtype, max_kernel_rows=4, group=group), w
    )


def step_bound(q: Int4Weight) -> torch.Tensor:
    """Per element: half a step of its group, plus the compute dtype's rounding of zero and result."""
    group = q.layout.group
    sz = q.scales_zeros.float()  # [groups, Np, 2]
    scale = sz[..., 0].t().repeat_interleave(group, 1)[: q.out_features, : q.in_features]
    zero = sz[..., 1].t().repeat_interleave(group, 1)[: q.out_features, : q.in_features]
    eps = torch.finfo(q.dtype).eps
    return scale / 2 + (zero.abs() + q.dequantize().float().abs()) * eps + 1e-12


def test_the_cpu_packing_layout_is_known_and_round_trips() -> None:
    assert cpu_block_layout() is not None, "torch's int4 packing changed: update int4_layout.py"
    for n in (16, 48, 64, 80, 1040):
        q = torch.randint(0, 16, (n, 96), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
        assert torch.equal(unpack_cpu(pack_cpu(q)), q)


def test_reading_back_through_the_kernel_matches_unpacking() -> None:
    q = make(torch.randn(80, 64), torch.float32)
    through_kernel = dequantize_with_kernel(q.packed, q.layout.group, q.scales_zeros)
    torch.testing.assert_close(through_kernel[:80], q.dequantize(), rtol=1e-6, atol=1e-6)


def test_shapes_pad_rows_to_16_and_pick_a_group_that_divides_the_width() -> None:
    assert int4_shape(640, 2048, 128) == (640, 2048, 128)
    assert int4_shape(40, 640, 128) == (48, 640, 128)
    assert int4_shape(64, 96, 128) == (64, 96, 32)  # 128 and 64 do not divide 96
    assert int4_shape(64, 48, 64) == (64, 64, 32)  # nothing divides 48: pad it to 64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [32, 64, 128])
def test_dequantized_weights_are_within_half_a_step_of_their_group(dtype: torch.dtype, group: int) -> None:
    w = torch.randn(72, 256, generator=torch.Generator().manual_seed(group))
    q = make(w, dtype, group, parts=(40, 32))
    assert q.packed.dtype == torch.uint8 and q.packed.shape == (80, 128)
    assert (q.dequantize().float() - w).abs().le(step_bound(q)).all()
    assert relative_error(q.dequantize(), w) < BOUND[group]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(128, 96), (40, 48)])
@pytest.mark.parametrize("rows", [1, 4, 5, 33])
def test_matmul_error_is_within_the_bound_on_both_batch_paths(
    dtype: torch.dtype, shape: tuple[int, int], rows: int
) -> None:
    gen = torch.Generator().manual_seed(rows)
    w, x = torch.randn(*shape, generator=gen), torch.randn(rows, shape[1], generator=gen).to(dtype)
    q = make(w, dtype)  # kernel up to 4 rows, dequantized matmul above
    y = q.matmul(x)
    assert y.shape == (rows, shape[0]) and y.dtype == dtype
    assert relative_error(y, x.float() @ w.t()) < OUTPUT_BOUND
    assert relative_error(y, x.float() @ q.dequantize().float().t()) < 4 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_flat_and_outlier_groups(dtype: torch.dtype) -> None:
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(4))
    w[2] = 0.0  # all-zero row
    w[3] = 0.37  # flat row: every group constant
    w[4, 70] = 1e4  # one huge value in group 2 of row 4
    q = make(w, dtype)
    deq = q.dequantize().float()
    assert torch.isfinite(deq).all() and torch.isfinite(q.scales_zeros.float()).all()
    assert torch.equal(deq[2], torch.zeros(128))
    torch.testing.assert_close(deq[3], torch.full((128,), 0.37), rtol=torch.finfo(dtype).eps, atol=0)
    assert (deq - w).abs().le(step_bound(q)).all()
    assert abs(deq[4, 70] - 1e4) <= 1e4 / 15 / 2 * 1.01
    others = torch.cat((deq[4, :64], deq[4, 96:]))
    assert relative_error(others, torch.cat((w[4, :64], w[4, 96:]))) < BOUND[32], "only its group pays"
    for rows in (1, 40):
        y = q.matmul(torch.randn(rows, 128).to(dtype))
        assert torch.isfinite(y).all() and torch.equal(y[:, 2], torch.zeros(rows, dtype=dtype))


def test_stacked_matrices_are_packed_one_by_one() -> None:
    ws = torch.randn(2, 48, 64, generator=torch.Generator().manual_seed(5))
    q = Int4Weight(StackShape((2,), 48, 64, (24, 24)), torch.bfloat16, max_kernel_rows=4, group=32)
    fill_weight(q, ws[1], (1,))
    fill_weight(q, ws[0], (0,))
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    for e in range(2):
        assert relative_error(q.matmul(x, (e,)), x.float() @ ws[e].t()) < OUTPUT_BOUND


@pytest.mark.skipif(vnni_kernels() is None, reason="the int4 kernel needs a CPU with AVX-512 VNNI and VBMI")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 6, 33])
def test_the_integer_kernel_computes_the_dequantized_product(
    dtype: torch.dtype, group: int, rows: int
) -> None:
    """x is quantized in int8 digits to 2^-16 (bfloat16) or 2^-24 (float32) of its group's largest
    value: the product is the float one within that rounding (and bfloat16's rounding of the result)."""
    gen = torch.Generator().manual_seed(rows + group)
    w = torch.randn(192, 256, generator=gen)
    w[5, :group] = 0.0  # a group of zeros, and a group of large activations below
    q = make(w, dtype, group)
    assert q.kernels is not None
    wide = torch.randn(rows, 300, generator=gen)
    wide[:, 32:64] *= 1000.0
    x = wide.to(dtype)[:, 10:266]  # rows strided, as a slice of a wider tensor
    y = q.kernels.int4_matmul(x, q.packed, q.scales_zeros, group)
    assert y.shape == (rows, 192) and y.dtype == dtype
    if rows <= q.max_kernel_rows:  # 4 here; above it, the dequantized matmul
        assert torch.equal(q.matmul(x), y)
    sz = q.scales_zeros.double()
    scale, zero = (sz[..., i].t().repeat_interleave(group, 1) for i in (0, 1))
    centred = (unpack_cpu(q.packed).double() - 8) * scale  # W - zero, in float64
    exact = x.double() @ (centred + zero).t()
    peak = x.double().abs().view(rows, -1, group).amax(-1).repeat_interleave(group, 1)
    resolution = 127 * 254 * 2 * (254 if dtype == torch.float32 else 1)
    bound = peak / resolution @ centred.abs().t() + x.double().abs() @ (centred + zero).abs().t() * 2e-6
    if dtype == torch.bfloat16:
        bound += exact.abs() * 2.0**-8
    assert ((y.double() - exact).abs() <= bound).all()


def test_the_integer_kernel_reads_whole_row_blocks_in_float32_and_bfloat16_only() -> None:
    """Rows padded to 16 but not 64 leave the last block in torch's other layout, and float16 has no
    kernel of ours: torch's kernel runs for both."""
    assert make(torch.randn(80, 64), torch.float32).kernels is None
    assert make(torch.randn(128, 64), torch.float32).kernels is vnni_kernels()
    w = torch.randn(128, 64, generator=torch.Generator().manual_seed(3))
    q = make(w, torch.float16)
    assert q.kernels is None
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(4))
    assert relative_error(q.matmul(x.half()), x @ w.t()) < OUTPUT_BOUND


needs_dequantizer = pytest.mark.skipif(
    cpu_kernels() is None or cpu_block_layout() is None,
    reason="the dequantization kernel needs the CPU kernels and a probed packing",
)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of a float32 or bfloat16 tensor (torch.equal takes -0.0 for 0.0)."""
    return t.contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int16)


@needs_dequantizer
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("shape", [(200, 384), (72, 128), (128, 256)])
def test_the_dequantization_kernel_matches_the_torch_reference_bit_for_bit(
    dtype: torch.dtype, group: int, shape: tuple[int, int]
) -> None:
    """200 and 72 rows pad to 208 and 80: full 64-row blocks, then a partial one in the other layout.
    Row scales from 1e-3 to 10 give sums (product + zero) that round in both steps."""
    n, k = shape
    gen = torch.Generator().manual_seed(n + group)
    w = torch.randn(n, k, generator=gen) * torch.logspace(-3, 1, n)[:, None]
    w[3, :group] = 0.5  # a flat group
    q = make(w, dtype, group)
    assert q.dequantizer is not None, "a probed packing and a float32 or bfloat16 dtype have the kernel"
    for start, end in [(0, n), (0, 64), (64, n), (64, min(n, 128))]:
        expected = q.dequantize_rows_reference((), start, end)
        got = q.dequantize_rows((), start, end)
        assert got.shape == expected.shape == (end - start, k)
        assert torch.equal(bits(got), bits(expected)), f"rows {start}:{end}"
    buffer = torch.full((q.layout.rows, k), float("nan"), dtype=dtype)
    into = q.dequantize_rows_into((), 64, n, buffer)
    assert into.data_ptr() == buffer.data_ptr() and torch.equal(bits(into), bits(q.dequantize()[64:]))


@needs_dequantizer
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_large_row_path_gives_the_products_of_the_torch_reference(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows than fit one block (2^20 weights): every block goes through the one buffer."""
    gen = torch.Generator().manual_seed(7)
    q = make(torch.randn(1040, 2048, generator=gen), dtype)
    assert q.dequant_block_rows() == 512 and q.dequantizer is not None
    x = torch.randn(9, 2048, generator=gen).to(dtype)
    got = q.matmul(x)
    monkeypatch.setattr(Int4Weight, "dequantized_matmul", QuantizedWeight.dequantized_matmul)
    monkeypatch.setattr(Int4Weight, "dequantize_rows", Int4Weight.dequantize_rows_reference)
    assert torch.equal(bits(got), bits(q.matmul(x)))


@needs_dequantizer
def test_greedy_generation_is_the_same_through_the_kernel_and_the_torch_reference(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_quantized_kernel_rows=0: every step, prefill and decode, takes the large-row path."""
    options = dict(dtype="bfloat16", max_model_len=128, quantization="int4", max_quantized_kernel_rows=0)
    prompts = random_prompts(3, [40, 23, 57], seed=11)
    llm = LLM(str(llama_dir), **options)
    assert any(isinstance(m, Int4Weight) and m.dequantizer is not None for m in llm.engine.model.modules())
    with_kernel = [out.outputs[0].token_ids for out in llm.generate(prompts, greedy(12))]
    monkeypatch.setattr(Int4Weight, "dequantized_matmul", QuantizedWeight.dequantized_matmul)
    monkeypatch.setattr(Int4Weight, "dequantize_rows", Int4Weight.dequantize_rows_reference)
    with_torch = [out.outputs[0].token_ids for out in llm.generate(prompts, greedy(12))]
    assert with_kernel == with_torch and all(len(ids) == 12 for ids in with_kernel)
