from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from factories import make_request, random_prompts
from seekserve import LLM, SamplingParams
from seekserve.engine.candidates import kept_tokens
from seekserve.engine.penalties import apply_penalties
from seekserve.engine.sampler import Sampler
from seekserve.layers.cpu_kernels import CpuKernels, cpu_kernels

VOCAB = 32


@pytest.fixture(params=["torch", "kernel"])
def kernels(request: pytest.FixtureRequest) -> CpuKernels | None:
    """The candidate path's two routes: torch.topk with torch's softmax, and the fused CPU kernel."""
    if request.param == "torch":
        return None
    loaded = cpu_kernels()
    if loaded is None:
        pytest.skip("no CPU kernels (no compiler, or SEEKSERVE_CPU_KERNELS=0)")
    return loaded


def logits_rows(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax() -> None:
    logits = logits_rows(4)
    reqs = [make_request(f"r{i}", temperature=0.0) for i in range(4)]
    assert Sampler()(logits, reqs).token_ids == logits.argmax(-1).tolist()


def test_top_k_one_equals_greedy() -> None:
    logits = logits_rows(8, seed=3)
    reqs = [make_request(f"r{i}", temperature=1.3, top_k=1) for i in range(8)]
    assert Sampler(seed=5)(logits, reqs).token_ids == logits.argmax(-1).tolist()


def test_seed_reproduces_whatever_else_is_in_the_batch() -> None:
    row = logits_rows(1, seed=1)
    draws = []
    for batch_size in (1, 4):
        reqs = [
            make_request(f"r{i}", temperature=1.0, seed=123 if i == 0 else None) for i in range(batch_size)
        ]
        logits = torch.cat([row, logits_rows(batch_size - 1, seed=9)]) if batch_size > 1 else row
        sampler = Sampler(seed=batch_size)
        draws.append([sampler(logits[:batch_size], reqs).token_ids[0] for _ in range(10)])
    assert draws[0] == draws[1]
    assert len(set(draws[0])) > 1  # it does sample, not argmax


def test_sampling_follows_the_distribution(kernels: CpuKernels | None) -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2] + [1e-9] * (VOCAB - 3)]))
    sampler = Sampler(seed=0, kernels=kernels)
    req = make_request(temperature=1.0)
    counts = torch.bincount(
        torch.tensor([sampler(logits, [req]).token_ids[0] for _ in range(3000)]), minlength=3
    )
    freqs = (counts[:3].float() / 3000).tolist()
    assert freqs == pytest.approx([0.5, 0.3, 0.2], abs=0.03)


def test_top_p_and_min_p_cut_the_tail(kernels: CpuKernels | None) -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05] + [1e-9] * (VOCAB - 4)]))
    sampler = Sampler(seed=0, kernels=kernels)
    top_p = {sampler(logits, [make_request(temperature=1.0, top_p=0.75)]).token_ids[0] for _ in range(500)}
    assert top_p == {0, 1}  # 0.5 + 0.3 reaches 0.75; 0.15 is past it
    min_p = {sampler(logits, [make_request(temperature=1.0, min_p=0.25)]).token_ids[0] for _ in range(500)}
    assert min_p == {0, 1, 2}  # 0.05 < 0.25 * 0.5


def test_penalties_change_logits_as_specified() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5] + [0.0] * (VOCAB - 4)])
    req = make_request(prompt=[0, 1], repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    req.token_ids += [2, 2]  # two output tokens, both id 2
    row = logits[0].clone()
    Sampler._penalize(row, req)
    # id 0 (prompt, positive) halves; id 1 (prompt, negative) doubles; id 2 (output twice):
    # repetition 1.0 / 2 = 0.5, then - 0.5 * 2 (frequency) - 0.25 (presence) = -0.75; id 3 untouched.
    assert row[:4].tolist() == [1.0, -4.0, -0.75, 0.5]


def test_min_tokens_masks_stop_tokens() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, 5] = 10.0
    req = make_request(temperature=0.0, min_tokens=2)
    req.stop_token_ids = frozenset({5})
    assert Sampler()(logits, [req]).token_ids[0] != 5


def test_logprobs_match_log_softmax_of_the_logits() -> None:
    logits = logits_rows(2, seed=4)
    reqs = [make_request("a", temperature=0.0, logprobs=3), make_request("b", temperature=0.0)]
    out = Sampler()(logits, reqs)
    reference = torch.log_softmax(logits[0], -1)
    lp = out.logprobs[0]
    assert lp is not None and out.logprobs[1] is None
    assert lp.token_id == out.token_ids[0]
    assert lp.logprob == pytest.approx(float(reference[lp.token_id]), abs=1e-6)
    values, ids = reference.topk(3)
    assert [t for t, _ in lp.top] == ids.tolist()
    assert [v for _, v in lp.top] == pytest.approx(values.tolist(), abs=1e-6)
    assert math.isclose(sum(math.exp(v) for v in reference.tolist()), 1.0, rel_tol=1e-5)


class RecordingHead:
    """A stand-in screened head: takes up to `max_rows` rows and answers each row's last column index."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.calls: list[int] = []

    def accepts(self, num_rows: int) -> bool:
        return num_rows <= self.max_rows

    def tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        self.calls.append(hidden.shape[0])
        return torch.full((hidden.shape[0],), VOCAB - 1, dtype=torch.int64)


@pytest.mark.parametrize(
    ("params", "rows", "screened"),
    [
        ({"temperature": 0.0}, 2, True),
        ({"temperature": 0.0}, 3, False),  # more rows than the head takes
        ({"temperature": 0.6, "top_p": 0.95}, 2, False),
        ({"temperature": 0.0, "logprobs": 1}, 2, False),
        ({"temperature": 0.0, "repetition_penalty": 1.2}, 2, False),
        ({"temperature": 0.0, "min_tokens": 1}, 2, False),  # min_tokens with stop ids hides stop tokens
    ],
)
def test_sample_takes_the_screened_head_only_for_plain_greedy_rows(
    params: dict[str, float], rows: int, screened: bool
) -> None:
    head = RecordingHead(max_rows=2)
    hidden = logits_rows(rows, seed=4)  # the stand-in head below is the identity
    reqs = [make_request(f"r{i}", **params) for i in range(rows)]
    for r in reqs:
        r.stop_token_ids = frozenset({0})
    logits_calls: list[int] = []

    def compute_logits(h: torch.Tensor) -> torch.Tensor:
        logits_calls.append(h.shape[0])
        return h

    out = Sampler(seed=0, greedy_head=head).sample(hidden, reqs, compute_logits)  # type: ignore[arg-type]
    assert (head.calls, logits_calls) == (([rows], []) if screened else ([], [rows]))
    if screened:
        assert out.token_ids == [VOCAB - 1] * rows and out.logprobs == [None] * rows
    elif params["temperature"] == 0.0 and "repetition_penalty" not in params and "min_tokens" not in params:
        assert out.token_ids == hidden.argmax(-1).tolist()


def test_seeded_generation_reproduces_end_to_end(llama_dir: Path) -> None:
    llm = LLM(str(llama_dir), dtype="float32", num_kv_blocks=64, max_model_len=128)
    prompt = random_prompts(1, lengths=[12])[0]
    params = [SamplingParams(temperature=1.0, seed=s, max_tokens=12, ignore_eos=True) for s in (1, 1, 2)]
    outs = llm.generate([prompt] * 3, params)
    a, b, c = (o.outputs[0].token_ids for o in outs)
    assert a == b and a != c


BIG_VOCAB = 262_144


def exact_filtered(
    row: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float
) -> torch.Tensor:
    """The filtered distribution from its definition, in float64: [vocab], summing to 1."""
    scaled = row.double() / temperature
    values, order = scaled.sort(descending=True, stable=True)  # ties: lower token id first
    k = top_k if 0 < top_k < len(row) else len(row)
    probs = torch.softmax(values[:k], dim=0)
    before = torch.cumsum(probs, dim=0) - probs
    kept = int((before < top_p).sum()) if top_p < 1.0 else k
    probs = torch.softmax(values[:kept], dim=0)
    probs = torch.where(probs < min_p * probs[0], 0.0, probs)
    full = torch.zeros(len(row), dtype=torch.float64)
    full[order[:kept]] = probs / probs.sum()
    return full


def chi_square_threshold(dof: int) -> float:
    """Wilson-Hilferty: the chi-square value exceeded with probability about 1e-7."""
    z = 5.2
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def assert_draws_follow(
    row: torch.Tensor,
    params: dict[str, float],
    expected: torch.Tensor,
    n: int,
    kernels: CpuKernels | None = None,
) -> None:
    """n unseeded draws of `row`, in batches, against the exact distribution `expected`."""
    sampler = Sampler(seed=11, kernels=kernels)
    batch = 256 if row.shape[0] < 1000 else 64
    draws = []
    for _ in range(n // batch):
        reqs = [make_request(f"r{i}", **params) for i in range(batch)]  # type: ignore[arg-type]
        draws += sampler(row[None].expand(batch, -1), reqs).token_ids
    counts = torch.bincount(torch.tensor(draws), minlength=row.shape[0]).double()
    support = expected > 0
    assert int(counts[~support].sum()) == 0, "drew a token the filters drop"
    big = expected[support] * len(draws) >= 5  # pool the cells too rare for the chi-square
    observed = torch.cat([counts[support][big], counts[support][~big].sum()[None]])
    wanted = torch.cat([expected[support][big], expected[support][~big].sum()[None]]) * len(draws)
    if wanted[-1] < 5:
        observed, wanted = observed[:-1], wanted[:-1]
    statistic = float(((observed - wanted) ** 2 / wanted).sum())
    assert len(wanted) >= 5 and statistic < chi_square_threshold(len(wanted) - 1)


def test_draws_follow_the_exact_filtered_distribution_small_vocab(kernels: CpuKernels | None) -> None:
    row = torch.randn(VOCAB, generator=torch.Generator().manual_seed(7)) * 2
    params = {"temperature": 0.6, "top_p": 0.95, "min_p": 0.02, "top_k": 20}
    expected = exact_filtered(row, 0.6, 20, 0.95, 0.02)
    assert 5 < int((expected > 0).sum()) < 20  # every filter cuts something
    assert_draws_follow(row, params, expected, 40_960, kernels)


def test_draws_follow_the_exact_filtered_distribution_big_vocab(kernels: CpuKernels | None) -> None:
    gen = torch.Generator().manual_seed(8)
    row = torch.randn(BIG_VOCAB, generator=gen)
    peaks = torch.randperm(BIG_VOCAB, generator=gen)[:24]
    row[peaks] = 10.0 + torch.linspace(0.0, 3.0, 24)
    row = row.to(torch.bfloat16)
    expected = exact_filtered(row, 0.6, 0, 0.95, 0.0)
    assert 10 < int((expected > 0).sum()) < 24
    assert_draws_follow(row, {"temperature": 0.6, "top_p": 0.95}, expected, 8192, kernels)


def kept_probs(
    logits: torch.Tensor,
    reqs: list,  # type: ignore[type-arg]
    fast: bool,
    kernels: CpuKernels | None = None,
) -> torch.Tensor:
    """[rows, vocab] float32 weights of the kept tokens, by the fast path or the full sort."""
    if not fast:
        return Sampler.full_sort_probs(logits, reqs)
    out = torch.zeros(logits.shape, dtype=torch.float32)
    for kept in kept_tokens(logits, Sampler.row_filters(reqs, logits.shape[-1], logits.device), kernels):
        out[kept.rows[:, None], kept.token_ids] = kept.weights
        assert (kept.weights > 0).sum(-1).le(kept.num_kept).all(), "weight past the kept prefix"
    return out


def mixed_rows() -> tuple[torch.Tensor, list]:  # type: ignore[type-arg]
    """Rows of 262,144 logits with the settings that take each route of the fast path."""
    gen = torch.Generator().manual_seed(12)
    peaked = torch.randn(BIG_VOCAB, generator=gen) * 3
    flat = torch.randn(BIG_VOCAB, generator=gen) * 0.3  # top-p needs thousands of tokens: fallback
    ties = torch.randint(0, 6, (BIG_VOCAB,), generator=gen).float()  # huge groups of equal logits
    few_ties = torch.randn(BIG_VOCAB, generator=gen)
    few_ties[:300] = 9.0  # 300 equal top logits, more than the first 64 candidates
    cases = [
        (peaked, {"temperature": 0.6, "top_p": 0.95}),
        (peaked, {"temperature": 1.0, "top_p": 0.5, "min_p": 0.05}),
        (peaked, {"temperature": 0.8, "top_k": 40}),
        (peaked, {"temperature": 0.8, "top_k": 5000, "top_p": 0.9}),  # wider than 4096: full sort
        (peaked, {"temperature": 1.0, "min_p": 0.1}),
        (peaked, {"temperature": 1e-4, "top_p": 0.95}),
        (flat, {"temperature": 1.0, "top_p": 0.95}),
        (flat, {"temperature": 1.0, "top_p": 0.02}),  # a few hundred tokens: the 4096 stage
        (flat, {"temperature": 1.0, "min_p": 0.3}),
        (ties, {"temperature": 1.0, "top_k": 10}),
        (ties, {"temperature": 1.0, "top_p": 0.2}),
        (few_ties, {"temperature": 0.7, "top_k": 100, "top_p": 0.5}),
        (few_ties, {"temperature": 0.7, "top_p": 0.3}),
        (peaked, {"temperature": 1.0}),  # no filter: every token, no sort
    ]
    logits = torch.stack([row for row, _ in cases]).to(torch.bfloat16)
    return logits, [make_request(f"r{i}", **p) for i, (_, p) in enumerate(cases)]  # type: ignore[arg-type]


def test_fast_filtering_keeps_what_the_full_sort_keeps(kernels: CpuKernels | None) -> None:
    logits, reqs = mixed_rows()
    fast, reference = kept_probs(logits, reqs, True, kernels), kept_probs(logits, reqs, False)
    for row in range(len(reqs)):
        assert torch.equal(fast[row] > 0, reference[row] > 0), f"row {row}: kept sets differ"
        torch.testing.assert_close(fast[row], reference[row], rtol=1e-4, atol=1e-9)
    sizes = (reference > 0).sum(-1).tolist()
    assert sizes[6] > 4096 and 64 < sizes[7] < 4096 and sizes[9] == 10  # the routes were taken


def test_fast_filtering_matches_on_many_random_small_rows(kernels: CpuKernels | None) -> None:
    gen = torch.Generator().manual_seed(13)
    rows = 300
    logits = torch.randn(rows, 5000, generator=gen) * torch.rand(rows, 1, generator=gen) * 4
    logits[::7] = logits[::7].round()  # exact ties
    reqs = []
    for i in range(rows):
        choice = torch.rand(4, generator=gen).tolist()
        reqs.append(
            make_request(
                f"r{i}",
                temperature=0.05 + 1.5 * choice[0],
                top_p=0.5 + 0.5 * choice[1] if i % 3 else 1.0,
                top_k=int(choice[2] * 300) if i % 4 == 0 else 0,
                min_p=0.2 * choice[3] if i % 5 == 0 else 0.0,
            )
        )
    fast, reference = kept_probs(logits, reqs, True, kernels), kept_probs(logits, reqs, False)
    assert torch.equal(fast > 0, reference > 0)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-9)


def test_seeded_rows_draw_the_same_alone_and_in_a_batch(kernels: CpuKernels | None) -> None:
    logits, settings = mixed_rows()
    params = [r.params for r in settings]
    seeded = [0, 6, 7, 13]  # fast path, full-sort fallback, 4096 stage, no filter

    def run(batch: list[int], steps: int = 4) -> dict[int, list[int]]:
        reqs = [
            make_request(f"r{i}", seed=100 + i if i in seeded else None, **_fields(params[i])) for i in batch
        ]
        sampler = Sampler(seed=len(batch), kernels=kernels)
        draws = [sampler(logits[batch], reqs).token_ids for _ in range(steps)]
        return {i: [d[j] for d in draws] for j, i in enumerate(batch) if i in seeded}

    alone = {i: run([i])[i] for i in seeded}
    together = run([13, 1, 0, 2, 6, 3, 4, 5, 7, 8, 9, 10, 11, 12, 0, 1][:14])
    assert together == alone
    assert len(set(alone[6])) > 1  # it does sample


def _fields(params: SamplingParams) -> dict[str, float]:
    return {k: getattr(params, k) for k in ("temperature", "top_p", "top_k", "min_p")}


def test_batched_penalties_equal_the_row_by_row_ones() -> None:
    gen = torch.Generator().manual_seed(14)
    vocab = 2000
    logits = torch.randn(12, vocab, generator=gen) * 3
    reqs = []
    for i in range(12):
        prompt = torch.randint(0, vocab, (5 + 7 * i,), generator=gen).tolist()
        req = make_request(
            f"r{i}",
            prompt=prompt,
            repetition_penalty=[1.0, 1.3, 0.7][i % 3],
            frequency_penalty=[0.0, 0.4, -0.3, 1.1][i % 4],
            presence_penalty=[0.0, 0.25, -0.6][(i // 2) % 3],
            min_tokens=[0, 50][i % 2],
            max_tokens=64,
        )
        req.token_ids += torch.randint(0, 40, (3 * i,), generator=gen).tolist()  # repeats
        req.stop_token_ids = frozenset({1, 7, 19})
        reqs.append(req)
    batched = logits.clone()
    apply_penalties(batched, reqs)
    by_row = logits.clone()
    for row, req in enumerate(reqs):
        Sampler._penalize(by_row[row], req)
    assert torch.equal(batched, by_row)
    assert not torch.equal(batched, logits)


def test_kernel_route_settles_clear_rows_and_leaves_near_thresholds_to_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows whose top-p or min-p cut lies within MARGIN of a candidate's mass go to the torch
    stages (torch's float32 softmax decides them, as in the full sort); the others are settled
    from the kernel's candidates."""
    kernels = cpu_kernels()
    if kernels is None:
        pytest.skip("no CPU kernels (no compiler, or SEEKSERVE_CPU_KERNELS=0)")
    from seekserve.engine import candidates

    to_torch: list[int] = []
    torch_stages = candidates._torch_stages

    def spy(logits: torch.Tensor, filters, pending: torch.Tensor, widths, groups) -> None:  # type: ignore[no-untyped-def]
        to_torch.extend(pending.tolist())
        torch_stages(logits, filters, pending, widths, groups)

    monkeypatch.setattr(candidates, "_torch_stages", spy)
    row = torch.full((BIG_VOCAB,), -30.0)
    row[[5, 9, 700, 3000]] = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    logits = row.expand(4, -1)
    # The mass before token 700 is 0.8 (to float32 rounding): top_p 0.8 and min_p 0.3 (0.15 = 0.3 * 0.5)
    # sit on a candidate's threshold; top_p 0.7 and min_p 0.2 are clear of every candidate.
    settings = [{"top_p": 0.8}, {"top_p": 0.7}, {"min_p": 0.3}, {"min_p": 0.2}]
    reqs = [make_request(f"r{i}", temperature=1.0, **p) for i, p in enumerate(settings)]  # type: ignore[arg-type]
    fast, reference = kept_probs(logits, reqs, True, kernels), kept_probs(logits, reqs, False)
    assert sorted(to_torch) == [0, 2]
    assert torch.equal(fast > 0, reference > 0)
    sizes = (reference > 0).sum(-1).tolist()
    assert sizes[1] == 2 and sizes[3] == 3  # rows 0 and 2: as the roundings fall
