"""The autoscaler over a day: its start delay, cooldown and limits, and the first breach."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seekserve.errors import ConfigError
from seekserve.plan.autoscale import AutoscaleConfig, replay_day
from seekserve.plan.traffic import Burst, TrafficConfig

SLO_RATE, MAX_RATE = 100.0, 120.0  # one replica: 100 req/s within the SLO, 120 at most
FLAT = TrafficConfig(380.0, peak_to_mean=1.0, bursts_per_day=0)


def test_flat_traffic_keeps_a_steady_fleet() -> None:
    config = AutoscaleConfig(target_utilization=0.8)
    replay = replay_day(config, FLAT, SLO_RATE, MAX_RATE, np.random.default_rng(0))
    wanted = math.ceil(380 / (0.8 * 100))  # 4.75: 5
    assert np.all(replay.ready == wanted) and np.all(replay.provisioned == wanted)
    assert not replay.at_risk.any() and replay.first_breach is None
    assert replay.arrivals.sum() == pytest.approx(380 * 86400, rel=0.001)


def test_a_burst_waits_for_replicas_to_start_and_they_stay_for_the_cooldown() -> None:
    config = AutoscaleConfig(start_s=180, cooldown_s=600, interval_s=15, window_s=60, target_utilization=0.8)
    burst = Burst(36_000.0, 36_120.0, 2.0)  # 760 req/s for 2 minutes
    replay = replay_day(config, FLAT, SLO_RATE, MAX_RATE, np.random.default_rng(1), bursts=[burst])
    ready = replay.ready
    assert ready[35_999] == 5 and ready[36_100] == 5  # nothing new serves during the burst
    assert replay.backlog[36_119] > 0  # 760 arrive, 5 x 120 served: a backlog builds
    # Asked for at the first look inside the burst (36,015), serving 180 s later.
    asked = 36_015
    assert ready[asked + 179] == 5 and ready[asked + 180] > 5
    assert replay.provisioned[asked] > 5  # paid for while starting
    # The most wanted in the last 600 s holds the fleet up, then it shrinks back.
    assert ready[36_600] > 5 and ready[37_400] == 5
    breach = replay.first_breach
    assert breach is not None and breach.cause == "burst"
    assert 36_000 <= breach.t_s < 36_010 and breach.ready == 5 and breach.needed == 8
    assert 0 < replay.at_risk_share < 0.01
    assert replay.max_wait_s(MAX_RATE) > 10.0


def test_the_replica_limit_is_the_first_breach() -> None:
    config = AutoscaleConfig(max_replicas=3)
    replay = replay_day(config, FLAT, SLO_RATE, MAX_RATE, np.random.default_rng(2))
    assert np.all(replay.ready == 3)
    breach = replay.first_breach
    assert breach is not None and breach.cause == "max_replicas" and breach.t_s == 0


def test_a_ramp_faster_than_replicas_start() -> None:
    # Traffic from 100 to 1900 req/s over the morning; a replica takes 30 min to start.
    traffic = TrafficConfig(1000.0, peak_to_mean=1.9, peak_hour=14.0, bursts_per_day=0)
    config = AutoscaleConfig(start_s=1800, target_utilization=0.95)
    replay = replay_day(config, traffic, SLO_RATE, MAX_RATE, np.random.default_rng(3))
    breach = replay.first_breach
    assert breach is not None and breach.cause == "ramp"
    assert 2 * 3600 < breach.t_s < 14 * 3600


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_s": -1.0}, "start_s and cooldown_s must be >= 0"),
        ({"interval_s": 0}, "interval_s and window_s must be >= 1"),
        ({"target_utilization": 1.2}, r"target_utilization must be in \(0, 1\]"),
        ({"min_replicas": 4, "max_replicas": 2}, "need 1 <= min_replicas <= max_replicas, got 4 and 2"),
    ],
)
def test_autoscale_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AutoscaleConfig(**options)  # type: ignore[arg-type]
