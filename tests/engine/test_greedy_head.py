"""The screened greedy LM head: the argmax of the full logits, from an int8 screen and a rescore."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from factories import greedy, random_prompts
from seekserve import LLM, SamplingParams
from seekserve.engine.greedy_head import GreedyHead
from seekserve.layers.cpu_kernels import cpu_kernels

KERNELS = cpu_kernels()
# Skipped only without a compiler: with one, a kernel that fails to build fails these tests.
pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None,
    reason="no C++ compiler: install g++ to build the CPU kernels",
)


SCREENS = ["float", "vnni"]


def screen(kind: str, hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, rows rescored) from the float or the integer (VNNI) screen of weight's int8 copy."""
    assert KERNELS is not None
    q, scale = KERNELS.quantize_rows(weight)
    assert (q.float() * scale[:, None] - weight.float()).abs().max() <= scale.max() / 2 * 1.0001
    if kind == "float":
        return KERNELS.greedy_head(hidden, weight, q, scale)[:2]
    if not KERNELS.has_vnni:
        pytest.skip("this CPU has no AVX-512 VNNI: the integer screen is not built")
    packed, l1 = KERNELS.pack_vnni(q)
    padded = torch.zeros_like(l1)
    padded[: scale.shape[0]] = scale
    return KERNELS.greedy_head_vnni(hidden, weight, packed, padded, l1)[:2]


def head_case(vocab: int, dim: int, rows: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(vocab + dim + rows)
    weight = (torch.randn(vocab, dim, generator=gen) * 0.05).to(dtype)
    hidden = torch.randn(rows, dim, generator=gen)
    hidden[:, :3] *= 25.0  # a few large dimensions, as final hidden states of real models have
    return weight, hidden.to(dtype)


@pytest.mark.parametrize("kind", SCREENS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("vocab", "dim", "rows"), [(1003, 80, 1), (4099, 64, 3), (517, 640, 9), (2000, 96, 37)]
)
def test_tokens_are_the_argmax_of_the_full_logits(
    vocab: int, dim: int, rows: int, dtype: torch.dtype, kind: str
) -> None:
    weight, hidden = head_case(vocab, dim, rows, dtype)
    tokens, rescored = screen(kind, hidden, weight)
    assert tokens.tolist() == F.linear(hidden, weight).argmax(dim=-1).tolist()
    assert (rescored >= 1).all() and (rescored <= vocab).all()


@pytest.mark.parametrize("kind", SCREENS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_clear_winner_is_found_reading_few_exact_rows_and_ties_go_to_the_first(
    dtype: torch.dtype, kind: str
) -> None:
    weight, _ = head_case(8192, 64, 1, dtype)
    weight[5000] = weight[37]  # the same logit twice: torch.argmax takes the first
    hidden = torch.stack([weight[37].float() * 40, weight[6000].float() * 40]).to(dtype)
    tokens, rescored = screen(kind, hidden, weight)
    assert tokens.tolist() == [37, 6000] == F.linear(hidden, weight).argmax(dim=-1).tolist()
    assert rescored.tolist()[0] >= 2, "both tied rows must be rescored"
    assert (rescored <= 8192 // 50).all(), f"the screen ruled out too few rows: {rescored.tolist()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("large_dims", [0, 3, 20])
def test_one_row_screened_with_integer_dot_products_takes_the_float_screens_tokens(
    dtype: torch.dtype, large_dims: int
) -> None:
    """One hidden row with the head's row sums: the int8 head (or copy) read row by row with VNNI,
    the hidden row quantized to int8 with its largest dimensions in a second digit."""
    assert KERNELS is not None
    if not KERNELS.has_vnni:
        pytest.skip("this CPU has no AVX-512 VNNI: the integer screen is not built")
    gen = torch.Generator().manual_seed(large_dims)
    weight = (torch.randn(5003, 640, generator=gen) * 0.05).to(dtype)
    q, scale = KERNELS.quantize_rows(weight)
    l1, sums = KERNELS.row_sums(q)
    assert torch.equal(sums, q.sum(1, dtype=torch.int32)) and torch.equal(l1, q.abs().sum(1).float())
    for _ in range(6):
        hidden = torch.randn(1, 640, generator=gen)
        hidden[0, torch.randperm(640, generator=gen)[:large_dims]] *= 60.0  # in several 64-wide chunks
        hidden = hidden.to(dtype)
        tokens, rescored = KERNELS.greedy_head(hidden, weight, q, scale, (l1, sums))[:2]
        assert tokens.tolist() == F.linear(hidden, weight).argmax(dim=-1).tolist()
        assert 1 <= rescored.item() <= 64, f"the screen ruled out too few rows: {rescored.item()}"
        # The int8 head itself (no float weight): the same tokens as its float screen.
        tokens, rescored = KERNELS.greedy_head(hidden, None, q, scale, (l1, sums))[:2]
        assert tokens.tolist() == KERNELS.greedy_head(hidden, None, q, scale)[0].tolist()
        assert 1 <= rescored.item() <= 64
    zero = torch.zeros(1, 640, dtype=dtype)  # every logit 0: token 0
    assert KERNELS.greedy_head(zero, weight, q, scale, (l1, sums))[0].tolist() == [0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("vocab", "dim", "rows"), [(1003, 64, 12), (5003, 640, 17), (2000, 128, 37)])
def test_several_rows_against_an_int8_head_in_place_take_the_float_screens_tokens(
    vocab: int, dim: int, rows: int, dtype: torch.dtype
) -> None:
    """Several hidden rows with an int8 head's row sums: the head packed block by block into the
    integer screen's layout as it is read (vocabularies that do not fill the last tile included)."""
    assert KERNELS is not None
    if not KERNELS.has_vnni:
        pytest.skip("this CPU has no AVX-512 VNNI: the integer screen is not built")
    weight, hidden = head_case(vocab, dim, rows, dtype)
    hidden[rows // 2] = 0.0  # every logit 0: token 0
    q, scale = KERNELS.quantize_rows(weight)
    tokens, rescored = KERNELS.greedy_head(hidden, None, q, scale, KERNELS.row_sums(q))[:2]
    expected = KERNELS.greedy_head(hidden, None, q, scale).tokens  # the float screen of the same head
    assert tokens.tolist() == expected.tolist()
    logits = (F.linear(hidden.float(), q.float()) * scale).to(dtype)
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()
    assert (rescored >= 1).all() and (rescored <= vocab).all()


@pytest.mark.parametrize("kind", SCREENS)
def test_a_zero_row_and_zero_hidden_state(kind: str) -> None:
    weight, hidden = head_case(300, 32, 2, torch.float32)
    weight[:10] = 0.0
    hidden[1] = 0.0  # every logit 0: token 0
    tokens, _ = screen(kind, hidden, weight)
    assert tokens.tolist() == F.linear(hidden, weight).argmax(dim=-1).tolist()


def order_case(seed: int, dtype: torch.dtype, vocab: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose logits are equal up to summation order: the hidden row holds 16 permutations of
    v = [2^10, -2^10, 1, 2^-8, +-2^-14 four times, 0 four times] (sum 1 + 2^-8, halfway between
    two bfloat16 values), vocabulary row i of 14 (at random places among zero rows) sums block i.
    Whether float32 loses a 2^-14 next to 2^10 depends on the order, so each rounded logit is 1
    or 1 + 2^-7 by the order the matmul takes: near ties only the head's own arithmetic decides."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.tensor([2.0**10, -(2.0**10), 1.0, 2.0**-8] + [2.0**-14, -(2.0**-14)] * 4 + [0.0] * 4)
    hidden = torch.cat([v[torch.randperm(16, generator=gen)] for _ in range(16)])[None]
    weight = torch.zeros(vocab, 256)
    for i, row in enumerate(torch.randperm(vocab, generator=gen)[:14].sort().values.tolist()):
        weight[row, 16 * i : 16 * (i + 1)] = 1.0
    return weight.to(dtype), hidden.to(dtype)


def int8_head(weight: torch.Tensor) -> GreedyHead:
    """A head already quantized to int8 per row (what int8 and int4 models keep), screened in place."""
    assert KERNELS is not None
    q, scale = KERNELS.quantize_rows(weight)
    return GreedyHead(KERNELS, 64, weight.dtype, None, (q, scale))


def int8_reference(head: GreedyHead, hidden: torch.Tensor) -> list[int]:
    """argmax of the int8 head's logits for each row alone (its matmul up to max_kernel_rows rows)."""
    assert head.int8 is not None
    q, scale = head.int8
    return [int(torch._weight_int8pack_mm(row[None], q, scale).argmax()) for row in hidden]


@pytest.mark.parametrize("seed", range(6))
def test_rows_equal_up_to_summation_order_take_the_heads_own_rounding(seed: int) -> None:
    assert KERNELS is not None
    weight, hidden = order_case(seed, torch.bfloat16)
    head = GreedyHead(KERNELS, 64, torch.bfloat16, weight)
    expected = F.linear(hidden, weight).argmax(dim=-1).tolist()
    assert head.tokens(hidden).tolist() == expected
    assert head.tokens(hidden.repeat(40, 1)).tolist() == expected * 40


@pytest.mark.parametrize("seed", range(6))
def test_an_int8_head_gives_a_row_the_same_token_alone_and_in_a_batch_of_40(seed: int) -> None:
    weight, hidden = order_case(seed, torch.bfloat16)
    head = int8_head(weight)
    gen = torch.Generator().manual_seed(seed)
    batch = torch.cat([hidden, torch.randn(39, 256, generator=gen).to(torch.bfloat16)])
    expected = int8_reference(head, batch)
    assert head.tokens(hidden).tolist() == expected[:1]
    assert head.tokens(batch).tolist() == expected  # the in-place integer screen (12 rows or more)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logits_one_bfloat16_step_apart_take_the_larger(dtype: torch.dtype) -> None:
    assert KERNELS is not None
    weight, _ = head_case(4096, 64, 1, dtype)
    weight[:, 0] = 0.0
    hidden = torch.zeros(2, 64)
    hidden[:, 0] = 1.0
    hidden[1, 0] = -1.0
    weight[100, 0], weight[3000, 0] = 1.0, 1.0 + 2.0**-7  # logits 1 and 1 + 2^-7: one bfloat16 ulp
    weight[200, 0], weight[2500, 0] = -(2.0**-20) * (1 - 2.0**-8), -(2.0**-20)  # tiny, one ulp apart
    tokens = GreedyHead(KERNELS, 64, dtype, weight).tokens(hidden.to(dtype))
    assert tokens.tolist() == [3000, 2500] == F.linear(hidden.to(dtype), weight).argmax(dim=-1).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_very_large_logits_are_screened_and_overflowing_ones_decided_as_torch(dtype: torch.dtype) -> None:
    assert KERNELS is not None
    weight, hidden = head_case(8192, 64, 3, dtype)
    hidden = hidden.float()
    hidden[0] *= 2.0**90  # logits near 1e27: finite bounds, the screen still rules rows out
    hidden[1] *= 2.0**125  # logits past float32's range: +-inf and NaN (inf - inf) in the reference
    hidden[2] = weight[77].float() * 2.0**100
    hidden = hidden.to(dtype)
    head = GreedyHead(KERNELS, 64, dtype, weight)
    expected = [int(F.linear(row[None], weight).argmax()) for row in hidden]
    assert head.tokens(hidden).tolist() == expected
    assert expected[2] == 77
    assert head.tokens(hidden[:1]).tolist() == expected[:1] and head.rows_rescored < 8192 // 50


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hidden_rows_with_nan_or_infinity_take_torchs_argmax(dtype: torch.dtype) -> None:
    """torch.argmax counts NaN as the maximum: the first NaN logit wins."""
    assert KERNELS is not None
    weight, hidden = head_case(2048, 64, 3, dtype)
    weight[:, 5] = weight[:, 5].abs() + 0.01
    weight[700, 5] = 0.0  # inf * 0: NaN, row 700's logit alone
    hidden[0, 9] = float("nan")  # every logit NaN: token 0
    hidden[1, 5] = float("inf")  # +inf for every row but 700 (NaN)
    hidden[2, 5] = float("-inf")  # -inf for every row but 700 (NaN)
    head = GreedyHead(KERNELS, 64, dtype, weight)
    assert head.tokens(hidden).tolist() == [0, 700, 700] == F.linear(hidden, weight).argmax(dim=-1).tolist()
    assert int8_head(weight).tokens(hidden).tolist() == [0, 700, 700]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_all_rows_equal_give_the_first(dtype: torch.dtype) -> None:
    assert KERNELS is not None
    gen = torch.Generator().manual_seed(1)
    weight = (torch.randn(1, 64, generator=gen) * 0.05).repeat(3000, 1).to(dtype)
    hidden = torch.randn(2, 64, generator=gen).to(dtype)
    assert GreedyHead(KERNELS, 64, dtype, weight).tokens(hidden).tolist() == [0, 0]
    assert int8_head(weight).tokens(hidden).tolist() == [0, 0]


def outputs(
    model_dir: Path, prompts: list[list[int]], params: list[SamplingParams], **options: object
) -> LLM:
    llm = LLM(str(model_dir), num_kv_blocks=64, block_size=4, max_model_len=128, **options)  # type: ignore[arg-type]
    llm.results = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]  # type: ignore[attr-defined]
    return llm


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("model", ["llama_dir", "qwen2_dir"], ids=["untied-head", "tied-head"])
def test_engine_tokens_equal_those_of_the_full_head(
    model: str, dtype: str, request: pytest.FixtureRequest
) -> None:
    model_dir = request.getfixturevalue(model)
    prompts = random_prompts(4, lengths=[9, 30, 4, 17], seed=3)
    params = [greedy(12), greedy(12), SamplingParams(temperature=1.0, seed=5, max_tokens=12, ignore_eos=True),
              greedy(12, logprobs=2)]  # fmt: skip
    screened = outputs(model_dir, prompts, params, dtype=dtype)
    full = outputs(model_dir, prompts, params, dtype=dtype, cpu_greedy_head_rows=0)
    assert screened.results == full.results  # type: ignore[attr-defined]  # steps that need logits
    alone = outputs(model_dir, prompts[:2], params[:2], dtype=dtype)  # greedy-only steps
    assert alone.results == full.results[:2]  # type: ignore[attr-defined]
    head = alone.engine.runner.greedy_head
    assert head is not None and full.engine.runner.greedy_head is None
    assert head.rows_rescored > 0, "the screened head never ran"
    assert screened.engine.packed_copy_bytes - full.engine.packed_copy_bytes == head.nbytes
    untied = model == "llama_dir"
    assert (screened.engine.model.lm_head.weight.layout == torch.strided) == (untied or dtype == "float32")


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_an_int8_head_is_screened_in_place(llama_dir: Path, quantization: str) -> None:
    """int8 and int4 models keep an int8 head: it is its own screen (no copy), the same tokens."""
    prompts = random_prompts(3, lengths=[9, 30, 17], seed=4)
    params = [greedy(12)] * 3
    screened = outputs(llama_dir, prompts, params, dtype="bfloat16", quantization=quantization)
    full = outputs(
        llama_dir, prompts, params, dtype="bfloat16", quantization=quantization, cpu_greedy_head_rows=0
    )
    head = screened.engine.runner.greedy_head
    assert head is not None and head.weight is None and not head.vnni
    row_sums = 2 * 4 * 384 if head.row_sums is not None else 0  # l1 and sums per row, on VNNI CPUs
    assert head.rows_rescored > 0 and head.nbytes == 4 * 384 + row_sums  # float32 scales, row sums
    assert screened.results == full.results  # type: ignore[attr-defined]
    one = outputs(llama_dir, prompts[:1], params[:1], dtype="bfloat16", quantization=quantization)
    assert one.results == full.results[:1]  # type: ignore[attr-defined]  # one row a step


def test_min_tokens_without_stop_tokens_still_takes_the_screened_head(qwen2_dir: Path) -> None:
    """ignore_eos with min_tokens (exact output lengths, as benchmarks ask) masks nothing: no logits."""
    prompts = random_prompts(2, lengths=[9, 30], seed=6)
    params = [greedy(10, min_tokens=10)] * 2
    screened = outputs(qwen2_dir, prompts, params, dtype="float32")
    full = outputs(qwen2_dir, prompts, params, dtype="float32", cpu_greedy_head_rows=0)
    head = screened.engine.runner.greedy_head
    assert head is not None and head.rows_rescored > 0
    assert screened.results == full.results  # type: ignore[attr-defined]
    assert all(len(tokens) == 10 for tokens in screened.results)  # type: ignore[attr-defined]
