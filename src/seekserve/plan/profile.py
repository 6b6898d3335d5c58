"""How fast one replica serves: request latency at each concurrency, from `seekserve bench` runs or
from stated figures.

A profile is a list of points (concurrency, median, p99 of the latency). Between points the median
and p99 are interpolated linearly in concurrency; past the last one the last holds (a replica serves at
most that many requests at once). Each level's latency is taken as log-normal with that median and
p99: sigma = ln(p99 / median) / 2.326. A level's throughput follows from Little's law:
concurrency / mean latency.

`seekserve bench` writes one JSON result per run; each run at a fixed `--max-concurrency` gives one
point (a run without one counts at its measured mean concurrency). Pass one file per concurrency.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from seekserve.errors import ConfigError

__all__ = ["BUILTIN_PROFILES", "ProfilePoint", "ProfileService", "ReplicaProfile", "load_bench_profile"]

Z99 = 2.3263478740408408
"""The standard normal's 99th percentile."""
LATENCY_METRICS = ("e2e", "ttft")


@dataclass(frozen=True)
class ProfilePoint:
    """Latency of requests served `concurrency` at a time."""

    concurrency: int
    median_s: float
    p99_s: float

    def __post_init__(self) -> None:
        if self.concurrency < 1 or not 0 < self.median_s <= self.p99_s:
            raise ConfigError(
                f"profile point at concurrency {self.concurrency}: need concurrency >= 1 and "
                f"0 < median ({self.median_s}) <= p99 ({self.p99_s})"
            )

    @property
    def sigma(self) -> float:
        return math.log(self.p99_s / self.median_s) / Z99

    @property
    def mean_s(self) -> float:
        return self.median_s * math.exp(self.sigma**2 / 2)

    @property
    def throughput(self) -> float:
        """Requests per second at this concurrency (Little's law)."""
        return self.concurrency / self.mean_s


@dataclass(frozen=True)
class ReplicaProfile:
    """One replica: its latency by concurrency, and what it costs."""

    name: str
    points: tuple[ProfilePoint, ...]
    gpus_per_replica: int
    source: str
    """Where the figures come from (files, or the assumptions behind them)."""

    def __post_init__(self) -> None:
        levels = [p.concurrency for p in self.points]
        if not levels or levels != sorted(set(levels)):
            raise ConfigError(f"profile {self.name}: give points at distinct concurrencies, got {levels}")
        if self.gpus_per_replica < 1:
            raise ConfigError(
                f"profile {self.name}: gpus_per_replica must be >= 1, got {self.gpus_per_replica}"
            )

    @property
    def max_concurrency(self) -> int:
        return self.points[-1].concurrency

    def at(self, level: int) -> ProfilePoint:
        """The point at `level`, interpolated between measured ones."""
        points = self.points
        if level <= points[0].concurrency:
            return ProfilePoint(level, points[0].median_s, points[0].p99_s)
        for lo, hi in itertools.pairwise(points):
            if level <= hi.concurrency:
                f = (level - lo.concurrency) / (hi.concurrency - lo.concurrency)
                median = lo.median_s + f * (hi.median_s - lo.median_s)
                return ProfilePoint(level, median, max(median, lo.p99_s + f * (hi.p99_s - lo.p99_s)))
        return ProfilePoint(level, points[-1].median_s, points[-1].p99_s)

    def max_throughput(self, max_slots: int | None = None) -> float:
        """The most requests per second one replica serves at up to `max_slots` at once."""
        top = min(max_slots or self.max_concurrency, self.max_concurrency)
        return max(self.at(level).throughput for level in range(1, top + 1))


class ProfileService:
    """Service times drawn from a profile: log-normal at each level (see the module's docstring)."""

    noise: Literal["exponential", "normal"] = "normal"

    def __init__(self, profile: ReplicaProfile, max_slots: int):
        points = [profile.at(level) for level in range(1, max_slots + 1)]
        self._mu = [math.log(p.median_s) for p in points]
        self._sigma = [p.sigma for p in points]

    def seconds(self, level: int, draw: float) -> float:
        i = min(level, len(self._mu)) - 1
        return math.exp(self._mu[i] + self._sigma[i] * draw)


def _bench_point(data: dict[str, Any], path: str, metric: str) -> ProfilePoint:
    summary, config = data.get("summary"), data.get("config")
    if not isinstance(summary, dict) or not isinstance(config, dict):
        raise ConfigError(f"{path} is not a `seekserve bench --result-json` file (no summary and config)")
    dist = summary.get(metric)
    if not isinstance(dist, dict):
        raise ConfigError(f"{path} has no {metric} latencies (did every request fail?)")
    level = config.get("max_concurrency") or round(float(summary.get("mean_concurrency") or 0))
    return ProfilePoint(max(1, int(level)), float(dist["median"]), float(dist["p99"]))


def load_bench_profile(
    paths: Sequence[str | Path], gpus_per_replica: int, metric: str = "e2e"
) -> ReplicaProfile:
    """A profile from `seekserve bench` result files, one per concurrency."""
    if metric not in LATENCY_METRICS:
        raise ConfigError(f"latency metric {metric!r} is not one of {', '.join(LATENCY_METRICS)}")
    points: dict[int, ProfilePoint] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the bench result {path}: {e}") from e
        point = _bench_point(data, str(path), metric)
        if point.concurrency in points:
            raise ConfigError(
                f"{path}: a second run at concurrency {point.concurrency}; give one run per concurrency"
            )
        points[point.concurrency] = point
    names = ", ".join(str(p) for p in paths)
    return ReplicaProfile(
        "bench", tuple(points[k] for k in sorted(points)), gpus_per_replica, f"{metric} of {names}"
    )


BUILTIN_PROFILES: dict[str, ReplicaProfile] = {
    "r1-8xh200-short": ReplicaProfile(
        "r1-8xh200-short",
        (
            ProfilePoint(1, 0.11, 0.20),
            ProfilePoint(8, 0.13, 0.30),
            ProfilePoint(16, 0.15, 0.40),
            ProfilePoint(32, 0.19, 0.55),
            ProfilePoint(64, 0.28, 0.80),
            ProfilePoint(128, 0.45, 1.30),
            ProfilePoint(256, 0.80, 2.40),
        ),
        8,
        "assumed, not measured: DeepSeek-R1 FP8 on one 8xH200 node under vLLM, short requests "
        "(about 300 prompt and 8 output tokens); 150 req/s at 32 in flight is 45k prompt tokens/s, "
        "below the 73.7k input tokens/s per H800 node DeepSeek reports for its own system (docs/plan.md)",
    ),
}
"""Stated replica profiles for when no bench results are at hand."""
