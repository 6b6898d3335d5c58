"""The autoscaler over a whole day, second by second, against the day's arrivals.

Every `interval_s` the autoscaler reads the mean arrival rate of the last `window_s` seconds and wants
ceil(rate / (target_utilization × slo_rate)) replicas, within [min_replicas, max_replicas], where
`slo_rate` is what one replica serves within the SLO (found by simulation, `plan/fleet.py`). More than
it has: it starts the difference, each serving `start_s` later (loading weights, warming up). Fewer: it
scales down only to the most it wanted over the last `cooldown_s` (Kubernetes' scale-down
stabilization window), cancelling replicas still starting first.

Each second the ready replicas serve up to `max_rate` requests each; arrivals beyond that wait in a
backlog (a fluid queue: requests, not individuals, since a request-level simulation of 120M requests is
out of reach). A second is *at risk* when the arrivals of the last 10 s exceed the ready replicas'
SLO capacity, or a backlog is waiting: its requests see more than the steady-state p99.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from seekserve.errors import ConfigError
from seekserve.plan.traffic import DAY_S, Burst, TrafficConfig

__all__ = ["AutoscaleConfig", "Breach", "DayReplay", "replay_day"]

_SMOOTH_S = 10


@dataclass(frozen=True)
class AutoscaleConfig:
    """How replicas are added and removed."""

    start_s: float = 180.0
    """Seconds from asking for a replica to its first answer (the field guide: 3 minutes to load on an
    untuned host, 45 s tuned)."""
    cooldown_s: float = 600.0
    """Scale down only to the most replicas wanted over this many seconds."""
    interval_s: int = 15
    """The autoscaler decides this often."""
    window_s: int = 60
    """It reads the mean arrival rate over this many past seconds."""
    target_utilization: float = 0.8
    """It keeps each replica at this share of what the replica serves within the SLO."""
    min_replicas: int = 1
    """The fewest replicas it keeps, however low the traffic."""
    max_replicas: int | None = None
    """The most replicas it may run (unset: no limit)."""

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.cooldown_s < 0:
            raise ConfigError(
                f"start_s and cooldown_s must be >= 0, got {self.start_s} and {self.cooldown_s}"
            )
        if self.interval_s < 1 or self.window_s < 1:
            raise ConfigError(
                f"interval_s and window_s must be >= 1, got {self.interval_s} and {self.window_s}"
            )
        if not 0 < self.target_utilization <= 1:
            raise ConfigError(f"target_utilization must be in (0, 1], got {self.target_utilization}")
        if self.min_replicas < 1 or (self.max_replicas is not None and self.max_replicas < self.min_replicas):
            raise ConfigError(
                "replicas: need 1 <= min_replicas <= max_replicas, got "
                f"{self.min_replicas} and {self.max_replicas}"
            )

    def wanted(self, rate: float, slo_rate: float) -> int:
        n = max(self.min_replicas, math.ceil(rate / (self.target_utilization * slo_rate)))
        return n if self.max_replicas is None else min(n, self.max_replicas)


@dataclass(frozen=True)
class Breach:
    """The first at-risk second of the day and why."""

    t_s: int
    cause: str
    """burst, ramp (replicas still starting), max_replicas, or headroom (the target runs too hot)."""
    ready: int
    needed: int
    """Replicas the arrivals of that moment need within the SLO."""


@dataclass(frozen=True)
class DayReplay:
    """Per second of the day: [86400] each."""

    bursts: tuple[Burst, ...]
    arrivals: np.ndarray
    ready: np.ndarray
    provisioned: np.ndarray
    """Ready plus starting replicas: what the GPUs cost."""
    backlog: np.ndarray
    at_risk: np.ndarray
    first_breach: Breach | None

    @property
    def at_risk_share(self) -> float:
        """Share of the day's requests that arrived in an at-risk second."""
        return float(self.arrivals[self.at_risk].sum() / max(1, self.arrivals.sum()))

    def max_wait_s(self, max_rate: float) -> float:
        """The longest wait the backlog implies (backlog / what the ready replicas serve per second)."""
        return float((self.backlog / (np.maximum(self.ready, 1) * max_rate)).max())


class _Scaler:
    """Replica counts as the autoscaler changes them."""

    def __init__(self, config: AutoscaleConfig, ready: int):
        self.config = config
        self.ready = ready
        self.starting: deque[float] = deque()  # when each starting replica serves, oldest first
        self.history: deque[tuple[int, int]] = deque()  # (second, replicas wanted)

    def tick(self, t: int) -> None:
        while self.starting and self.starting[0] <= t:
            self.starting.popleft()
            self.ready += 1

    def decide(self, t: int, wanted: int) -> None:
        self.history.append((t, wanted))
        while self.history[0][0] < t - self.config.cooldown_s:
            self.history.popleft()
        total = self.ready + len(self.starting)
        if wanted > total:
            self.starting.extend([t + self.config.start_s] * (wanted - total))
            return
        excess = total - max(w for _, w in self.history)
        while excess > 0 and self.starting:
            self.starting.pop()
            excess -= 1
        self.ready -= max(0, excess)


def replay_day(
    config: AutoscaleConfig,
    traffic: TrafficConfig,
    slo_rate: float,
    max_rate: float,
    rng: np.random.Generator,
    bursts: list[Burst] | None = None,
) -> DayReplay:
    """Replay a day of `traffic` against the autoscaler; bursts are drawn from `rng` unless given."""
    bursts = traffic.bursts(rng) if bursts is None else bursts
    rates = traffic.rate_per_second(bursts)
    diurnal = traffic.diurnal_rate(np.arange(DAY_S) + 0.5)
    arrivals = rng.poisson(rates).astype(np.float64)
    scaler = _Scaler(config, config.wanted(float(rates[0]), slo_rate))
    ready, provisioned, backlog = (np.zeros(DAY_S) for _ in range(3))
    queued = 0.0
    for t in range(DAY_S):
        scaler.tick(t)
        if t and t % config.interval_s == 0:
            recent = arrivals[max(0, t - config.window_s) : t]
            scaler.decide(t, config.wanted(float(recent.mean()), slo_rate))
        ready[t], provisioned[t] = scaler.ready, scaler.ready + len(scaler.starting)
        queued = max(0.0, queued + arrivals[t] - scaler.ready * max_rate)
        backlog[t] = queued
    recent_rate = np.convolve(arrivals, np.ones(_SMOOTH_S) / _SMOOTH_S)[:DAY_S]
    at_risk = (recent_rate > ready * slo_rate) | (backlog > 0)
    return DayReplay(
        tuple(bursts),
        arrivals,
        ready,
        provisioned,
        backlog,
        at_risk,
        _first_breach(config, at_risk, rates, diurnal, ready, provisioned, recent_rate, slo_rate),
    )


def _first_breach(
    config: AutoscaleConfig,
    at_risk: np.ndarray,
    rates: np.ndarray,
    diurnal: np.ndarray,
    ready: np.ndarray,
    provisioned: np.ndarray,
    recent_rate: np.ndarray,
    slo_rate: float,
) -> Breach | None:
    hits = np.flatnonzero(at_risk)
    if not len(hits):
        return None
    t = int(hits[0])
    needed = math.ceil(max(rates[t], recent_rate[t]) / slo_rate)
    if rates[t] > diurnal[t] * 1.0001:
        cause = "burst"
    elif config.max_replicas is not None and needed > config.max_replicas:
        cause = "max_replicas"
    elif provisioned[t] > ready[t]:
        cause = "ramp"
    else:
        cause = "headroom"
    return Breach(t, cause, int(ready[t]), needed)
