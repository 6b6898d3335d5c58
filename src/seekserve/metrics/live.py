"""`LiveStats`: the figures of the built-in dashboard, one `Frame` per sampling interval.

Each tick reads the same registry Prometheus scrapes and turns it into what an operator reads at a
glance: rates over the last interval, latency percentiles over the last `window_s` (estimated from
the histograms' bucket increases exactly as PromQL's `histogram_quantile`, so the dashboard and
Grafana agree), the engine's load, and the process's and GPUs' use. The last `history` frames are
kept for the sparklines; `GET /dashboard/data?since=N` sends those newer than frame N.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from seekserve.metrics.collectors import PREFIX
from seekserve.metrics.hardware import GpuSample
from seekserve.metrics.quantile import histogram_quantile

__all__ = ["Frame", "LiveStats", "Percentiles"]

_LATENCIES = {
    "ttft": PREFIX + "time_to_first_token_seconds",
    "itl": PREFIX + "inter_token_latency_seconds",
    "e2e": PREFIX + "e2e_request_latency_seconds",
}
_COUNTERS = {
    "generation_tokens": PREFIX + "generation_tokens_total",
    "prompt_tokens": PREFIX + "prompt_tokens_total",
    "requests": PREFIX + "request_success_total",
    "errors": PREFIX + "request_errors_total",
    "preemptions": PREFIX + "num_preemptions_total",
    "prefix_queries": PREFIX + "prefix_cache_queries_total",
    "prefix_hits": PREFIX + "prefix_cache_hits_total",
    "cpu_seconds": "process_cpu_seconds_total",
}
_GAUGES = {
    "num_running": PREFIX + "num_requests_running",
    "num_waiting": PREFIX + "num_requests_waiting",
    "kv_cache_usage": PREFIX + "kv_cache_usage_perc",
    "resident_memory_bytes": "process_resident_memory_bytes",
}


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Frame:
    """The dashboard's figures at one moment; None where there is nothing to show yet."""

    seq: int
    """Frame number, from 0; the page asks for frames after the last one it has."""
    time: float
    """Unix time of the sample."""
    generation_tokens_per_s: float
    prompt_tokens_per_s: float
    requests_per_s: float
    """Requests that finished on their own, per second."""
    errors_per_s: float
    preemptions_per_s: float
    prefix_cache_hit_rate: float | None
    """Share of prompt tokens found in the prefix cache over the window; None without lookups."""
    num_running: float | None
    num_waiting: float | None
    kv_cache_usage: float | None
    ttft: Percentiles | None
    itl: Percentiles | None
    e2e: Percentiles | None
    cpu_cores: float | None
    """Process CPU time per second of wall time (1.0 is one core busy)."""
    resident_memory_bytes: float | None
    gpus: tuple[GpuSample, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Reading:
    time: float
    """time.monotonic() of the reading."""
    values: dict[str, float]
    """Counters and gauges by short name, summed over their labels."""
    buckets: dict[str, tuple[list[float], list[float]]]
    """Latency histograms by short name: (bucket upper bounds, cumulative counts)."""


class LiveStats:
    """Turns registry readings into frames; keeps `history` frames and `window` readings."""

    def __init__(
        self,
        registry: CollectorRegistry,
        gpus: Callable[[], Sequence[GpuSample]],
        history: int,
        window: int,
    ) -> None:
        self._registry = registry
        self._gpus = gpus
        self._frames: collections.deque[Frame] = collections.deque(maxlen=history)
        self._readings: collections.deque[_Reading] = collections.deque(maxlen=window + 1)
        self._seq = 0

    def tick(self, now: float, unix_time: float) -> Frame:
        """Read the registry now (time.monotonic() `now`) and append the resulting frame."""
        reading = _read(self._registry, now)
        previous = self._readings[-1] if self._readings else reading
        self._readings.append(reading)  # the oldest kept reading is now `window` intervals back
        frame = _frame(self._seq, unix_time, reading, previous, self._readings[0], tuple(self._gpus()))
        self._frames.append(frame)
        self._seq += 1
        return frame

    def frames(self, since: int | None = None) -> list[Frame]:
        """Kept frames numbered above `since` (all kept frames when None)."""
        return [f for f in self._frames if since is None or f.seq > since]


def _read(registry: CollectorRegistry, now: float) -> _Reading:
    names = {v: k for k, v in (*_COUNTERS.items(), *_GAUGES.items())}
    bucket_names = {v + "_bucket": k for k, v in _LATENCIES.items()}
    values: dict[str, float] = {}
    buckets: dict[str, tuple[list[float], list[float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in names:
                key = names[sample.name]
                values[key] = values.get(key, 0.0) + sample.value
            elif sample.name in bucket_names:
                bounds, counts = buckets.setdefault(bucket_names[sample.name], ([], []))
                bounds.append(float(sample.labels["le"]))
                counts.append(sample.value)
    return _Reading(now, values, buckets)


def _frame(
    seq: int,
    unix_time: float,
    now: _Reading,
    previous: _Reading,
    oldest: _Reading,
    gpus: tuple[GpuSample, ...],
) -> Frame:
    def rate(key: str, since: _Reading = previous) -> float:
        elapsed = now.time - since.time
        if elapsed <= 0:
            return 0.0
        return max(0.0, now.values.get(key, 0.0) - since.values.get(key, 0.0)) / elapsed

    queries = now.values.get("prefix_queries", 0.0) - oldest.values.get("prefix_queries", 0.0)
    hits = now.values.get("prefix_hits", 0.0) - oldest.values.get("prefix_hits", 0.0)
    cpu = rate("cpu_seconds") if "cpu_seconds" in now.values and now is not previous else None
    return Frame(
        seq=seq,
        time=unix_time,
        generation_tokens_per_s=rate("generation_tokens"),
        prompt_tokens_per_s=rate("prompt_tokens"),
        requests_per_s=rate("requests"),
        errors_per_s=rate("errors"),
        preemptions_per_s=rate("preemptions"),
        prefix_cache_hit_rate=hits / queries if queries > 0 else None,
        num_running=now.values.get("num_running"),
        num_waiting=now.values.get("num_waiting"),
        kv_cache_usage=now.values.get("kv_cache_usage"),
        ttft=_percentiles(now, oldest, "ttft"),
        itl=_percentiles(now, oldest, "itl"),
        e2e=_percentiles(now, oldest, "e2e"),
        cpu_cores=cpu,
        resident_memory_bytes=now.values.get("resident_memory_bytes"),
        gpus=gpus,
    )


def _percentiles(now: _Reading, oldest: _Reading, key: str) -> Percentiles | None:
    """p50/p95/p99 of the observations between two readings; None without any."""
    bounds, counts = now.buckets.get(key, ([], []))
    if not bounds:
        return None
    old = oldest.buckets.get(key, (bounds, [0.0] * len(counts)))[1]
    increase = [max(0.0, c - o) for c, o in zip(counts, old, strict=True)]
    values = [histogram_quantile(q, bounds, increase) for q in (0.5, 0.95, 0.99)]
    if any(v is None or math.isnan(v) for v in values):
        return None
    p50, p95, p99 = (float(v) for v in values if v is not None)
    return Percentiles(p50, p95, p99)
