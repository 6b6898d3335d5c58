"""What the engine hands back to callers, in vLLM's shapes."""

from __future__ import annotations

from dataclasses import dataclass, field

from seekserve.engine.request import Logprob

__all__ = ["CompletionOutput", "RequestMetrics", "RequestOutput"]


@dataclass
class CompletionOutput:
    """One completion of a prompt. `text` and `token_ids` are cumulative; `delta_*` are this update's."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    """"stop", "length" or "abort"; None while unfinished."""
    stop_reason: int | str | None = None
    """The stop string or stop token id that ended it, if any (None for end-of-sequence tokens)."""
    logprobs: list[Logprob] | None = None
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    delta_logprobs: list[Logprob] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class RequestMetrics:
    """Timestamps (time.monotonic) and counts of one request, for metrics and logs."""

    arrival_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    last_token_time: float | None
    finished_time: float | None
    num_cached_tokens: int
    num_preemptions: int


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics | None = None
