from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from seekserve.gateway.config import RetryConfig
from seekserve.gateway.retry import (
    RETRY_AFTER_CAP_S,
    RETRYABLE_STATUSES,
    RetryBudget,
    RetryPolicy,
    retry_after_s,
)

NOW = 1_700_000_000.0
"""A wall-clock instant (2023-11-14 22:13:20 UTC) for Retry-After dates."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FixedRandom(random.Random):
    """`random()` always returns `value`, so a jittered wait is value * ceiling exactly."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_retryable_statuses() -> None:
    assert frozenset({429, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_delta_and_invalid(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, now=NOW) == seconds


def test_retry_after_http_date() -> None:
    assert retry_after_s(formatdate(NOW + 30, usegmt=True), now=NOW) == 30.0
    assert retry_after_s("Tue, 14 Nov 2023 22:14:00 GMT", now=NOW) == 40.0
    assert retry_after_s("Tue, 14 Nov 2023 22:14:00 -0000", now=NOW) == 40.0
    assert retry_after_s("Tue, 14 Nov 2023 23:14:00 +0100", now=NOW) == 40.0
    assert retry_after_s(formatdate(NOW - 30, usegmt=True), now=NOW) == 0.0


def test_retry_after_defaults_to_the_wall_clock() -> None:
    seconds = retry_after_s(formatdate(NOW, usegmt=True))
    assert seconds == 0.0  # NOW is in the past of any machine running this test


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    policy = RetryPolicy(RetryConfig(base_s=0.05, max_s=2.0), rng=FixedRandom(0.5))
    assert [policy.backoff_s(k) for k in range(7)] == [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert policy.backoff_s(62) == 1.0
    assert policy.backoff_s(10_000) == 1.0
    top = RetryPolicy(RetryConfig(base_s=0.05, max_s=2.0), rng=FixedRandom(0.999))
    assert top.backoff_s(3) == 0.999 * 0.4


def test_backoff_draws_stay_in_range() -> None:
    policy = RetryPolicy(RetryConfig(base_s=0.1, max_s=2.0), rng=random.Random(1234))
    draws = [policy.backoff_s(2) for _ in range(2000)]
    assert all(0.0 <= d < 0.4 for d in draws)
    assert min(draws) < 0.01 and max(draws) > 0.39  # uses the whole interval, not a fixed wait


def test_backoff_retry_after_is_a_floor_with_a_cap() -> None:
    policy = RetryPolicy(RetryConfig(base_s=0.05, max_s=2.0), rng=FixedRandom(0.5))
    assert policy.backoff_s(0, retry_after=1.25) == 1.25
    assert policy.backoff_s(6, retry_after=0.5) == 1.0  # the jitter is longer: kept
    assert policy.backoff_s(0, retry_after=0.0) == 0.025
    assert policy.backoff_s(0, retry_after=3600.0) == RETRY_AFTER_CAP_S == 60.0
    long = RetryPolicy(RetryConfig(base_s=1.0, max_s=90.0), rng=FixedRandom(0.0))
    assert long.backoff_s(0, retry_after=3600.0) == 90.0


def test_backoff_rejects_a_negative_index() -> None:
    policy = RetryPolicy(RetryConfig())
    with pytest.raises(ValueError, match="retry_index -1 is negative"):
        policy.backoff_s(-1)


def test_attempts_comes_from_the_config() -> None:
    assert RetryPolicy(RetryConfig(attempts=4)).attempts == 4
    assert RetryPolicy(RetryConfig()).attempts == 3


def test_budget_deposits_per_request() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryConfig(budget_ratio=0.2, budget_min_per_s=0.0), clock=clock)
    assert budget.capacity == 10.0
    assert budget.tokens == 0.0
    assert budget.try_retry() is False
    for _ in range(4):
        budget.record_request()
    assert budget.try_retry() is False  # 0.8 tokens
    budget.record_request()
    assert budget.try_retry() is True
    assert budget.try_retry() is False
    for _ in range(10):
        budget.record_request()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_budget_is_capped() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryConfig(budget_ratio=0.5, budget_min_per_s=0.0), clock=clock)
    for _ in range(1000):
        budget.record_request()
    assert budget.tokens == 10.0
    assert sum(budget.try_retry() for _ in range(20)) == 10


def test_budget_accrues_the_floor_rate_with_the_clock() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryConfig(budget_ratio=0.0, budget_min_per_s=2.0), clock=clock)
    assert budget.capacity == 20.0
    assert budget.tokens == 20.0  # starts with ten seconds of the floor rate
    assert sum(budget.try_retry() for _ in range(25)) == 20
    clock.now += 0.25
    assert budget.try_retry() is False  # 0.5 tokens
    clock.now += 0.25
    assert budget.try_retry() is True
    assert budget.try_retry() is False
    clock.now += 3.0
    assert [budget.try_retry() for _ in range(7)] == [True] * 6 + [False]
    clock.now += 1000.0
    assert budget.tokens == 20.0


def test_budget_default_capacity_and_start() -> None:
    budget = RetryBudget(RetryConfig(), clock=FakeClock())
    assert budget.capacity == 50.0
    assert budget.tokens == 50.0


def test_budget_without_ratio_or_floor_never_retries() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryConfig(budget_ratio=0.0, budget_min_per_s=0.0), clock=clock)
    budget.record_request()
    clock.now += 3600.0
    assert budget.tokens == 0.0
    assert budget.try_retry() is False
