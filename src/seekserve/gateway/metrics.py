"""`GatewayMetrics`: the gateway's Prometheus series, in the engine's conventions (`seekserve:gateway_*`).

    series                                   labels                  fed by
    gateway_requests_total                   model, backend, code    every answered request
    gateway_time_to_first_token_seconds      model, backend          first event of a stream
    gateway_e2e_request_latency_seconds      model, backend          end of every request
    gateway_retries_total                    model, backend, reason  each retry (the failed backend)
    gateway_fallbacks_total                  model, fallback         each switch down a fallback chain
    gateway_continued_streams_total          model, outcome          continued / failed (error event)
    gateway_cache_requests_total             result                  hit / miss of cacheable requests
    gateway_shed_requests_total              priority                429s from the admission queue
    gateway_rate_limited_total               key, limit              429s from rpm / tpm; 503s while the
                                                                     limits are unavailable (fail closed)
    gateway_backend_in_flight                backend                 (at scrape) own outstanding requests
    gateway_backend_healthy                  backend                 (at scrape) active health checks
    gateway_circuit_state                    backend                 (at scrape) 0 closed, 1 half-open, 2 open
    gateway_queue_waiting                                            (at scrape) requests in the queue
    gateway_event_loop_tasks                                         (at scrape) the loop's asyncio tasks
    gateway_python_threads                                           (at scrape) Python threads alive
    gateway_pool_threads                                             (at scrape) those of thread pools
    gateway_search_*                         phase, outcome, kind,   web search (search/metrics.py)
                                             reason

Label children are cached per label tuple, so the hot path does a dict lookup, not a lock and a
label check, per series.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from seekserve.gateway.backends import BackendPool
from seekserve.gateway.breaker import BreakerState
from seekserve.search.metrics import SearchMetrics

__all__ = ["GatewayMetrics"]

PREFIX = "seekserve:gateway_"
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_POOL_THREAD = re.compile(r"(asyncio_|uvloop_|ThreadPoolExecutor-\d+_)\d+$")
"""The names ThreadPoolExecutor gives its threads (as metrics/collectors.py's POOL_THREAD)."""
_STATE_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class _PoolCollector(Collector):
    def __init__(self, pool: Callable[[], BackendPool], waiting: Callable[[], int]) -> None:
        self._pool = pool
        self._waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            PREFIX + "backend_in_flight", "Requests outstanding per backend.", labels=["backend"]
        )
        healthy = GaugeMetricFamily(
            PREFIX + "backend_healthy", "1 when active checks pass.", labels=["backend"]
        )
        state = GaugeMetricFamily(
            PREFIX + "circuit_state", "0 closed, 1 half-open, 2 open.", labels=["backend"]
        )
        for backend in self._pool():
            in_flight.add_metric([backend.name], backend.in_flight)
            healthy.add_metric([backend.name], 1.0 if backend.healthy else 0.0)
            state.add_metric([backend.name], _STATE_VALUE[backend.breaker.state])
        waiting = GaugeMetricFamily(PREFIX + "queue_waiting", "Requests waiting for a free backend.")
        waiting.add_metric([], self._waiting())
        yield from (in_flight, healthy, state, waiting)
        # What a leak would grow (benchmarks/soak.py reads them). /metrics is rendered on the event
        # loop; a render without one (the registry describing itself) leaves the task count out.
        tasks = GaugeMetricFamily(PREFIX + "event_loop_tasks", "Tasks of the gateway's asyncio event loop.")
        with contextlib.suppress(RuntimeError):  # no running event loop in this thread
            tasks.add_metric([], len(asyncio.all_tasks()))
        threads = GaugeMetricFamily(PREFIX + "python_threads", "Python threads alive in the gateway.")
        threads.add_metric([], threading.active_count())
        pool = GaugeMetricFamily(PREFIX + "pool_threads", "Threads of thread pools (ThreadPoolExecutor).")
        pool.add_metric([], sum(1 for t in threading.enumerate() if _POOL_THREAD.match(t.name)))
        yield from (tasks, threads, pool)


class GatewayMetrics:
    """One registry per gateway process; `render()` is the /metrics body."""

    def __init__(self, pool: Callable[[], BackendPool], waiting: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            PREFIX + "requests", "Requests answered.", ["model", "backend", "code"], registry=reg
        )
        self._ttft = Histogram(
            PREFIX + "time_to_first_token_seconds", "Time to the first streamed event.", ["model", "backend"],
            buckets=_LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self._e2e = Histogram(
            PREFIX + "e2e_request_latency_seconds", "Time from arrival to the last byte.",
            ["model", "backend"], buckets=_LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self._retries = Counter(
            PREFIX + "retries",
            "Retries, by the backend that failed.",
            ["model", "backend", "reason"],
            registry=reg,
        )
        self._fallbacks = Counter(
            PREFIX + "fallbacks", "Switches to a fallback model.", ["model", "fallback"], registry=reg
        )
        self._continued = Counter(
            PREFIX + "continued_streams",
            "Streams moved to another backend.",
            ["model", "outcome"],
            registry=reg,
        )
        self._cache = Counter(
            PREFIX + "cache_requests", "Cacheable requests by cache result.", ["result"], registry=reg
        )
        self._shed = Counter(
            PREFIX + "shed_requests", "Requests refused by the admission queue.", ["priority"], registry=reg
        )
        self._limited = Counter(
            PREFIX + "rate_limited", "Requests refused by a key's limit.", ["key", "limit"], registry=reg
        )
        reg.register(_PoolCollector(pool, waiting))
        self._children: dict[tuple[Any, ...], Any] = {}
        self.search = SearchMetrics(reg, None, prefix=PREFIX)

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def request(self, model: str, backend: str, code: int, e2e_s: float) -> None:
        self._child(self._requests, model, backend, str(code)).inc()
        self._child(self._e2e, model, backend).observe(e2e_s)

    def first_token(self, model: str, backend: str, ttft_s: float) -> None:
        self._child(self._ttft, model, backend).observe(ttft_s)

    def retry(self, model: str, backend: str, reason: str) -> None:
        self._child(self._retries, model, backend, reason).inc()

    def fallback(self, model: str, fallback: str) -> None:
        self._child(self._fallbacks, model, fallback).inc()

    def continued(self, model: str, outcome: str) -> None:
        self._child(self._continued, model, outcome).inc()

    def cache(self, hit: bool) -> None:
        self._child(self._cache, "hit" if hit else "miss").inc()

    def shed(self, priority: int) -> None:
        self._child(self._shed, str(priority)).inc()

    def rate_limited(self, key: str, limit: str) -> None:
        self._child(self._limited, key, limit).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
