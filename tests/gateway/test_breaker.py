from __future__ import annotations

from seekserve.gateway.breaker import BreakerState, CircuitBreaker
from seekserve.gateway.config import BreakerConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_breaker(**overrides: float) -> tuple[CircuitBreaker, FakeClock]:
    """A breaker with a 10 s cooldown capped at 35 s; by default only 3 failures in a row open it."""
    settings: dict[str, float] = {
        "consecutive_failures": 3,
        "error_ratio": 0.5,
        "window": 20,
        "min_requests": 20,
        "cooldown_s": 10.0,
        "max_cooldown_s": 35.0,
    }
    settings.update(overrides)
    clock = FakeClock()
    return CircuitBreaker(BreakerConfig.model_validate(settings), clock=clock), clock


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.consecutive_failures):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN, "the breaker should have opened"


def test_starts_closed() -> None:
    breaker, _ = make_breaker()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.may_send() is True
    assert breaker.allow() is True
    assert breaker.cooldown_remaining_s() == 0.0
    assert breaker.num_opened == 0


def test_consecutive_failures_open() -> None:
    breaker, _ = make_breaker()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # resets the run
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.num_opened == 1
    assert breaker.cooldown_remaining_s() == 10.0
    assert breaker.may_send() is False
    assert breaker.allow() is False


def test_error_ratio_opens_only_after_min_requests() -> None:
    breaker, _ = make_breaker(consecutive_failures=100, window=10, min_requests=4)
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 3 of 3 failed, but fewer than 4 outcomes
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_error_ratio_at_the_threshold_opens() -> None:
    breaker, _ = make_breaker(consecutive_failures=100, window=10, min_requests=4)
    breaker.record_success()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()  # 2 of 4 = 0.5
    assert breaker.state is BreakerState.OPEN


def test_error_ratio_counts_only_the_window() -> None:
    breaker, _ = make_breaker(consecutive_failures=100, window=4, min_requests=4)
    for _ in range(6):
        breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # window S S S F: 1 of 4
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # window S S F F: 2 of 4


def test_exactly_one_probe_after_the_cooldown() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    clock.now += 9.999
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False
    clock.now += 0.001
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.cooldown_remaining_s() == 0.0
    assert breaker.may_send() is True
    assert breaker.allow() is True
    assert breaker.may_send() is False
    assert breaker.allow() is False
    assert breaker.allow() is False
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_success_closes_and_resets_the_cooldown() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    clock.now += 10.0
    assert breaker.allow() is True
    breaker.record_failure()  # probe failed: 20 s
    clock.now += 20.0
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True and breaker.allow() is True
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # the old failures were forgotten
    breaker.record_failure()
    assert breaker.cooldown_remaining_s() == 10.0


def test_probe_failure_doubles_the_cooldown_up_to_the_cap() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    cooldowns = []
    for _ in range(4):
        clock.now += breaker.cooldown_remaining_s()
        assert breaker.allow() is True
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        cooldowns.append(breaker.cooldown_remaining_s())
    assert cooldowns == [20.0, 35.0, 35.0, 35.0]
    assert breaker.num_opened == 5


def test_failures_while_open_do_not_extend_the_cooldown() -> None:
    """Requests sent before the circuit opened, and retries aimed at it, must not restart its clock."""
    breaker, clock = make_breaker()
    open_breaker(breaker)
    remaining = []
    for _ in range(4):
        clock.now += 2.0
        for _ in range(5):
            assert breaker.allow() is False
            breaker.record_failure()
        remaining.append(breaker.cooldown_remaining_s())
    assert remaining == [8.0, 6.0, 4.0, 2.0]
    assert breaker.num_opened == 1
    clock.now += 2.0
    breaker.record_failure()  # a late failure after the cooldown, before the probe: still not restarted
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() is True


def test_success_while_open_does_not_close() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    clock.now += 4.0
    breaker.record_success()  # a request sent before the circuit opened
    assert breaker.state is BreakerState.OPEN
    assert breaker.cooldown_remaining_s() == 6.0


def test_hold_extends_but_never_shortens() -> None:
    breaker, clock = make_breaker()
    breaker.hold(30.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.cooldown_remaining_s() == 30.0
    breaker.hold(5.0)
    assert breaker.cooldown_remaining_s() == 30.0
    clock.now += 10.0
    breaker.hold(25.0)
    assert breaker.cooldown_remaining_s() == 25.0
    breaker.hold(1000.0)
    assert breaker.cooldown_remaining_s() == 35.0  # capped at max_cooldown_s
    assert breaker.num_opened == 1  # extending an open circuit is not another opening


def test_hold_does_not_shorten_a_failure_cooldown() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    clock.now += 1.0
    breaker.hold(3.0)
    assert breaker.cooldown_remaining_s() == 9.0
    breaker.hold(12.0)
    assert breaker.cooldown_remaining_s() == 12.0


def test_hold_during_the_probe_reopens() -> None:
    breaker, clock = make_breaker()
    open_breaker(breaker)
    clock.now += 10.0
    assert breaker.allow() is True
    breaker.hold(4.0)  # the probe answered 429 with Retry-After: 4
    assert breaker.state is BreakerState.OPEN
    assert breaker.cooldown_remaining_s() == 4.0
    assert breaker.num_opened == 2
    clock.now += 4.0
    assert breaker.allow() is True
    assert breaker.allow() is False


def test_hold_of_zero_seconds_leaves_a_closed_circuit_closed() -> None:
    breaker, _ = make_breaker()
    breaker.hold(0.0)
    breaker.hold(-1.0)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.num_opened == 0
    assert [breaker.allow() for _ in range(3)] == [True, True, True]
