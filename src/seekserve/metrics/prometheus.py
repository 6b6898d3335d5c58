"""`ServerMetrics`: the Prometheus registry of one serving process, with vLLM's names and meanings.

Every series carries a `model_name` label and the `seekserve:` prefix, so dashboards and
autoscalers written for vLLM work after renaming `vllm:` to `seekserve:`. A "request" in the
per-request histograms is one sequence, as in vLLM: a choice of one prompt (`n` choices of a
prompt, and each prompt of a batched completions request, count separately).

    fed by                      series
    RequestTracker (per step)   time_to_first_token, inter_token_latency, prompt/generation_tokens
    RequestTracker (finished)   e2e, queue, prefill, decode, time per output token, request_*_tokens,
                                request_success{finished_reason}
    access log (per request)    request_errors{type}
    engine stats (scrape)       num_requests_running/waiting, kv_cache_usage_perc, num_preemptions,
                                prefix_cache_queries/hits, kv_cache_used_blocks/block_references/
                                cached_blocks, kv_cache_audit_failures
    the process (scrape)        event_loop_tasks, python_threads
    hardware sampler (scrape)   gpu_* per GPU; process_* (CPU seconds, resident memory)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from seekserve.engine.async_engine import EngineStats
from seekserve.metrics.collectors import PREFIX, EngineCollector, GpuCollector, RuntimeCollector
from seekserve.metrics.hardware import GpuSample

__all__ = [
    "ERROR_TYPES",
    "FINISHED_REASONS",
    "ErrorType",
    "FinishedSequence",
    "ServerMetrics",
]

ErrorType = Literal["invalid_request", "rejected_overload", "timeout", "aborted", "internal"]
ERROR_TYPES: tuple[ErrorType, ...] = get_args(ErrorType)
FINISHED_REASONS = ("stop", "length")
"""The reasons a sequence finishes on its own; an aborted one ends its request with an error instead."""

TTFT_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
"""1 ms to 60 s: a cached short prompt on a GPU to a long prompt behind a queue."""
ITL_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
"""1 ms to 5 s, densest where decode steps of a loaded GPU fall (10 to 50 ms)."""
REQUEST_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 7.5, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
)  # fmt: skip
"""10 ms to 20 min for whole requests and their phases; edges at 1, 1.5 and 2 s around the SLO."""
TOKEN_BUCKETS = tuple(float(m * 10**e) for e in range(7) for m in (1, 2, 5))
"""1, 2, 5, 10, ... 5,000,000 tokens, as vLLM's 1-2-5 series."""


@dataclass(frozen=True)
class FinishedSequence:
    """The timings (time.monotonic) and sizes of one sequence that finished on its own."""

    finished_reason: str
    arrival_time: float
    first_scheduled_time: float
    first_token_time: float
    last_token_time: float
    finished_time: float
    num_prompt_tokens: int
    num_generation_tokens: int


class ServerMetrics:
    """The metrics of one served model; `render()` is the /metrics body.

    Methods are called from the event loop; the collectors read snapshots that other threads
    replace whole, so a scrape never waits on the engine or on NVML.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None]) -> None:
        # No `*_created` series: they double the series count and no rule or dashboard reads them.
        disable_created_metrics()
        self.model_name = model_name
        self.gpus: tuple[GpuSample, ...] = ()
        """The latest GPU readings, replaced whole by the hardware sampler (`Monitor`)."""
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(model_name, stats))
        self.registry.register(GpuCollector(model_name, lambda: self.gpus))
        self.registry.register(RuntimeCollector())
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            family = Histogram(PREFIX + name, doc, ["model_name"], buckets=buckets, registry=self.registry)
            return family.labels(model_name)

        self.ttft = histogram(
            "time_to_first_token_seconds", "Arrival to the first generated token.", TTFT_BUCKETS_S
        )
        self.itl = histogram(
            "inter_token_latency_seconds", "Time between consecutive generated tokens.", ITL_BUCKETS_S
        )
        self.time_per_output_token = histogram(
            "request_time_per_output_token_seconds",
            "Decode time of a request divided by its generated tokens after the first.",
            ITL_BUCKETS_S,
        )
        self.e2e = histogram(
            "e2e_request_latency_seconds", "Arrival to the end of the request.", REQUEST_BUCKETS_S
        )
        self.queue_time = histogram(
            "request_queue_time_seconds", "Arrival to first scheduled.", REQUEST_BUCKETS_S
        )
        self.prefill_time = histogram(
            "request_prefill_time_seconds", "First scheduled to first token.", REQUEST_BUCKETS_S
        )
        self.decode_time = histogram(
            "request_decode_time_seconds", "First token to last token.", REQUEST_BUCKETS_S
        )
        self.request_prompt_tokens = histogram(
            "request_prompt_tokens", "Prompt tokens of finished requests.", TOKEN_BUCKETS
        )
        self.request_generation_tokens = histogram(
            "request_generation_tokens", "Generated tokens of finished requests.", TOKEN_BUCKETS
        )
        self._counters(model_name)

    def _counters(self, model_name: str) -> None:
        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(PREFIX + name, doc, ["model_name", *extra], registry=self.registry)

        self.prompt_tokens = counter("prompt_tokens", "Prefilled prompt tokens.").labels(model_name)
        self.generation_tokens = counter("generation_tokens", "Generated tokens.").labels(model_name)
        success = counter("request_success", "Requests that finished, by reason.", "finished_reason")
        errors = counter("request_errors", "API requests that failed, by kind of error.", "type")
        # Every label value exists from the start, so rates and ratios are 0 rather than absent.
        self.success = {reason: success.labels(model_name, reason) for reason in FINISHED_REASONS}
        self.errors = {kind: errors.labels(model_name, kind) for kind in ERROR_TYPES}

    def first_token(self, ttft_s: float, num_prompt_tokens: int) -> None:
        """A sequence produced its first token: its prompt has been prefilled."""
        self.ttft.observe(ttft_s)
        self.prompt_tokens.inc(num_prompt_tokens)
        self.generation_tokens.inc()

    def next_tokens(self, gap_s: float, num_tokens: int) -> None:
        """`num_tokens` more tokens of a sequence, `gap_s` apart on average."""
        self.generation_tokens.inc(num_tokens)
        for _ in range(num_tokens):
            self.itl.observe(gap_s)

    def finished(self, seq: FinishedSequence) -> None:
        """A sequence finished with "stop" or "length"."""
        self.e2e.observe(seq.finished_time - seq.arrival_time)
        self.queue_time.observe(seq.first_scheduled_time - seq.arrival_time)
        self.prefill_time.observe(seq.first_token_time - seq.first_scheduled_time)
        decode_s = seq.last_token_time - seq.first_token_time
        self.decode_time.observe(decode_s)
        if seq.num_generation_tokens > 1:
            self.time_per_output_token.observe(decode_s / (seq.num_generation_tokens - 1))
        self.request_prompt_tokens.observe(seq.num_prompt_tokens)
        self.request_generation_tokens.observe(seq.num_generation_tokens)
        self.success[seq.finished_reason].inc()

    def error(self, kind: ErrorType) -> None:
        """An API request failed (once per request, however many sequences it had)."""
        self.errors[kind].inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
