"""The simulator against queueing theory (M/M/1, M/M/c), and its routing, prefix caches and seeds.

Mean waits from 200,000 customers with a fixed seed. Over five seeds the largest error of one seed
is 1.3% for M/M/1 at rho 0.5 and 3.5% for M/M/4 at rho 0.75 (benchmarks/plan_sim.py, docs/plan.md),
so the tolerances are 3% and 4%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from seekserve.errors import ConfigError
from seekserve.plan.queueing import mmc_mean_wait
from seekserve.plan.simulator import ExponentialService, FleetConfig, simulate

EXP = ExponentialService(1.0)


def test_mm1() -> None:
    result = simulate(FleetConfig(1, 1, warmup_fraction=0.05), EXP, 0.5, 200_000, seed=0)
    assert mmc_mean_wait(1, 0.5, 1.0) == 1.0
    assert result.mean_wait_s == pytest.approx(1.0, rel=0.03)
    assert result.mean_s == pytest.approx(2.0, rel=0.02)
    assert result.mean_in_service == pytest.approx(0.5, rel=0.02)  # utilization


def test_mmc_one_replica_with_four_slots() -> None:
    result = simulate(FleetConfig(1, 4, warmup_fraction=0.05), EXP, 3.0, 200_000, seed=0)
    assert result.mean_wait_s == pytest.approx(mmc_mean_wait(4, 3.0, 1.0), rel=0.04)  # 0.5094 s


def test_least_loaded_replicas_with_a_gateway_queue_are_one_mmc() -> None:
    # Four replicas of one slot behind least-loaded routing hold requests at the gateway until a
    # slot frees: the same M/M/4 as above.
    result = simulate(FleetConfig(4, 1, warmup_fraction=0.05), EXP, 3.0, 200_000, seed=1)
    assert result.mean_wait_s == pytest.approx(mmc_mean_wait(4, 3.0, 1.0), rel=0.04)


def test_random_routing_is_independent_mm1_queues() -> None:
    # Poisson splitting: each of 4 replicas sees rate 2/4 = 0.5, an M/M/1 at rho 0.5.
    result = simulate(FleetConfig(4, 1, "random", warmup_fraction=0.05), EXP, 2.0, 200_000, seed=2)
    assert result.mean_wait_s == pytest.approx(mmc_mean_wait(1, 0.5, 1.0), rel=0.03)
    least = simulate(FleetConfig(4, 1, warmup_fraction=0.05), EXP, 2.0, 200_000, seed=2)
    assert least.mean_wait_s < result.mean_wait_s / 5  # pooling: M/M/4 waits far less


def test_a_seed_repeats_a_run_exactly() -> None:
    config = FleetConfig(3, 2, "prefix", prefix_groups=5, warmup_fraction=0.1)
    a, b = (simulate(config, EXP, 4.0, 5_000, seed=7) for _ in range(2))
    assert np.array_equal(a.latencies_s, b.latencies_s) and np.array_equal(a.waits_s, b.waits_s)
    assert a.num_prefix_hits == b.num_prefix_hits
    c = simulate(config, EXP, 4.0, 5_000, seed=8)
    assert not np.array_equal(a.latencies_s, c.latencies_s)


@dataclass(frozen=True)
class ConstantService:
    seconds_each: float
    noise: Literal["exponential", "normal"] = "exponential"

    def seconds(self, level: int, draw: float) -> float:
        return self.seconds_each * level  # a batch of `level` makes each request `level` times slower


def test_service_time_is_drawn_at_the_level_a_request_starts() -> None:
    # Rate 1e-3/s against 1 s of service: every request finds the fleet empty, starts at level 1,
    # waits nothing and takes exactly 1 s.
    result = simulate(FleetConfig(2, 3, warmup_fraction=0.0), ConstantService(1.0), 1e-3, 200, seed=0)
    assert np.all(result.waits_s == 0.0)
    assert np.allclose(result.latencies_s, 1.0)
    # Prefilled with 3 of 3 slots busy on each replica (service 3 s, already part done), the first
    # request (1 ms in, at 1000/s) waits at the gateway, then starts at level 3 and takes 3 s.
    config = FleetConfig(2, 3, warmup_fraction=0.0)
    full = simulate(config, ConstantService(1.0), 1000.0, 5, seed=0, initial_in_service=3)
    assert full.waits_s[0] > 0.0
    assert full.latencies_s[0] - full.waits_s[0] == pytest.approx(3.0)


def test_prefix_routing_keeps_prefixes_on_their_replica() -> None:
    config = dict(num_replicas=8, num_slots=4, prefix_groups=32, prefix_cache_groups=4, warmup_fraction=0.1)
    least = simulate(FleetConfig(**config), EXP, 16.0, 20_000, seed=3)  # type: ignore[arg-type]
    prefix = simulate(FleetConfig(routing="prefix", **config), EXP, 16.0, 20_000, seed=3)  # type: ignore[arg-type]
    measured = 18_000
    assert prefix.num_prefix_hits / measured > 0.8
    assert least.num_prefix_hits / measured < 0.5
    assert prefix.mean_s < least.mean_s  # a hit costs 0.6 of a miss


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_replicas": 0, "num_slots": 1}, "at least one replica and one slot, got 0 and 1"),
        (
            {"num_replicas": 1, "num_slots": 1, "routing": "round-robin"},
            "routing 'round-robin' is not one of",
        ),
        ({"num_replicas": 1, "num_slots": 1, "routing": "prefix"}, "prefix routing needs prefix groups"),
        ({"num_replicas": 1, "num_slots": 1, "prefix_hit_cost": 0.0}, r"prefix_hit_cost must be in \(0, 1\]"),
        ({"num_replicas": 1, "num_slots": 1, "warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\)"),
    ],
)
def test_fleet_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FleetConfig(**options)  # type: ignore[arg-type]


def test_a_window_needs_a_rate() -> None:
    with pytest.raises(ConfigError, match="a window needs a positive rate"):
        simulate(FleetConfig(1, 1), EXP, 0.0, 100)
