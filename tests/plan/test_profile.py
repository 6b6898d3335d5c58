"""Replica profiles: interpolation, the log-normal fit, and `seekserve bench` result files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from seekserve.bench.config import BenchConfig
from seekserve.bench.metrics import RequestRecord, summarize
from seekserve.bench.report import result_dict
from seekserve.bench.runner import BenchRun
from seekserve.errors import ConfigError
from seekserve.plan.profile import (
    BUILTIN_PROFILES,
    Z99,
    ProfilePoint,
    ProfileService,
    ReplicaProfile,
    load_bench_profile,
)

PROFILE = ReplicaProfile("t", (ProfilePoint(1, 0.1, 0.2), ProfilePoint(16, 0.4, 1.0)), 8, "test")


def test_a_point_is_a_log_normal_with_that_median_and_p99() -> None:
    point = ProfilePoint(32, 0.19, 0.55)
    sigma = math.log(0.55 / 0.19) / 2.3263478740408408
    assert point.sigma == pytest.approx(sigma)
    assert point.mean_s == pytest.approx(0.19 * math.exp(sigma**2 / 2))
    assert point.throughput == pytest.approx(32 / point.mean_s)
    service = ProfileService(ReplicaProfile("p", (point,), 1, "x"), 32)
    assert service.seconds(32, 0.0) == pytest.approx(0.19)  # the median at a draw of 0
    assert service.seconds(32, Z99) == pytest.approx(0.55)  # the p99 at the normal's 99th percentile


def test_interpolation_between_points_and_the_ends() -> None:
    mid = PROFILE.at(6)  # a third of the way from 1 to 16
    assert (mid.median_s, mid.p99_s) == pytest.approx((0.2, 0.466666), rel=1e-5)
    assert (PROFILE.at(1).median_s, PROFILE.at(40).p99_s) == (0.1, 1.0)
    assert PROFILE.max_throughput() == max(PROFILE.at(k).throughput for k in range(1, 17))
    assert PROFILE.max_throughput(4) == max(PROFILE.at(k).throughput for k in range(1, 5))


def test_the_builtin_profile_states_its_assumptions() -> None:
    profile = BUILTIN_PROFILES["r1-8xh200-short"]
    assert profile.source.startswith("assumed, not measured")
    assert profile.gpus_per_replica == 8
    assert 280 < profile.max_throughput() < 290  # 256 in flight / 0.894 s mean


def bench_file(tmp_path: Path, concurrency: int | None, latencies: list[float]) -> Path:
    """A real `seekserve bench --result-json` file whose requests took `latencies` seconds."""
    config = BenchConfig("http://127.0.0.1:1", "m", max_concurrency=concurrency)
    records = [RequestRecord(i, 0.0, e2e, (e2e / 2, e2e), 2, 16) for i, e2e in enumerate(latencies)]
    run = BenchRun(config, records, 10.0, "2026-01-01T00:00:00Z", summarize(records, 10.0))
    path = tmp_path / f"c{concurrency}.json"
    path.write_text(json.dumps(result_dict(run)))
    return path


def test_profile_from_bench_results(tmp_path: Path) -> None:
    fast = bench_file(tmp_path, 4, [0.1 + 0.001 * i for i in range(101)])  # median 0.15, p99 0.199
    slow = bench_file(tmp_path, 16, [0.3 + 0.004 * i for i in range(101)])  # median 0.5, p99 0.696
    profile = load_bench_profile([str(slow), str(fast)], gpus_per_replica=1)
    assert [p.concurrency for p in profile.points] == [4, 16]
    assert (profile.points[0].median_s, profile.points[0].p99_s) == pytest.approx((0.15, 0.199))
    assert (profile.points[1].median_s, profile.points[1].p99_s) == pytest.approx((0.5, 0.696))
    ttft = load_bench_profile([str(fast)], 1, metric="ttft")
    assert ttft.points[0].median_s == pytest.approx(0.075)
    # A run without --max-concurrency counts at its mean concurrency: 101 requests x 0.15 s / 10 s.
    open_loop = load_bench_profile([str(bench_file(tmp_path, None, [0.15] * 101))], 1)
    assert open_loop.points[0].concurrency == round(101 * 0.15 / 10)


def test_bench_profile_errors(tmp_path: Path) -> None:
    first = bench_file(tmp_path, 4, [0.1, 0.2])
    second = tmp_path / "again.json"
    second.write_text(first.read_text())
    with pytest.raises(ConfigError, match="a second run at concurrency 4; give one run per concurrency"):
        load_bench_profile([first, second], 1)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a `seekserve bench --result-json` file"):
        load_bench_profile([tmp_path / "x.json"], 1)
    with pytest.raises(ConfigError, match="cannot read the bench result"):
        load_bench_profile([tmp_path / "missing.json"], 1)
    failed = tmp_path / "failed.json"
    records = [RequestRecord(0, 0.0, 1.0, error="timeout")]
    config = BenchConfig("http://127.0.0.1:1", "m", max_concurrency=2)
    failed.write_text(json.dumps(result_dict(BenchRun(config, records, 1.0, "", summarize(records, 1.0)))))
    with pytest.raises(ConfigError, match=r"has no e2e latencies \(did every request fail\?\)"):
        load_bench_profile([failed], 1)
    with pytest.raises(ConfigError, match="latency metric 'itl' is not one of e2e, ttft"):
        load_bench_profile([first], 1, metric="itl")
    with pytest.raises(ConfigError, match="distinct concurrencies"):
        ReplicaProfile("bad", (ProfilePoint(4, 0.1, 0.2), ProfilePoint(2, 0.1, 0.2)), 1, "x")
    with pytest.raises(ConfigError, match=r"0 < median \(0.3\) <= p99 \(0.2\)"):
        ProfilePoint(1, 0.3, 0.2)
