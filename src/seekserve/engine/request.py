"""Request state: what a request asked for and how far the engine has got with it.

A request's tokens are its prompt followed by its output. `num_computed_tokens` of them have
K/V in the cache; the engine computes the rest in chunks and samples when none are left:

    token_ids:  [ p0 p1 p2 p3 p4 | o0 o1 ]
                  ^^^^^^^^^^^^^^^^^^^^^           num_computed_tokens = 6 (decode: one left)
    block_ids:  [ b7 | b2 ]    block_size = 4: slot of token i = block_ids[i // 4] * 4 + i % 4
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from seekserve.engine.sampling_params import SamplingParams

__all__ = ["FinishReason", "Logprob", "Request", "RequestStatus", "RequestTimes"]


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(enum.StrEnum):
    """Why a request ended; the values are OpenAI's `finish_reason` strings."""

    STOP = "stop"
    """End-of-sequence, a stop token id or a stop string."""
    LENGTH = "length"
    """`max_tokens` or the context length was reached."""
    ABORT = "abort"
    """Aborted by the caller."""


@dataclass(frozen=True)
class Logprob:
    """Log-probability of one generated token and the most likely alternatives at its position."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]
    """(token id, log-probability) pairs, most likely first."""


@dataclass
class RequestTimes:
    """Monotonic timestamps (time.monotonic) of a request's life, for metrics."""

    arrival: float = field(default_factory=time.monotonic)
    first_scheduled: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None


class Request:
    """One sequence being generated. Owned by the engine thread; never shared across threads."""

    def __init__(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        eos_token_ids: frozenset[int],
        prompt: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.prompt = prompt
        self.params = params
        self.num_prompt_tokens = len(prompt_token_ids)
        self.token_ids: list[int] = list(prompt_token_ids)
        self.num_computed_tokens = 0
        self.block_ids: list[int] = []
        self.block_hashes: list[bytes] = []
        """Chained hashes of the request's full blocks, in order (prefix caching)."""
        self.num_cached_tokens = 0
        """Prompt tokens whose K/V came from the prefix cache at admission."""
        self.status = RequestStatus.WAITING
        self.finish_reason: FinishReason | None = None
        self.stop_reason: int | str | None = None
        self.num_preemptions = 0
        self.logprobs: list[Logprob] = []
        self.times = RequestTimes()
        self.stop_token_ids = frozenset(params.stop_token_ids) | (
            frozenset() if params.ignore_eos else eos_token_ids
        )
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator()
            self.generator.manual_seed(params.seed)

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.token_ids[: self.num_prompt_tokens]

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    @property
    def is_prefilling(self) -> bool:
        """True while more than the last token lacks K/V (a prompt or a recompute after preemption)."""
        return self.num_tokens - self.num_computed_tokens > 1

    def __repr__(self) -> str:
        return (
            f"Request({self.request_id!r}, status={self.status.value}, tokens={self.num_tokens}, "
            f"computed={self.num_computed_tokens}, blocks={self.block_ids})"
        )
