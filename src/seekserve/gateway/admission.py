"""The admission queue: where requests wait while every backend of their model is saturated.

    arrival ──(capacity, nobody of >= priority waiting)──► proceed at once
       │ otherwise
       ▼
    waiting, one FIFO per priority ──(notify(): a backend slot was released)──► woken, highest priority first
       │ queue full: the lowest priority, newest among equals, is shed (possibly the arrival)
       │ waited max_wait_s: shed
       ▼
    Shed (429 with Retry-After)

Waiters are woken one at a time: `notify()` wakes the first waiter, in priority order, whose
`has_capacity()` is true, and when that waiter resumes (after its caller has had the event-loop step
in which it takes the slot) the next is checked, and so on while capacity lasts. So a released slot
wakes one waiter, not every waiter whose capacity check would still read true. Everything runs on
one event loop; no locks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from seekserve.errors import SeekserveError
from seekserve.gateway.config import QueueConfig

__all__ = ["AdmissionQueue", "Shed"]

MAX_PRIORITY = 9
"""Priorities run from 0 (shed first) to 9 (served first), as `KeyConfig.priority`."""
_DRAIN_WINDOW_S = 10
_MIN_RETRY_S = 1
_MAX_RETRY_S = 60


class Shed(SeekserveError):
    """A waiting request is turned away; the edge answers 429 with Retry-After."""

    def __init__(self, retry_after_s: float, reason: str) -> None:
        super().__init__(f"{reason}: retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s
        """Whole seconds in [1, 60]: the waiter's position over the measured drain rate."""


class _Waiter:
    __slots__ = ("future", "has_capacity", "priority", "queued", "timer", "woken")

    def __init__(self, future: asyncio.Future[None], priority: int, has_capacity: Callable[[], bool]) -> None:
        self.future = future
        self.priority = priority
        self.has_capacity = has_capacity
        self.queued = True
        self.woken = False
        self.timer: asyncio.TimerHandle | None = None


class AdmissionQueue:
    """When every backend of a model is saturated, requests wait here, highest priority first (FIFO
    within a priority).

    Bounded by max_waiting: a new arrival when full sheds the lowest-priority (newest among equals)
    waiter, possibly itself, with Shed. A waiter past max_wait_s gets Shed (the timer runs on the event
    loop's clock). retry_after_s comes from the measured drain rate: position / (completions per second
    over the last ~10 s, counted by `notify()` on `clock`), clamped to [1, 60] and rounded up to whole
    seconds.
    """

    def __init__(self, config: QueueConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._queues: list[deque[_Waiter]] = [deque() for _ in range(MAX_PRIORITY + 1)]
        self._num_waiting = 0
        self._waking = 0  # woken waiters that have not resumed yet (at most one)
        self._wake_scheduled = False
        self._drain = [0] * _DRAIN_WINDOW_S  # completions per whole second of `clock`, a ring
        self._drain_second = 0
        self.num_shed = 0
        """Requests turned away with Shed (queue full or waited too long), since start."""

    @property
    def num_waiting(self) -> int:
        return self._num_waiting

    async def wait(self, priority: int, has_capacity: Callable[[], bool]) -> None:
        """Return when the caller may take a backend slot; raise Shed when it is turned away.

        Returns at once if `has_capacity()` and nobody of >= priority who could use that capacity is
        waiting (a waiter counts when its own `has_capacity()` is true: one that waits on another,
        saturated model does not hold this request back) and no woken waiter is about to take a slot;
        otherwise queues until `notify()` finds `has_capacity()` true for it. On return the caller
        should take its slot before its next await. Cancelling the caller removes it from the queue.
        """
        if not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority {priority} is outside 0..{MAX_PRIORITY}: use a key's priority")
        capacity = has_capacity()
        if capacity and not self._waking and not self._ahead_with_capacity(priority):
            return
        waiter = self._enqueue(priority, has_capacity)
        if capacity:
            self._schedule_wake()  # a waiter ahead can take the slot: the scan serves them in order
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
        self._resumed()

    def notify(self) -> None:
        """A request released a backend slot: count a completion and wake the next waiter with capacity."""
        self._count_completion()
        if self._num_waiting:
            self._wake()

    def _ahead_with_capacity(self, priority: int) -> bool:
        """Is a waiter of >= priority waiting that could take a slot now?"""
        if not self._num_waiting:
            return False
        return any(
            waiter.has_capacity()
            for p in range(priority, MAX_PRIORITY + 1)
            for waiter in self._queues[p]
            if not waiter.future.done()
        )

    def _enqueue(self, priority: int, has_capacity: Callable[[], bool]) -> _Waiter:
        """Queue a waiter, first shedding the lowest-priority newest one when full (maybe the arrival)."""
        if self._num_waiting >= self.config.max_waiting:
            victim_queue = next((q for q in self._queues if q), None)
            if victim_queue is None or victim_queue[-1].priority >= priority:
                self.num_shed += 1
                raise Shed(self._retry_after_s(self._num_waiting + 1), self._full_reason())
            victim = victim_queue.pop()
            self._num_waiting -= 1
            self._shed(victim, self._num_waiting + 1, self._full_reason())
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), priority, has_capacity)
        waiter.timer = loop.call_later(self.config.max_wait_s, self._expire, waiter)
        self._queues[priority].append(waiter)
        self._num_waiting += 1
        return waiter

    def _full_reason(self) -> str:
        return (
            f"every backend of the model is saturated and the admission queue is full "
            f"(queue.max_waiting {self.config.max_waiting}); a higher-priority key or more backends "
            f"would get this request served"
        )

    def _shed(self, waiter: _Waiter, position: int, reason: str) -> None:
        """Turn away a waiter already taken out of its queue."""
        waiter.queued = False
        self.num_shed += 1
        if not waiter.future.done():
            waiter.future.set_exception(Shed(self._retry_after_s(position), reason))

    def _expire(self, waiter: _Waiter) -> None:
        if not waiter.queued or waiter.future.done():
            return
        position = self._position(waiter)
        self._remove(waiter)
        reason = (
            f"every backend of the model stayed saturated for queue.max_wait_s "
            f"{self.config.max_wait_s:g} s; raise it or add backends"
        )
        self._shed(waiter, position, reason)

    def _position(self, waiter: _Waiter) -> int:
        """1 for the next waiter to be served."""
        ahead = sum(len(self._queues[p]) for p in range(waiter.priority + 1, MAX_PRIORITY + 1))
        return ahead + self._queues[waiter.priority].index(waiter) + 1

    def _remove(self, waiter: _Waiter) -> None:
        if waiter.queued:
            self._queues[waiter.priority].remove(waiter)
            waiter.queued = False
            self._num_waiting -= 1

    def _abandon(self, waiter: _Waiter) -> None:
        """The caller was cancelled (client gone): leave no trace, and pass on a wake it got."""
        self._remove(waiter)
        if waiter.woken:
            waiter.woken = False
            self._waking -= 1
            self._schedule_wake()
        elif waiter.future.done() and not waiter.future.cancelled():
            waiter.future.exception()  # a Shed that arrived with the cancellation: mark it retrieved

    def _resumed(self) -> None:
        self._waking -= 1
        if self._num_waiting:
            self._schedule_wake()

    def _schedule_wake(self) -> None:
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        """Wake the first waiter, highest priority first, whose has_capacity() is true."""
        self._wake_scheduled = False
        if self._waking:
            return  # the woken waiter schedules the next scan once it resumes
        for queue in reversed(self._queues):
            for waiter in queue:
                if not waiter.future.done() and waiter.has_capacity():
                    self._remove(waiter)
                    waiter.woken = True
                    self._waking += 1
                    waiter.future.set_result(None)
                    return

    def _count_completion(self) -> None:
        second = int(self._clock())
        if second != self._drain_second:
            for stale in range(self._drain_second + 1, min(second, self._drain_second + _DRAIN_WINDOW_S) + 1):
                self._drain[stale % _DRAIN_WINDOW_S] = 0
            self._drain_second = second
        self._drain[second % _DRAIN_WINDOW_S] += 1

    def drain_per_s(self) -> float:
        """Completions per second over the last ~10 s of `clock` (whole seconds)."""
        second = int(self._clock())
        if second - self._drain_second >= _DRAIN_WINDOW_S:
            return 0.0
        fresh = _DRAIN_WINDOW_S - (second - self._drain_second)
        count = sum(self._drain[(self._drain_second - i) % _DRAIN_WINDOW_S] for i in range(fresh))
        return count / _DRAIN_WINDOW_S

    def _retry_after_s(self, position: int) -> float:
        rate = self.drain_per_s()
        seconds = _MAX_RETRY_S if rate <= 0 else min(max(position / rate, _MIN_RETRY_S), _MAX_RETRY_S)
        return float(math.ceil(seconds))
