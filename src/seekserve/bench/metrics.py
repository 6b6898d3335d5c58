"""What one run measured: a record per request, and the summary of a run.

Times are seconds from the start of the run (`time.perf_counter`). A *token event* is one
streamed chunk that carries output text; its gap to the previous one is an inter-token latency
(ITL). Servers that bundle several tokens into one chunk show one gap for them, so ITL is what a
user sees and TPOT (time per output token) what the engine spends:

    TTFT = first token event - send       TPOT = (e2e - TTFT) / (output tokens - 1)
    e2e  = end of stream - send           longest gap = the largest ITL of one stream
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BenchSummary", "Distribution", "Goodput", "RequestRecord", "Stalls", "summarize"]

STALL_FACTOR = 4.0
"""The default stall threshold is this many times the median ITL of the run."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the client saw it."""

    index: int
    """Position in the run's send order."""

    start_s: float
    """When the request was sent."""

    end_s: float
    """When its stream ended (or it failed)."""

    token_times_s: tuple[float, ...] = ()
    """Arrival time of every token event."""

    output_tokens: int = 0
    """Output tokens: the server's usage count, else the number of token events."""

    prompt_tokens: int | None = None
    """Prompt tokens by the server's usage (or the dataset's exact count), if known."""

    expected_output_tokens: int | None = None
    """The output length asked for."""

    usage_reported: bool = False
    """Whether the server reported usage for this request."""

    error: str | None = None
    """None, or the error kind: http_NNN, timeout, connection, disconnected, incomplete, stream_error..."""

    error_message: str = ""
    """What the server or the transport said."""

    scheduled_s: float = 0.0
    """When the arrival process meant to send it (a later start_s means the client lagged or waited)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft_s(self) -> float | None:
        return self.token_times_s[0] - self.start_s if self.token_times_s else None

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def itls_s(self) -> list[float]:
        t = self.token_times_s
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def max_gap_s(self) -> float | None:
        return max(self.itls_s) if len(self.token_times_s) > 1 else None

    @property
    def tpot_s(self) -> float | None:
        ttft = self.ttft_s
        if ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of one metric, in seconds (percentiles linearly interpolated)."""

    count: int
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        """None for no values."""
        if not values:
            return None
        a = np.asarray(values, dtype=np.float64)
        p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99]).tolist()
        return cls(len(a), float(a.mean()), p50, p90, p95, p99, float(a.max()))


@dataclass(frozen=True)
class Stalls:
    """Inter-token stalls: the longest gap of each stream and how many streams passed the threshold."""

    threshold_s: float | None
    """Gaps above this are stalls (None when the run has no gaps)."""

    threshold_source: str
    """"given" or "4 x median ITL"."""

    longest_gap: Distribution | None
    """The longest gap of each stream with at least two token events."""

    num_streams: int
    """Streams with at least two token events."""

    num_stalled: int
    """Streams with at least one gap above the threshold."""

    @property
    def stalled_share(self) -> float:
        return self.num_stalled / self.num_streams if self.num_streams else 0.0


@dataclass(frozen=True)
class Goodput:
    """Completed requests that met every SLO, per second of the run."""

    slos: dict[str, float]
    num_good: int
    rate: float


@dataclass(frozen=True)
class BenchSummary:
    """Everything a run reports."""

    num_requests: int
    num_completed: int
    num_failed: int
    errors: dict[str, int]
    duration_s: float
    request_throughput: float
    """Completed requests per second."""
    output_token_throughput: float
    total_token_throughput: float
    """(prompt + output tokens) per second, where the server reported prompt tokens."""
    prompt_tokens: int
    output_tokens: int
    mean_concurrency: float
    """Mean requests in flight (sum of e2e latencies / duration)."""
    ttft: Distribution | None
    tpot: Distribution | None
    itl: Distribution | None
    e2e: Distribution | None
    stalls: Stalls
    goodput: Goodput | None
    num_length_mismatch: int
    """Completed requests whose output token count differs from the length asked for."""
    num_usage_missing: int
    """Completed requests the server sent no usage for (their tokens were counted from events)."""
    send_lag: Distribution | None = None
    """How late requests went out against the arrival schedule, waiting for a concurrency slot included."""
    achieved_request_rate: float = 0.0
    """Requests sent per second between the first and the last send."""
    error_examples: dict[str, str] = field(default_factory=dict)
    """One message per error kind."""


def stall_threshold(records: Sequence[RequestRecord], given_s: float | None) -> tuple[float | None, str]:
    """The stall threshold in effect and where it came from."""
    if given_s is not None:
        return given_s, "given"
    gaps = [g for r in records if r.ok for g in r.itls_s]
    if not gaps:
        return None, f"{STALL_FACTOR:g} x median ITL"
    return STALL_FACTOR * statistics.median(gaps), f"{STALL_FACTOR:g} x median ITL"


def summarize_stalls(records: Sequence[RequestRecord], given_s: float | None) -> Stalls:
    threshold, source = stall_threshold(records, given_s)
    longest = [g for r in records if r.ok and (g := r.max_gap_s) is not None]
    stalled = sum(1 for g in longest if threshold is not None and g > threshold)
    return Stalls(threshold, source, Distribution.of(longest), len(longest), stalled)


def meets_slos(record: RequestRecord, slos: Mapping[str, float]) -> bool:
    """Whether a completed request met every SLO (a missing figure, e.g. no TTFT, fails it)."""
    values = {"ttft": record.ttft_s, "itl": record.max_gap_s, "tpot": record.tpot_s, "e2e": record.e2e_s}
    for metric, limit in slos.items():
        value = values[metric]
        if metric in ("itl", "tpot") and value is None and record.ttft_s is not None:
            value = 0.0  # a one-token stream has no gaps to miss
        if value is None or value > limit:
            return False
    return True


def summarize(
    records: Sequence[RequestRecord],
    duration_s: float,
    slos: Mapping[str, float] | None = None,
    stall_threshold_s: float | None = None,
) -> BenchSummary:
    """The summary of a run of `duration_s` seconds."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    errors = Counter(r.error for r in failed if r.error)
    examples = {r.error: r.error_message for r in reversed(failed) if r.error}
    output_tokens = sum(r.output_tokens for r in done)
    prompt_tokens = sum(r.prompt_tokens or 0 for r in done)
    per_s = 1.0 / duration_s if duration_s > 0 else 0.0
    goodput = None
    if slos:
        good = sum(1 for r in done if meets_slos(r, slos))
        goodput = Goodput(dict(slos), good, good * per_s)
    starts = sorted(r.start_s for r in records)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    return BenchSummary(
        num_requests=len(records),
        num_completed=len(done),
        num_failed=len(failed),
        errors=dict(sorted(errors.items())),
        duration_s=duration_s,
        request_throughput=len(done) * per_s,
        output_token_throughput=output_tokens * per_s,
        total_token_throughput=(output_tokens + prompt_tokens) * per_s,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        mean_concurrency=sum(r.e2e_s for r in records) * per_s,
        ttft=Distribution.of([t for r in done if (t := r.ttft_s) is not None]),
        tpot=Distribution.of([t for r in done if (t := r.tpot_s) is not None]),
        itl=Distribution.of([g for r in done for g in r.itls_s]),
        e2e=Distribution.of([r.e2e_s for r in done]),
        stalls=summarize_stalls(records, stall_threshold_s),
        goodput=goodput,
        num_length_mismatch=sum(
            1
            for r in done
            if r.expected_output_tokens is not None and r.output_tokens != r.expected_output_tokens
        ),
        num_usage_missing=sum(1 for r in done if not r.usage_reported),
        send_lag=Distribution.of([r.start_s - r.scheduled_s for r in records]),
        achieved_request_rate=(len(starts) - 1) / span if span > 0 else 0.0,
        error_examples=dict(sorted(examples.items())),
    )
