"""One benchmark run: warm up, send requests on the arrival schedule, collect the records.

    run(config) -> BenchRun          (or `await run_async(config)` inside an event loop)

Requests of a fixed-count run are generated before the clock starts, so prompt generation costs
nothing during the run. A concurrency limit makes late arrivals wait for a slot; with all-at-once
arrivals it is a closed loop (a new request whenever one finishes). A duration stops new sends;
requests in flight finish and count, and the run lasts until the last one ends.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from seekserve.bench.arrivals import make_arrival
from seekserve.bench.client import OpenAIClient
from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest, load_dataset, random_text
from seekserve.bench.metrics import BenchSummary, RequestRecord, summarize
from seekserve.errors import BenchError

__all__ = ["BenchRun", "Reporter", "run", "run_async"]

_WARMUP_PROMPT_TOKENS, _WARMUP_OUTPUT_TOKENS = 32, 16


class Reporter(Protocol):
    """Receives progress; called from the event loop thread, so it must not block."""

    def start(self, num_requests: int | None, duration_s: float | None) -> None: ...

    def request_done(self, record: RequestRecord) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class BenchRun:
    """A finished run."""

    config: BenchConfig
    records: list[RequestRecord]
    """In send order."""
    duration_s: float
    """From the first send to the end of the last request."""
    started_at: str
    """Wall-clock start, ISO 8601 (UTC)."""
    summary: BenchSummary


def run(config: BenchConfig, reporter: Reporter | None = None) -> BenchRun:
    """Run a benchmark from synchronous code."""
    return asyncio.run(run_async(config, reporter))


async def run_async(config: BenchConfig, reporter: Reporter | None = None) -> BenchRun:
    """Run a benchmark; raises BenchError when the warm-up fails, ConfigError for a bad dataset."""
    dataset = load_dataset(config)
    limit = config.max_requests
    if config.resolved_arrival == "trace" and dataset.size is not None:
        limit = min(config.num_requests or dataset.size, dataset.size)  # a trace runs once through
    requests = dataset.requests(random.Random(config.seed))
    schedule: Iterable[tuple[float, BenchRequest]]
    schedule = make_arrival(config).schedule(requests, random.Random(config.seed + 1))
    if limit is not None:  # prompts and send times are made before the clock starts (bad traces fail now)
        schedule = list(itertools.islice(schedule, limit))
    async with OpenAIClient(config) as client:
        await _warm_up(client, config)
        if reporter is not None:
            reporter.start(limit, config.duration_s)
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        try:
            records, duration = await _send_all(client, config, schedule, reporter)
        finally:
            if reporter is not None:
                reporter.stop()
    records.sort(key=lambda r: r.index)
    summary = summarize(records, duration, config.slos, config.stall_threshold_s)
    return BenchRun(config, records, duration, started_at, summary)


async def _warm_up(client: OpenAIClient, config: BenchConfig) -> None:
    rng = random.Random(config.seed + 2)
    for i in range(config.num_warmup):
        prompt, _ = random_text(_WARMUP_PROMPT_TOKENS, rng)
        record = await client.send(BenchRequest(prompt, _WARMUP_OUTPUT_TOKENS), i, time.perf_counter())
        if not record.ok:
            raise BenchError(
                f"the warm-up request to {client.url} failed ({record.error}): {record.error_message}; "
                f"check --base-url, --model and that the server is up (or pass --num-warmup 0)"
            )


async def _send_all(
    client: OpenAIClient,
    config: BenchConfig,
    schedule: Iterable[tuple[float, BenchRequest]],
    reporter: Reporter | None,
) -> tuple[list[RequestRecord], float]:
    records: list[RequestRecord] = []
    slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
    # all-at-once with a limit is a closed loop: take the slot before creating the task
    closed_loop = slots is not None and config.resolved_arrival == "all-at-once"
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter()
    deadline = t0 + config.duration_s if config.duration_s is not None else math.inf

    async def one(index: int, offset: float, request: BenchRequest, holds_slot: bool) -> None:
        try:
            if slots is not None and not holds_slot:
                async with slots:
                    record = await client.send(request, index, t0, offset)
            else:
                record = await client.send(request, index, t0, offset)
        finally:
            if holds_slot and slots is not None:
                slots.release()
        records.append(record)
        if reporter is not None:
            reporter.request_done(record)

    for index, (offset, request) in enumerate(schedule):
        if t0 + offset >= deadline:
            break
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if closed_loop and slots is not None:
            await slots.acquire()
        if time.perf_counter() >= deadline:
            if closed_loop and slots is not None:
                slots.release()
            break
        task = asyncio.create_task(one(index, offset, request, closed_loop))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return records, time.perf_counter() - t0
