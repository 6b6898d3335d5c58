"""Prometheus series of web-search grounding, registered in the caller's registry: the server's
(ServerMetrics.registry: `seekserve:search_*` with its `model_name` label) or the gateway's
(`seekserve:gateway_search_*`, no model label: one gateway searches for every model).

    search_latency_seconds{phase}        queries | search | fetch | extract | total, per grounded request
                                         (queries: writing them with a model, where configured)
    search_results                       results the provider returned, per search
    search_requests_total{outcome}       grounded | empty | degraded | disabled
    search_errors_total{kind}            the SearchError class that made a request degrade
    search_budget_exhaustions_total      requests whose total search budget ran out
    search_fetch_failures_total{reason}  pages not had: a refusal rule (private, metadata, ...) or a
                                         FetchError class (FetchTimeout, PageTooLarge, ...)
    search_query_writes_total{outcome}   written | fallback: a model's queries used, or the last
                                         user message searched because it failed or was slow
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

from seekserve.search.grounding import Grounding

__all__ = ["SEARCH_BUCKETS_S", "Outcome", "SearchMetrics"]

SEARCH_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 10.0, 30.0,
)  # fmt: skip
"""1 ms (a cached local index) to 30 s, densest below the default 3 s budget."""
PREFIX = "seekserve:"
"""As seekserve.metrics.collectors.PREFIX, not imported from there: that module imports the engine."""
RESULT_BUCKETS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0)
Outcome = Literal["grounded", "empty", "degraded", "disabled"]


class SearchMetrics:
    """The search series of one served model; `observe` once per request that asked for search."""

    def __init__(self, registry: CollectorRegistry, model_name: str | None, prefix: str = PREFIX) -> None:
        labels = ["model_name"] if model_name is not None else []
        self._values: tuple[str, ...] = (model_name,) if model_name is not None else ()
        self.latency = Histogram(
            prefix + "search_latency_seconds",
            "Time of each grounding phase (search, fetch, extract) and of the whole (total).",
            [*labels, "phase"],
            buckets=SEARCH_BUCKETS_S,
            registry=registry,
        )
        results = Histogram(
            prefix + "search_results",
            "Results the search provider returned for a query.",
            labels,
            buckets=RESULT_BUCKETS,
            registry=registry,
        )
        self.results = results.labels(*self._values) if labels else results

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(prefix + name, doc, [*labels, *extra], registry=registry)

        self.requests = counter("search_requests", "Requests that asked for search, by outcome.", "outcome")
        self.errors = counter("search_errors", "Requests answered without search, by error class.", "kind")
        exhaustions = counter("search_budget_exhaustions", "Requests whose total search budget ran out.")
        self.exhaustions = exhaustions.labels(*self._values) if labels else exhaustions
        self.fetch_failures = counter(
            "search_fetch_failures", "Result pages not fetched, by refusal rule or error class.", "reason"
        )
        self.query_writes = counter(
            "search_query_writes", "Queries asked of a model: used (written) or not (fallback).", "outcome"
        )

    def observe(self, grounding: Grounding) -> Outcome:
        """Count one grounding; its outcome."""
        name = self._values
        t = grounding.timings
        phases = (
            ("queries", t.queries_s),
            ("search", t.search_s),
            ("fetch", t.fetch_s),
            ("extract", t.extract_s),
        )
        for phase, seconds in phases:
            if seconds > 0:
                self.latency.labels(*name, phase).observe(seconds)
        if grounding.asked_model:
            written = "fallback" if grounding.query_error is not None else "written"
            self.query_writes.labels(*name, written).inc()
        self.latency.labels(*name, "total").observe(t.total_s)
        for reason in grounding.fetch_failures:
            self.fetch_failures.labels(*name, reason).inc()
        outcome: Outcome = "grounded" if grounding.sources else "empty"
        if grounding.error_kind is not None:
            outcome = "degraded"
            self.errors.labels(*name, grounding.error_kind).inc()
            if grounding.error_kind == "SearchBudgetExceeded":
                self.exhaustions.inc()
        else:
            self.results.observe(grounding.num_results)
        self.requests.labels(*name, outcome).inc()
        return outcome

    def disabled(self) -> None:
        """Count a request that asked for search on a server where it is off."""
        self.requests.labels(*self._values, "disabled").inc()
