"""`BenchConfig`: what one load-generator run sends, how fast, and what it counts as good."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from seekserve.errors import ConfigError

__all__ = ["DEFAULT_NUM_REQUESTS", "SLO_METRICS", "Arrival", "BenchConfig", "Endpoint", "parse_slo"]

Endpoint = Literal["chat", "completions"]
Arrival = Literal["all-at-once", "constant", "poisson", "gamma", "trace"]
ARRIVAL_NAMES: tuple[str, ...] = ("all-at-once", "constant", "poisson", "gamma", "trace")
SLO_METRICS: dict[str, str] = {
    "ttft": "time to first token of the request",
    "itl": "every inter-token gap of the request (its longest gap)",
    "tpot": "the request's mean time per output token after the first",
    "e2e": "end-to-end latency of the request",
}
DEFAULT_NUM_REQUESTS = 100


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run against an OpenAI-compatible server."""

    base_url: str
    """Server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted)."""

    model: str
    """Model name sent in every request (as the server lists it under /v1/models)."""

    endpoint: Endpoint = "chat"
    """"chat" (/v1/chat/completions) or "completions" (/v1/completions)."""

    num_requests: int | None = None
    """Requests to send; unset, 100 unless a duration is given (then as many as fit)."""

    duration_s: float | None = None
    """Stop sending new requests after this many seconds; requests in flight still finish."""

    max_concurrency: int | None = None
    """Most requests in flight at once; later arrivals wait for a slot. Unset is unbounded."""

    request_rate: float = math.inf
    """Mean requests per second of the arrival process; inf sends all requests at once."""

    arrival: Arrival | None = None
    """all-at-once, constant, poisson, gamma, or trace (the dataset's arrival_s); unset: poisson when
    a request rate is given, else all-at-once."""

    burstiness: float = 1.0
    """Shape of gamma arrivals: 1 is Poisson, below 1 burstier, above 1 more even (CV = 1/sqrt(b))."""

    dataset: str = "random"
    """random, shared-prefix[:N,LEN] (N system prompts of LEN tokens, default 8,512, then a question of
    input_len tokens), jsonl:PATH (one JSON object per line) or sharegpt:PATH (ShareGPT JSON)."""

    input_len: str = "256"
    """Prompt length of the random dataset (the question after the prefix of shared-prefix) in tokens:
    N, uniform:LO,HI, normal:MEAN,STD, exponential:MEAN."""

    output_len: str | None = None
    """Output tokens per request (same forms); unset: the dataset's own lengths, else 128."""

    tokenizer: str | None = None
    """tokenizer.json (or a directory holding one) for exact prompt lengths; unset, lengths are estimates."""

    slos: dict[str, float] = field(default_factory=dict)
    """Service-level objectives in seconds by metric (ttft, itl, tpot, e2e) for goodput."""

    stall_threshold_s: float | None = None
    """A gap longer than this is a stall; unset: 4 x the median inter-token latency of the run."""

    ignore_eos: bool = True
    """Ask for exactly the output length (ignore_eos, min_tokens); turn off for servers that reject them."""

    temperature: float = 0.0
    """Sampling temperature sent with every request; 0 is greedy."""

    top_p: float = 1.0
    """Nucleus sampling's top_p sent with every request (DeepSeek recommends 0.95 with temperature
    0.6); 1 sends none."""

    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields merged into every request body."""

    api_key: str | None = None
    """Bearer token for the Authorization header."""

    request_timeout_s: float = 600.0
    """A request still unfinished after this long fails with the error kind "timeout"."""

    num_warmup: int = 1
    """Requests sent one by one before the timed run (not measured); a failure stops the run early."""

    seed: int = 0
    """Seed of the arrival times, lengths and prompts."""

    label: str | None = None
    """A name for this run, kept in the JSON result."""

    def __post_init__(self) -> None:
        self._check_target()
        for name in ("stall_threshold_s", "request_timeout_s", "duration_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name}={value} is invalid: give a positive number of seconds")
        self._check_load()
        for metric, limit in self.slos.items():
            parse_slo(f"{metric}={limit}")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature} is invalid: it must be at least 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} is invalid: it must be in (0, 1]; 1 turns it off")
        if self.num_warmup < 0:
            raise ConfigError(f"num_warmup={self.num_warmup} is invalid: give 0 or more")
        from seekserve.bench.datasets import check_dataset_spec
        from seekserve.bench.lengths import parse_length

        check_dataset_spec(self.dataset)
        parse_length(self.input_len, "input_len")
        if self.output_len is not None:
            parse_length(self.output_len, "output_len")

    def _check_target(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url={self.base_url!r} is invalid: give e.g. http://127.0.0.1:8000")
        if not self.model:
            raise ConfigError("model is empty: give the model name the server serves (see its /v1/models)")
        if self.endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint={self.endpoint!r} is not supported: use chat or completions")

    def _check_load(self) -> None:
        for name in ("num_requests", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value} is invalid: it must be at least 1 (or unset)")
        if not self.request_rate > 0:
            raise ConfigError(f"request_rate={self.request_rate} is invalid: give requests/s > 0, or inf")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise ConfigError(f"burstiness={self.burstiness} is invalid: it must be a positive number")
        if self.arrival is not None and self.arrival not in ARRIVAL_NAMES:
            raise ConfigError(f"arrival={self.arrival!r} is unknown: use one of {', '.join(ARRIVAL_NAMES)}")
        arrival, timed = self.resolved_arrival, ("constant", "poisson", "gamma")
        if arrival in timed and math.isinf(self.request_rate):
            raise ConfigError(f"arrival={arrival} needs a finite request_rate: give --request-rate")
        if arrival not in timed and not math.isinf(self.request_rate):
            raise ConfigError(
                f"request_rate={self.request_rate:g} has no meaning with arrival={arrival}: "
                f"drop --request-rate or use --arrival poisson/constant/gamma"
            )
        if self.burstiness != 1.0 and arrival != "gamma":
            raise ConfigError(
                f"burstiness={self.burstiness:g} applies to gamma arrivals: add --arrival gamma"
            )
        unbounded = self.max_requests is None and self.max_concurrency is None
        if arrival == "all-at-once" and unbounded:
            raise ConfigError(
                "a duration with all-at-once arrivals and no concurrency limit would start requests without "
                "end: give --max-concurrency (a closed loop), --num-requests or --request-rate"
            )

    @property
    def resolved_arrival(self) -> str:
        """The arrival process in effect (the default resolved)."""
        if self.arrival is not None:
            return self.arrival
        return "all-at-once" if math.isinf(self.request_rate) else "poisson"

    @property
    def max_requests(self) -> int | None:
        """The request count that ends the run; None when only the duration does."""
        if self.num_requests is not None:
            return self.num_requests
        return None if self.duration_s is not None else DEFAULT_NUM_REQUESTS


def parse_slo(spec: str) -> tuple[str, float]:
    """Parse "ttft=0.5" or "itl=100ms" into ("ttft", 0.5) / ("itl", 0.1): seconds by metric."""
    metric, sep, value = spec.partition("=")
    metric = metric.strip().lower()
    if not sep or metric not in SLO_METRICS:
        raise ConfigError(
            f"SLO {spec!r} is invalid: write METRIC=SECONDS with METRIC one of {', '.join(SLO_METRICS)}, "
            f"e.g. ttft=0.5 or itl=100ms"
        )
    value = value.strip().lower()
    scale = 1e-3 if value.endswith("ms") else 1.0
    try:
        seconds = float(value.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        raise ConfigError(f"SLO {spec!r}: {value!r} is not a number of seconds (e.g. 0.5 or 500ms)") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"SLO {spec!r} is invalid: the limit must be a positive number of seconds")
    return metric, seconds
