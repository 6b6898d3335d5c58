"""Fleet sizing: the fewest replicas that meet the SLO, a day with the autoscaler, and its costs."""

from __future__ import annotations

import math

import pytest

from seekserve.errors import ConfigError
from seekserve.plan.autoscale import AutoscaleConfig
from seekserve.plan.fleet import FleetSizer, plan_fleet
from seekserve.plan.profile import ProfilePoint, ReplicaProfile
from seekserve.plan.simulator import FleetConfig
from seekserve.plan.traffic import TrafficConfig, parse_rate

# A small replica: about 27 req/s at most (8 in flight at 0.29 s mean).
PROFILE = ReplicaProfile(
    "small", (ProfilePoint(1, 0.1, 0.3), ProfilePoint(4, 0.15, 0.5), ProfilePoint(8, 0.25, 0.9)), 2, "test"
)
TRAFFIC = TrafficConfig(parse_rate("2M/day"), bursts_per_day=3.0)


def sizer(slo: float = 1.0, seed: int = 0) -> FleetSizer:
    return FleetSizer(PROFILE, FleetConfig(1, 8), slo, window_requests=2000, seed=seed)


def test_replicas_needed_is_the_fewest_that_meet_the_slo() -> None:
    s = sizer()
    for rate in (10.0, 35.0, 80.0):
        n = s.replicas_needed(rate)
        assert s.meets(n, rate)
        assert n == math.ceil(rate / (0.95 * s.max_rate)) or not s.meets(n - 1, rate)
        assert s.replicas_needed(rate, guess=n + 5) == n  # from above as from below
    assert s.max_rate == pytest.approx(PROFILE.max_throughput(8))


def test_slo_rate_is_met_and_below_the_maximum() -> None:
    s = sizer()
    n = s.replicas_needed(60.0)
    rate = s.slo_rate(n, 60.0)
    assert 60.0 / n <= rate <= 0.95 * s.max_rate
    assert s.meets(n, rate * n)


def test_a_day() -> None:
    s = sizer(slo=0.45)  # a p99 the replica misses long before its throughput runs out
    plan = plan_fleet(TRAFFIC, s, AutoscaleConfig())
    assert plan.feasible and len(plan.hours) == 24
    for hour in plan.hours:
        assert s.meets(hour.needed, hour.rate)
        assert hour.p50_s <= hour.p99_s and hour.ready_median <= hour.ready_max
    assert max(h.needed for h in plan.hours) == plan.peak_needed
    assert plan.peak_bound == "latency"
    assert plan.peak_needed > math.ceil(max(h.rate for h in plan.hours) / (0.95 * s.max_rate))
    assert plan.burst_needed >= plan.peak_needed
    replay = plan.replay
    assert replay is not None
    assert plan.gpu_hours == pytest.approx(replay.provisioned.sum() * 2 / 3600)
    assert plan.gpu_hours_hourly == sum(h.needed for h in plan.hours) * 2
    assert plan.gpu_hours_static == plan.burst_needed * 24 * 2
    assert plan.day_p50_s < plan.day_p99_s
    assert min(h.p50_s for h in plan.hours) < plan.day_mean_s < plan.day_p99_s
    assert plan.over_slo_share >= replay.at_risk_share
    assert plan.breaks_first and plan.num_windows == s.num_windows


def test_a_seed_repeats_the_day() -> None:
    a = plan_fleet(TRAFFIC, sizer(seed=4), AutoscaleConfig())
    b = plan_fleet(TRAFFIC, sizer(seed=4), AutoscaleConfig())
    assert a.hours == b.hours and a.gpu_hours == b.gpu_hours and a.breaks_first == b.breaks_first


def test_a_replica_slower_than_the_slo_alone() -> None:
    plan = plan_fleet(TRAFFIC, sizer(slo=0.25), AutoscaleConfig())
    assert not plan.feasible and plan.hours == () and plan.num_windows == 0
    assert plan.breaks_first.startswith(
        "the replica itself: its p99 with one request in flight is 0.30 s, over the 0.25 s SLO"
    )


def test_no_replica_is_planned_above_95_percent_of_its_maximum() -> None:
    s = sizer(slo=100.0)  # an SLO nothing misses: utilization alone decides
    rate = 10 * s.max_rate
    assert s.replicas_needed(rate) == math.ceil(10 / 0.95) == 11
    windows = s.num_windows
    assert not s.meets(10, rate) and s.num_windows == windows  # refused without simulating


def test_sizer_errors() -> None:
    with pytest.raises(ConfigError, match=r"at least 1000 requests per window, got 1\.0 and 10"):
        FleetSizer(PROFILE, FleetConfig(1, 8), 1.0, 10, 0)
