"""What the server reports about each finished request."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One finished API request (all its prompts and choices), as the metrics see it."""

    num_prompt_tokens: int
    num_generation_tokens: int
    finish_reasons: tuple[str, ...]
    """One per choice: "stop", "length" or "abort"; empty when the request failed before generating."""
    e2e_s: float
    """From arrival to the last byte of the answer."""
    ttft_s: float | None = None
    """From arrival to the first generated token; None when none was generated."""
    queue_s: float | None = None
    """From arrival until the engine first scheduled the request."""
    error_type: str | None = None
    """The OpenAI error code or type the request failed with, e.g. "server_overloaded"; None on success."""
