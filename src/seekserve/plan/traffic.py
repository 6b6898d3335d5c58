"""A day of traffic: a mean rate shaped by a diurnal curve, with bursts on top.

    rate(t) = mean × (1 + (peak_to_mean - 1) × cos(2π (t - peak_hour) / 24 h)) × burst(t)

The cosine averages to 1 over the day, so the day carries mean × 86,400 requests before bursts; a
peak of 1.5 × the mean has its trough at 0.5 ×. Bursts multiply the rate by `burst_factor` for
`burst_s` seconds; their number is Poisson with mean `bursts_per_day` and their starts uniform over the
day, drawn from the seed. Arrivals are a non-homogeneous Poisson process: the count in each second is
Poisson with that second's rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from seekserve.errors import ConfigError

__all__ = ["DAY_S", "Burst", "TrafficConfig", "parse_rate", "parse_seconds"]

DAY_S = 86_400
_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": DAY_S, "day": DAY_S}
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmbg]?)\s*/\s*([a-z]+)\s*$", re.IGNORECASE)
_SECONDS = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """Requests per second from `120M/day`, `1389/s`, `5k/min`, `2.5M/h`."""
    match = _RATE.match(text)
    unit = match and _UNITS.get(match.group(3).lower())
    if not match or not unit:
        raise ConfigError(
            f"cannot read traffic {text!r}: write COUNT/UNIT with an optional k, M or B, "
            "unit s, min, h or day, e.g. 120M/day or 1400/s"
        )
    rate = float(match.group(1)) * _SCALE[match.group(2).lower()] / unit
    if rate <= 0:
        raise ConfigError(f"traffic {text!r} is zero: give a positive rate")
    return rate


def parse_seconds(text: str) -> float:
    """Seconds from `1.5s`, `1500ms` or `1.5`."""
    match = _SECONDS.match(text)
    if not match:
        raise ConfigError(f"cannot read a duration from {text!r}: write e.g. 1.5s or 1500ms")
    value = float(match.group(1)) / (1000 if (match.group(2) or "").lower() == "ms" else 1)
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return value


@dataclass(frozen=True)
class Burst:
    """The rate times `factor` from `start_s` to `end_s` (seconds of the day)."""

    start_s: float
    end_s: float
    factor: float


@dataclass(frozen=True)
class TrafficConfig:
    """The day's arrivals."""

    mean_rate: float
    """Requests per second averaged over the day (120M/day is 1,388.9/s)."""
    peak_to_mean: float = 1.5
    """The diurnal peak over the day's mean (1: flat; the trough is 2 - this)."""
    peak_hour: float = 14.0
    """Hour of the day at which traffic peaks."""
    bursts_per_day: float = 4.0
    """Mean number of bursts in a day."""
    burst_factor: float = 2.0
    """A burst multiplies the rate by this."""
    burst_s: float = 120.0
    """How long a burst lasts."""

    def __post_init__(self) -> None:
        if self.mean_rate <= 0:
            raise ConfigError(f"mean_rate must be positive, got {self.mean_rate}")
        if not 1.0 <= self.peak_to_mean < 2.0:
            raise ConfigError(
                f"peak_to_mean must be in [1, 2) (the trough is 2 - it), got {self.peak_to_mean}"
            )
        if not 0.0 <= self.peak_hour < 24.0:
            raise ConfigError(f"peak_hour must be in [0, 24), got {self.peak_hour}")
        if self.bursts_per_day < 0 or self.burst_factor < 1.0 or not 0 < self.burst_s <= 3600:
            raise ConfigError(
                "bursts: bursts_per_day >= 0, burst_factor >= 1 and 0 < burst_s <= 3600, got "
                f"{self.bursts_per_day}, {self.burst_factor}, {self.burst_s}"
            )

    def diurnal_rate(self, t_s: np.ndarray | float) -> np.ndarray:
        """The rate without bursts at times of day `t_s` (seconds)."""
        phase = 2 * math.pi * (np.asarray(t_s, dtype=np.float64) / 3600.0 - self.peak_hour) / 24.0
        return self.mean_rate * (1.0 + (self.peak_to_mean - 1.0) * np.cos(phase))

    def hour_peak_rate(self, hour: int) -> float:
        """The highest diurnal rate within `hour` (sampled each minute)."""
        return float(self.diurnal_rate(hour * 3600.0 + np.arange(61) * 60.0).max())

    def bursts(self, rng: np.random.Generator) -> list[Burst]:
        count = int(rng.poisson(self.bursts_per_day))
        starts = np.sort(rng.uniform(0, DAY_S - self.burst_s, size=count))
        return [Burst(float(s), float(s) + self.burst_s, self.burst_factor) for s in starts]

    def rate_per_second(self, bursts: list[Burst]) -> np.ndarray:
        """The rate of every second of the day, bursts included: [86400]."""
        rate = self.diurnal_rate(np.arange(DAY_S) + 0.5)
        for b in bursts:
            rate[int(b.start_s) : math.ceil(b.end_s)] *= b.factor
        return rate
