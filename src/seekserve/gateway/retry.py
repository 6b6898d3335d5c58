"""When the proxy retries an upstream request, how long it waits first, and how many retries it may spend.

The rule the proxy follows: a request is retried only while nothing of the response body has reached
the client. That covers

    connect errors            (refused, reset, DNS, TLS: the backend never saw the request)
    RETRYABLE_STATUSES        (429, 502, 503, 504: the backend or a proxy in front of it refused it)
    timeouts before headers   (no status line within `timeouts.first_byte_s`)

and nothing else: once the first body byte went to the client, a broken stream is continued (stream.py)
or ended with an error event, never replayed from the start. Other 4xx/5xx answers are passed through.

Each retry waits `RetryPolicy.backoff_s` (full jitter, Retry-After as a floor) and must take a token
from the shared `RetryBudget`, so that retries add at most `budget_ratio` extra load when many
requests fail at once (a retry storm) instead of multiplying it by `attempts`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

from seekserve.gateway.config import RetryConfig

__all__ = [
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_CAP_S",
    "RetryBudget",
    "RetryPolicy",
    "retry_after_s",
]

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""Upstream statuses retried (on another backend when one is free); any other status is passed through."""

RETRY_AFTER_CAP_S = 60.0
"""A Retry-After floor is honoured up to max(retry.max_s, this); a longer one would stall the client."""

_MAX_EXPONENT = 62
"""2**62 * any positive base_s is beyond any max_s, so larger retry indices need no arithmetic."""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait that a Retry-After header asks for; None when absent or unparseable.

    `value` is delta-seconds ("120"; a decimal such as "1.5" is accepted too) or an HTTP-date
    ("Wed, 21 Oct 2015 07:28:00 GMT"); `now` is the wall clock in epoch seconds (default
    `time.time()`). A date in the past or a negative number gives 0.0; NaN and infinities give None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _date_delay_s(text, time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _date_delay_s(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" in the date: UTC with no stated source (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class RetryPolicy:
    """Backoff before each retry: full jitter, uniform in [0, min(max_s, base_s * 2**retry_index)].

    `retry_index` counts retries from 0 (the wait before the second attempt). A Retry-After the
    backend sent is a floor: the wait is at least `min(retry_after, max(max_s, RETRY_AFTER_CAP_S))`,
    so a backend asking for an hour holds the client at most a minute (the breaker's `hold` keeps that
    backend out of rotation for the full time meanwhile, so the retry goes elsewhere when it can).
    """

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._retry_after_cap_s = max(config.max_s, RETRY_AFTER_CAP_S)

    @property
    def attempts(self) -> int:
        """Tries per model, the first included (so at most attempts - 1 retries)."""
        return self.config.attempts

    def backoff_s(self, retry_index: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry_index` (0-based)."""
        if retry_index < 0:
            raise ValueError(f"retry_index {retry_index} is negative: the first retry has index 0")
        config = self.config
        if retry_index >= _MAX_EXPONENT:
            ceiling = config.max_s
        else:
            ceiling = min(config.max_s, config.base_s * (1 << retry_index))
        wait = self._rng.random() * ceiling
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self._retry_after_cap_s)
        return wait


class RetryBudget:
    """A token bucket that bounds retries across all requests (as Finagle's and Envoy's retry budgets).

    Every request sent deposits `budget_ratio` tokens and `budget_min_per_s` tokens accrue per second;
    a retry withdraws one whole token or is refused. The bucket holds at most
    `max(10, 10 * budget_min_per_s)` tokens and starts with `10 * budget_min_per_s` of them (ten
    seconds of the floor rate, capped), so a freshly started or quiet gateway can still retry while a
    failing fleet under load gets at most `budget_ratio` extra requests per request.
    """

    def __init__(self, config: RetryConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._ratio = config.budget_ratio
        self._per_s = config.budget_min_per_s
        self.capacity = max(10.0, 10.0 * self._per_s)
        """Most tokens the bucket holds."""
        self._tokens = min(self.capacity, 10.0 * self._per_s)
        self._last = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now (a retry needs one)."""
        self._refill()
        return self._tokens

    def record_request(self) -> None:
        """Called once per client request sent upstream (first attempts only, not retries)."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + self._ratio)

    def try_retry(self) -> bool:
        """Take one token for a retry; False (and nothing taken) when fewer than one is left."""
        self._refill()
        if self._tokens < 1.0 - 1e-9:  # the epsilon absorbs float sums such as 0.2 * 5
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0.0 and self._per_s > 0.0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self._per_s)
