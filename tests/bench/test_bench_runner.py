from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from seekserve.bench.config import BenchConfig
from seekserve.bench.fake_server import FakeServer
from seekserve.bench.metrics import RequestRecord
from seekserve.bench.runner import BenchRun, run_async
from seekserve.errors import BenchError, ConfigError

WithServer = Callable[..., Any]


class Collect:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def start(self, num_requests: int | None, duration_s: float | None) -> None:
        self.events.append(("start", num_requests, duration_s))

    def request_done(self, record: RequestRecord) -> None:
        self.events.append(record.index)

    def stop(self) -> None:
        self.events.append("stop")


def bench(with_fake_server: WithServer, reporter: Any = None, **options: Any) -> tuple[BenchRun, FakeServer]:
    async def test(s: FakeServer) -> tuple[BenchRun, FakeServer]:
        config = BenchConfig(base_url=s.base_url, model="fake-model", **options)
        return await run_async(config, reporter), s

    server_options = options.pop("server", {})
    return with_fake_server(test, **server_options)


def test_a_fixed_count_run_sends_every_request_and_reports_progress(with_fake_server: WithServer) -> None:
    reporter = Collect()
    result, server = bench(
        with_fake_server, reporter, num_requests=30, output_len="uniform:2,9", num_warmup=2
    )
    assert [r.index for r in result.records] == list(range(30))
    assert server.num_requests == 32, "30 measured plus 2 warm-up requests"
    assert reporter.events[0] == ("start", 30, None) and reporter.events[-1] == "stop"
    assert sorted(reporter.events[1:-1]) == list(range(30))
    s = result.summary
    assert s.num_completed == 30 and s.num_length_mismatch == 0
    assert s.output_tokens == sum(r.output_tokens for r in result.records) > 60
    assert result.duration_s >= max(r.end_s for r in result.records)


def test_the_concurrency_limit_holds_in_a_closed_loop(with_fake_server: WithServer) -> None:
    result, server = bench(
        with_fake_server, num_requests=20, max_concurrency=3, output_len="5", server={"itl_s": 0.005}
    )
    assert server.max_active == 3
    assert result.summary.num_completed == 20
    assert 2.0 < result.summary.mean_concurrency <= 3.0 + 1e-6


def test_a_duration_stops_new_requests_and_lets_running_ones_finish(with_fake_server: WithServer) -> None:
    started = time.perf_counter()
    result, _ = bench(
        with_fake_server, duration_s=0.5, max_concurrency=4, output_len="10", server={"itl_s": 0.01}
    )
    elapsed = time.perf_counter() - started
    assert 0.5 <= result.duration_s < 3.0 and elapsed < 10
    # the last sends were decided before the deadline (their tasks start a moment later)
    assert max(r.start_s for r in result.records) < 0.6
    assert result.summary.num_completed == len(result.records) >= 8


def test_poisson_requests_go_out_on_schedule(with_fake_server: WithServer) -> None:
    result, _ = bench(with_fake_server, num_requests=60, request_rate=100.0, output_len="2", seed=3)
    starts = [r.start_s for r in result.records]
    assert starts == sorted(starts)
    assert result.summary.send_lag is not None and result.summary.send_lag.median < 0.02
    assert 40 < result.summary.achieved_request_rate < 250


def test_trace_arrivals_follow_the_file(with_fake_server: WithServer, tmp_path: Path) -> None:
    arrivals = (0.0, 0.0, 0.3, 0.6)
    lines = [json.dumps({"prompt": "a", "output_len": 2, "arrival_s": t}) + "\n" for t in arrivals]
    (tmp_path / "t.jsonl").write_text("".join(lines))
    result, _ = bench(with_fake_server, dataset=f"jsonl:{tmp_path / 't.jsonl'}", arrival="trace")
    assert len(result.records) == 4, "a trace runs once through, not 100 times"
    for r, t in zip(result.records, arrivals, strict=True):
        assert r.scheduled_s == t
        assert t <= r.start_s < t + 0.1


def test_a_failing_warm_up_stops_the_run_with_the_reason(with_fake_server: WithServer) -> None:
    async def test(s: FakeServer) -> None:
        await run_async(BenchConfig(base_url=s.base_url, model="not-served"))

    with pytest.raises(BenchError, match=r"warm-up request .* failed \(http_404\): model 'not-served'"):
        with_fake_server(test)


def test_a_bad_trace_fails_before_anything_is_sent(with_fake_server: WithServer, tmp_path: Path) -> None:
    lines = [{"prompt": "a", "arrival_s": 1.0}, {"prompt": "b", "arrival_s": 0.5}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    async def test(s: FakeServer) -> int:
        config = BenchConfig(base_url=s.base_url, model="fake-model", dataset=f"jsonl:{tmp_path / 't.jsonl'}")
        with pytest.raises(ConfigError, match="sort the trace by arrival_s"):
            await run_async(dataclasses.replace(config, arrival="trace"))
        return s.num_requests

    assert with_fake_server(test) == 0
