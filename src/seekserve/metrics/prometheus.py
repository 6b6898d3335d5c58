"""`ServerMetrics`: the Prometheus registry of one serving process.

Engine gauges are read from the engine's latest stats snapshot when Prometheus scrapes, so a
scrape never waits on the engine thread. Request metrics are recorded once per finished API
request through `record`. Every series carries a `model_name` label, as vLLM's do, so dashboards
written for vLLM work after renaming the `vllm:` prefix to `seekserve:`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from seekserve.engine.llm_engine import EngineStats
from seekserve.metrics.records import RequestRecord

__all__ = ["ServerMetrics"]

PREFIX = "seekserve:"
_LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
_E2E_BUCKETS_S = (
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0,
    60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 2400.0,
)  # fmt: skip


class _EngineCollector(Collector):
    """Gauges and counters taken from the engine's stats snapshot at scrape time."""

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None]) -> None:
        self._model_name = model_name
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:  # the model is still loading
            return
        label = [self._model_name]
        gauges = (
            ("num_requests_running", "Requests in the running batch.", stats.num_running),
            ("num_requests_waiting", "Requests waiting to be admitted.", stats.num_waiting),
            ("kv_cache_usage_perc", "Share of KV cache blocks in use, from 0 to 1.", stats.kv_cache_usage),
        )
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(PREFIX + name, doc, labels=["model_name"])
            gauge.add_metric(label, value)
            yield gauge
        counters = (
            ("num_preemptions", "Requests preempted for lack of KV blocks.", stats.num_preemptions),
            (
                "prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache.",
                stats.prefix_cache_queries,
            ),
            ("prefix_cache_hits", "Prompt tokens found in the prefix cache.", stats.prefix_cache_hits),
        )
        for name, doc, value in counters:
            counter = CounterMetricFamily(PREFIX + name, doc, labels=["model_name"])
            counter.add_metric(label, value)
            yield counter


class ServerMetrics:
    """The metrics of one served model; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None]) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(model_name, stats))
        labels = ["model_name"]

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=self.registry)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, [*labels, *extra], registry=self.registry)

        self._ttft = histogram(
            "time_to_first_token_seconds", "Arrival to first token.", _LATENCY_BUCKETS_S
        ).labels(model_name)
        self._e2e = histogram(
            "e2e_request_latency_seconds", "Arrival to the end of the answer.", _E2E_BUCKETS_S
        ).labels(model_name)
        self._queue = histogram(
            "request_queue_time_seconds", "Arrival to first scheduling.", _LATENCY_BUCKETS_S
        ).labels(model_name)
        self._prompt_tokens = counter("prompt_tokens", "Prompt tokens of finished requests.").labels(
            model_name
        )
        self._generation_tokens = counter("generation_tokens", "Generated tokens.").labels(model_name)
        self._success = counter("request_success", "Finished choices by reason.", ("finished_reason",))
        self._errors = counter("request_errors", "Requests that failed, by error.", ("error_type",))

    def record(self, record: RequestRecord) -> None:
        """Count one finished API request; call once per request, whether it succeeded or not.

        Latencies are observed for successful requests only, so a burst of rejected requests
        does not pull the latency percentiles down.
        """
        self._prompt_tokens.inc(record.num_prompt_tokens)
        self._generation_tokens.inc(record.num_generation_tokens)
        for reason in record.finish_reasons:
            self._success.labels(self.model_name, reason).inc()
        if record.error_type is not None:
            self._errors.labels(self.model_name, record.error_type).inc()
            return
        self._e2e.observe(record.e2e_s)
        if record.ttft_s is not None:
            self._ttft.observe(record.ttft_s)
        if record.queue_s is not None:
            self._queue.observe(record.queue_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
