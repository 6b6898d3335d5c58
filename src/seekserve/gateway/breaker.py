"""Per-backend circuit breaker.

    CLOSED ──(N failures in a row, or error ratio over the window)──► OPEN
       ▲                                                              │ cooldown passes
       │                                                              ▼
       └────────────(the probe succeeds)──────────────────────── HALF_OPEN ──(the probe fails)──► OPEN,
                                                                  one request only        cooldown doubled

The cooldown is a deadline on the clock, set when the circuit opens. Nothing but the passage of
time moves it: a retry aimed at an open backend is refused (`allow()` is False) and does not
touch it, and a failure reported by a request that was sent before the circuit opened does not
restart it. A backend answering 429 with Retry-After can be held open for that long (`hold`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from seekserve.gateway.config import BreakerConfig

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Decides whether a backend may be sent a request. Not thread-safe: one event loop owns it."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=config.window)  # True = failure
        self._consecutive = 0
        self._open_until = 0.0
        self._cooldown_s = config.cooldown_s
        self._probe_out = False
        self.num_opened = 0
        """How many times the circuit has opened (for metrics and tests)."""

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    def cooldown_remaining_s(self) -> float:
        return max(0.0, self._open_until - self._clock()) if self._state is BreakerState.OPEN else 0.0

    def may_send(self) -> bool:
        """Would `allow()` say yes now? (Does not take the half-open probe.)"""
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._probe_out)

    def allow(self) -> bool:
        """Called when a request is about to be sent; in half-open, the first caller takes the one probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_out:
            self._state = BreakerState.HALF_OPEN
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._close()
            return
        self._consecutive = 0
        self._outcomes.append(False)

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False
            self._open(min(self._cooldown_s * 2, self.config.max_cooldown_s))
            return
        if self._state is BreakerState.OPEN:
            return  # sent before the circuit opened: the cooldown already runs and is not restarted
        self._consecutive += 1
        self._outcomes.append(True)
        if self._consecutive >= self.config.consecutive_failures or self._ratio_exceeded():
            self._open(self.config.cooldown_s)

    def hold(self, seconds: float) -> None:
        """Keep the circuit open at least `seconds` from now (a 429 or 503 with Retry-After).

        Extends an open circuit's deadline, never shortens it; `seconds` <= 0 asks for no wait and
        changes nothing (opening would leave the backend at one probe at a time)."""
        if seconds <= 0.0:
            return
        until = self._clock() + min(seconds, self.config.max_cooldown_s)
        if self._state is BreakerState.OPEN and until <= self._open_until:
            return
        if self.state is not BreakerState.OPEN:
            self.num_opened += 1
        self._state = BreakerState.OPEN
        self._probe_out = False
        self._open_until = max(until, self._open_until)

    def _ratio_exceeded(self) -> bool:
        count = len(self._outcomes)
        return count >= self.config.min_requests and sum(self._outcomes) / count >= self.config.error_ratio

    def _open(self, cooldown_s: float) -> None:
        self._state = BreakerState.OPEN
        self._cooldown_s = cooldown_s
        self._open_until = self._clock() + cooldown_s
        self._probe_out = False
        self._outcomes.clear()
        self._consecutive = 0
        self.num_opened += 1

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._cooldown_s = self.config.cooldown_s
        self._probe_out = False
        self._outcomes.clear()
        self._consecutive = 0
