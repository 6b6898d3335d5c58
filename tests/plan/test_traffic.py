"""Traffic rates as written, the diurnal curve and bursts."""

from __future__ import annotations

import numpy as np
import pytest

from seekserve.errors import ConfigError
from seekserve.plan.traffic import DAY_S, Burst, TrafficConfig, parse_rate, parse_seconds


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("120M/day", 120e6 / 86400),
        ("1400/s", 1400.0),
        ("5k/min", 5000 / 60),
        ("2.5M/h", 2.5e6 / 3600),
        ("1B / d", 1e9 / 86400),
    ],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


def test_parse_seconds() -> None:
    assert parse_seconds("1.5s") == parse_seconds("1500ms") == parse_seconds("1.5") == 1.5


@pytest.mark.parametrize(
    ("call", "text", "message"),
    [
        (parse_rate, "120M", "cannot read traffic '120M': write COUNT/UNIT"),
        (parse_rate, "10/week", "cannot read traffic '10/week'"),
        (parse_rate, "0/s", "is zero"),
        (parse_seconds, "fast", "cannot read a duration from 'fast'"),
        (parse_seconds, "0ms", "must be positive"),
    ],
)
def test_parse_errors(call: object, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(text)  # type: ignore[operator]


def test_the_diurnal_curve_keeps_the_day_total() -> None:
    traffic = TrafficConfig(1000.0, peak_to_mean=1.5, peak_hour=14.0)
    rates = traffic.rate_per_second([])
    assert rates.shape == (DAY_S,)
    assert rates.mean() == pytest.approx(1000.0, rel=1e-9)
    assert traffic.diurnal_rate(14 * 3600.0) == pytest.approx(1500.0)
    assert traffic.diurnal_rate(2 * 3600.0) == pytest.approx(500.0)  # 12 h from the peak: the trough
    assert traffic.hour_peak_rate(14) == pytest.approx(1500.0)
    assert traffic.hour_peak_rate(3) == pytest.approx(
        traffic.diurnal_rate(4 * 3600.0)
    )  # rising: the hour's end


def test_bursts_multiply_the_rate_for_their_length() -> None:
    traffic = TrafficConfig(100.0, peak_to_mean=1.0, burst_factor=3.0, burst_s=120.0)
    rates = traffic.rate_per_second([Burst(1000.0, 1120.0, 3.0)])
    assert rates[999] == pytest.approx(100.0) and rates[1120] == pytest.approx(100.0)
    assert np.allclose(rates[1000:1120], 300.0)
    a, b = (traffic.bursts(np.random.default_rng(5)) for _ in range(2))
    assert a == b and all(x.end_s - x.start_s == 120.0 and x.factor == 3.0 for x in a)
    assert TrafficConfig(100.0, bursts_per_day=0).bursts(np.random.default_rng(5)) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mean_rate": 0.0}, "mean_rate must be positive"),
        ({"peak_to_mean": 2.0}, r"peak_to_mean must be in \[1, 2\)"),
        ({"peak_hour": 24.0}, r"peak_hour must be in \[0, 24\)"),
        ({"burst_factor": 0.5}, "burst_factor >= 1"),
    ],
)
def test_traffic_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrafficConfig(**{"mean_rate": 10.0, **options})
