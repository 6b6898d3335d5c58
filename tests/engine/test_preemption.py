"""KV cache exhaustion: more concurrent long generations than the cache holds, prefix caching on.

Every request must finish with the tokens it gets from an engine whose cache holds them all
(preempted requests are recomputed, from their own cached prefix blocks where those survived), in
bounded time (no deadlock, no livelock), without an error; the preemption counters (the engine's
stats, each request's metrics and the Prometheus series) agree on what happened, and afterwards
every block is back and the reference counts balance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from factories import random_prompts
from metrics.scrape import Scrape
from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.metrics import ServerMetrics

SHARED = random_prompts(1, lengths=[16], seed=11)[0]
"""Four blocks of 4 that half the prompts start with, so preemption meets shared prefix blocks."""
TAILS = random_prompts(8, lengths=[3, 9, 5, 12, 7, 4, 10, 6], seed=12)
PROMPTS = [SHARED + tail if i % 2 == 0 else tail for i, tail in enumerate(TAILS)]
DEADLINE_S = 120.0
"""Far above the few seconds these take: reaching it means the engine stopped making progress."""


def make_engine(model_dir: Path, **options: Any) -> AsyncEngine:
    return AsyncEngine.from_options(
        model=str(model_dir), dtype="float32", enable_prefix_caching=True, **options
    )


def params(max_tokens: int, n: int = 1) -> SamplingParams:
    return SamplingParams(n=n, temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


async def final_output(engine: AsyncEngine, prompt: list[int], sampling: SamplingParams) -> RequestOutput:
    last = None
    async for out in engine.generate(prompt, sampling):
        last = out
    assert last is not None and last.finished, "a stream ended without its final output"
    return last


def run_all(engine: AsyncEngine, jobs: list[tuple[list[int], SamplingParams]]) -> list[RequestOutput]:
    """Every job at once, as concurrent streams; fails if they have not all finished by DEADLINE_S."""

    async def main() -> list[RequestOutput]:
        async with asyncio.timeout(DEADLINE_S):
            return await asyncio.gather(*(final_output(engine, p, s) for p, s in jobs))

    try:
        return asyncio.run(main())
    finally:
        engine.shutdown()


def tokens(outputs: list[RequestOutput]) -> list[list[list[int]]]:
    return [[c.token_ids for c in out.outputs] for out in outputs]


def check_exhausted_run(
    engine: AsyncEngine, outputs: list[RequestOutput], want: list[list[list[int]]]
) -> None:
    assert tokens(outputs) == want
    assert all(c.finish_reason == "length" for out in outputs for c in out.outputs)
    preempted = sum(out.metrics.num_preemptions for out in outputs if out.metrics is not None)
    stats = engine.stats
    assert preempted > 0 and stats.num_preemptions == preempted
    scrape = Scrape(ServerMetrics("m", lambda: stats).render().decode(), model_name="m")
    assert scrape("seekserve:num_preemptions_total") == preempted
    assert (stats.num_running, stats.num_waiting) == (0, 0)
    assert (stats.num_kv_blocks_used, stats.num_kv_block_refs) == (0, 0)
    assert engine.engine.audit() == [] and stats.num_kv_audit_failures == 0


@pytest.fixture(scope="module")
def unpreempted(llama_dir: Path) -> list[list[list[int]]]:
    """The greedy tokens of each job, from an engine whose cache holds every job at once."""
    engine = make_engine(llama_dir, num_kv_blocks=1024, block_size=4, max_model_len=128)
    outputs = run_all(engine, jobs(96))
    assert engine.stats.num_preemptions == 0
    return tokens(outputs)


def jobs(max_tokens: int) -> list[tuple[list[int], SamplingParams]]:
    """The eight prompts, the first with n=2 (two sequences sharing its prompt's blocks)."""
    return [(p, params(max_tokens, n=2 if i == 0 else 1)) for i, p in enumerate(PROMPTS)]


def test_more_long_generations_than_the_cache_holds_all_finish_exactly(
    llama_dir: Path, unpreempted: list[list[list[int]]]
) -> None:
    # 64 blocks of 4 hold 256 tokens; nine sequences of up to 124 tokens need about 1,000.
    engine = make_engine(llama_dir, num_kv_blocks=64, block_size=4, max_model_len=128)
    outputs = run_all(engine, jobs(96))
    check_exhausted_run(engine, outputs, unpreempted)


def test_a_cache_of_a_handful_of_blocks_serves_them_one_at_a_time(llama_dir: Path) -> None:
    # 5 blocks of 16 hold 80 tokens: one sequence of max_model_len, and nothing else beside it.
    want_engine = make_engine(llama_dir, num_kv_blocks=64, block_size=16, max_model_len=80)
    want = tokens(run_all(want_engine, jobs(40)))
    engine = make_engine(llama_dir, num_kv_blocks=5, block_size=16, max_model_len=80)
    outputs = run_all(engine, jobs(40))
    check_exhausted_run(engine, outputs, want)
