from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from factories import make_request, random_prompts
from seekserve import LLM, SamplingParams
from seekserve.engine.sampler import Sampler

VOCAB = 32


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


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2] + [1e-9] * (VOCAB - 3)]))
    sampler = Sampler(seed=0)
    req = make_request(temperature=1.0)
    counts = torch.bincount(
        torch.tensor([sampler(logits, [req]).token_ids[0] for _ in range(3000)]), minlength=3
    )
    freqs = (counts[:3].float() / 3000).tolist()
    assert freqs == pytest.approx([0.5, 0.3, 0.2], abs=0.03)


def test_top_p_and_min_p_cut_the_tail() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05] + [1e-9] * (VOCAB - 4)]))
    sampler = Sampler(seed=0)
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
