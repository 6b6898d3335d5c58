from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from seekserve.gateway.admission import AdmissionQueue, Shed
from seekserve.gateway.config import QueueConfig


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Slots:
    """A model's free backend slots, as the proxy sees them: has_capacity, take, release."""

    def __init__(self, queue: AdmissionQueue, free: int = 0) -> None:
        self.queue = queue
        self.free = free

    def has_capacity(self) -> bool:
        return self.free > 0

    def release(self, count: int = 1) -> None:
        self.free += count
        self.queue.notify()


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def start(
    queue: AdmissionQueue, slots: Slots, priority: int, name: str, served: list[str]
) -> asyncio.Task[None]:
    async def request() -> None:
        await queue.wait(priority, slots.has_capacity)
        assert slots.free > 0, f"{name} was woken without a free slot"
        slots.free -= 1  # takes its slot before its next await, as the proxy does
        served.append(name)

    return asyncio.get_running_loop().create_task(request(), name=name)


def make_queue(
    max_waiting: int = 16, max_wait_s: float = 30.0, clock: Callable[[], float] | None = None
) -> AdmissionQueue:
    config = QueueConfig(max_waiting=max_waiting, max_wait_s=max_wait_s)
    return AdmissionQueue(config) if clock is None else AdmissionQueue(config, clock)


def test_capacity_and_nobody_waiting_returns_at_once() -> None:
    async def main() -> None:
        queue = make_queue()
        slots = Slots(queue, free=1)
        await queue.wait(1, slots.has_capacity)
        assert (queue.num_waiting, queue.num_shed) == (0, 0)

    asyncio.run(main())


def test_highest_priority_first_fifo_within_a_priority_one_wake_per_slot() -> None:
    async def main() -> None:
        queue = make_queue()
        slots = Slots(queue)
        served: list[str] = []
        order = [(1, "a"), (5, "b"), (1, "c"), (5, "d"), (3, "e"), (0, "f")]
        tasks = [start(queue, slots, p, name, served) for p, name in order]
        await settle()
        assert (queue.num_waiting, served) == (6, [])
        slots.release()
        queue.notify()  # another model's slot freed before "b" ran: the one free slot still wakes one
        await settle()
        assert (served, queue.num_waiting) == (["b"], 5)
        slots.release(3)  # three slots at once: woken one after another, each takes one
        await settle()
        assert served == ["b", "d", "e", "a"]
        slots.release(2)
        await asyncio.gather(*tasks)
        assert served == ["b", "d", "e", "a", "c", "f"]
        assert (queue.num_waiting, queue.num_shed, slots.free) == (0, 0, 0)

    asyncio.run(main())


def test_an_arrival_waits_behind_equal_or_higher_priority_but_not_lower() -> None:
    async def main() -> None:
        queue = make_queue()
        slots = Slots(queue)
        served: list[str] = []
        waiting = start(queue, slots, 3, "waiting", served)
        await settle()
        slots.free = 1  # a slot appeared without notify (say a backend came back)
        same = start(queue, slots, 3, "same", served)
        await settle()
        assert served == ["waiting"]  # the queued one got the slot, not the arrival of equal priority
        assert queue.num_waiting == 1
        higher = start(queue, slots, 4, "higher", served)
        slots.free = 1
        await asyncio.gather(waiting, higher)
        assert served == ["waiting", "higher"]
        slots.release()
        await same
        assert queue.num_waiting == 0

    asyncio.run(main())


def test_a_waiter_without_capacity_does_not_hold_back_another_model() -> None:
    async def main() -> None:
        queue = make_queue(max_waiting=2)
        busy, idle = Slots(queue), Slots(queue, free=1)
        served: list[str] = []
        blocked = [start(queue, busy, 9, f"busy-{i}", served) for i in range(2)]
        await settle()
        assert queue.num_waiting == 2  # full, of higher priority, but all waiting on another model
        await queue.wait(0, idle.has_capacity)  # at once, neither queued nor shed
        assert (queue.num_waiting, queue.num_shed) == (2, 0)
        for task in blocked:
            task.cancel()
        results = await asyncio.gather(*blocked, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert (queue.num_waiting, served) == (0, [])

    asyncio.run(main())


def test_a_full_queue_sheds_the_lowest_priority_newest_among_equals() -> None:
    async def main() -> None:
        clock = FakeClock(100.0)
        queue = make_queue(max_waiting=2, clock=clock)
        for _ in range(20):
            queue.notify()  # 20 completions in the last 10 s: 2 per second
        assert queue.drain_per_s() == 2.0
        slots = Slots(queue)
        served: list[str] = []
        low = start(queue, slots, 1, "low", served)
        mid = start(queue, slots, 2, "mid", served)
        await settle()
        high = start(queue, slots, 3, "high", served)
        await settle()
        with pytest.raises(Shed) as low_shed:
            await low
        assert low_shed.value.retry_after_s == 1.0  # last of 2: 2 / (2 per s)
        assert "queue.max_waiting 2" in str(low_shed.value)
        with pytest.raises(Shed) as self_shed:
            await queue.wait(1, slots.has_capacity)  # lowest of all: the arrival itself is shed
        assert self_shed.value.retry_after_s == 2.0  # position 3 / 2 per s = 1.5, rounded up
        with pytest.raises(Shed):
            await queue.wait(2, slots.has_capacity)  # equal to the lowest, and newer: shed
        assert (queue.num_shed, queue.num_waiting) == (3, 2)
        slots.release(2)
        await asyncio.gather(mid, high)
        assert served == ["high", "mid"]
        assert queue.num_waiting == 0

    asyncio.run(main())


def test_max_waiting_zero_sheds_every_request_that_would_wait() -> None:
    async def main() -> None:
        queue = make_queue(max_waiting=0)
        with pytest.raises(Shed) as shed:
            await queue.wait(9, lambda: False)
        assert shed.value.retry_after_s == 60.0  # no completions measured yet
        await queue.wait(9, lambda: True)
        assert (queue.num_shed, queue.num_waiting) == (1, 0)

    asyncio.run(main())


def test_a_waiter_past_max_wait_s_is_shed_with_retry_after_from_the_drain_rate() -> None:
    async def main() -> None:
        clock = FakeClock(100.0)
        queue = make_queue(max_wait_s=0.05, clock=clock)
        for _ in range(5):
            queue.notify()  # 0.5 completions per second
        slots = Slots(queue)
        served: list[str] = []
        behind = start(queue, slots, 1, "behind", served)
        await settle()
        ahead = start(queue, slots, 5, "ahead", served)  # later, but first in line
        results = await asyncio.gather(behind, ahead, return_exceptions=True)
        assert all(isinstance(r, Shed) for r in results)
        shed_behind, shed_ahead = results
        assert isinstance(shed_behind, Shed) and isinstance(shed_ahead, Shed)
        assert shed_behind.retry_after_s == 4.0  # its timer fires first, at position 2: 2 / 0.5
        assert shed_ahead.retry_after_s == 2.0  # then alone, at position 1
        assert "queue.max_wait_s 0.05 s" in str(shed_ahead)
        assert (queue.num_shed, queue.num_waiting, served) == (2, 0, [])

    asyncio.run(main())


def test_drain_rate_covers_the_last_ten_seconds_and_retry_after_is_clamped() -> None:
    async def main() -> None:
        clock = FakeClock(100.0)
        queue = make_queue(max_waiting=0, clock=clock)
        for now in (100.0, 105.2):
            clock.now = now
            for _ in range(10):
                queue.notify()
        assert queue.drain_per_s() == 2.0
        clock.now = 110.5  # second 100 has left the window
        assert queue.drain_per_s() == 1.0
        clock.now = 115.0
        assert queue.drain_per_s() == 0.0
        clock.now = 200.0
        for _ in range(1000):
            queue.notify()
        with pytest.raises(Shed) as fast:
            await queue.wait(1, lambda: False)
        assert fast.value.retry_after_s == 1.0  # 1 / 100 per s, clamped up to 1
        clock.now = 300.0
        queue.notify()
        with pytest.raises(Shed) as slow:
            await queue.wait(1, lambda: False)
        assert slow.value.retry_after_s == 10.0  # 1 / 0.1 per s
        assert "retry in 10 s" in str(slow.value)

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_no_trace() -> None:
    async def main() -> None:
        queue = make_queue(max_wait_s=0.05)
        slots = Slots(queue)
        served: list[str] = []
        gone = start(queue, slots, 1, "gone", served)
        await settle()
        assert queue.num_waiting == 1
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert queue.num_waiting == 0
        await asyncio.sleep(0.1)  # past max_wait_s: its timer was cancelled, nothing is shed
        assert queue.num_shed == 0

    asyncio.run(main())


def test_a_waiter_cancelled_after_being_woken_passes_the_slot_on() -> None:
    async def main() -> None:
        queue = make_queue(max_wait_s=2.0)  # a lost wake would end in Shed, not a hang
        slots = Slots(queue)
        served: list[str] = []
        first = start(queue, slots, 5, "first", served)
        second = start(queue, slots, 1, "second", served)
        await settle()
        slots.release()  # wakes "first" synchronously...
        first.cancel()  # ...whose client goes away before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert served == ["second"]
        assert (queue.num_waiting, slots.free) == (0, 0)

    asyncio.run(main())


def test_priority_out_of_range_is_refused() -> None:
    async def main() -> None:
        queue = make_queue()
        with pytest.raises(ValueError, match=r"priority 10 is outside 0\.\.9"):
            await queue.wait(10, lambda: True)

    asyncio.run(main())


def test_random_arrivals_cancellations_and_releases_never_leak() -> None:
    async def main() -> None:
        rng = random.Random(7)
        queue = make_queue(max_waiting=20)
        slots = Slots(queue)
        served: list[str] = []
        tasks: list[asyncio.Task[None]] = []
        for step in range(400):
            action = rng.random()
            if action < 0.5:
                tasks.append(start(queue, slots, rng.randint(0, 9), f"r{step}", served))
            elif action < 0.65 and tasks:
                rng.choice(tasks).cancel()
            else:
                slots.release()
            await settle(rng.randint(0, 2))
        slots.release(400)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes = {type(r).__name__ for r in results}
        assert outcomes <= {"NoneType", "Shed", "CancelledError"}
        assert len(served) == sum(r is None for r in results)
        assert queue.num_shed == sum(isinstance(r, Shed) for r in results)
        assert queue.num_waiting == 0

    asyncio.run(main())
