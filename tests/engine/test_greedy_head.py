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
        return KERNELS.greedy_head(hidden, weight, q, scale)
    if not KERNELS.has_vnni:
        pytest.skip("this CPU has no AVX-512 VNNI: the integer screen is not built")
    packed, l1 = KERNELS.pack_vnni(q)
    padded = torch.zeros_like(l1)
    padded[: scale.shape[0]] = scale
    return KERNELS.greedy_head_vnni(hidden, weight, packed, padded, l1)


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
        tokens, rescored = KERNELS.greedy_head(hidden, weight, q, scale, (l1, sums))
        assert tokens.tolist() == F.linear(hidden, weight).argmax(dim=-1).tolist()
        assert 1 <= rescored.item() <= 64, f"the screen ruled out too few rows: {rescored.item()}"
        # The int8 head itself (no float weight): the same tokens as its float screen.
        tokens, rescored = KERNELS.greedy_head(hidden, None, q, scale, (l1, sums))
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
    tokens, rescored = KERNELS.greedy_head(hidden, None, q, scale, KERNELS.row_sums(q))
    expected, _ = KERNELS.greedy_head(hidden, None, q, scale)  # the float screen of the same head
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
