"""Fleet sizing for a day of traffic: how many replicas each hour needs, what latency they give, what
the autoscaler runs and what it costs, and what breaks the SLO first.

A day of 120M requests is too many to simulate one by one in Python, so the day is taken in two
parts (docs/plan.md, "How the fleet is simulated"):

1. steady state, request by request (`simulator.simulate`): for each hour, a window of
   `window_requests` Poisson arrivals at that hour's peak rate finds the fewest replicas whose p99
   meets the SLO, none above `MAX_UTILIZATION` of its most requests per second; one replica's SLO
   rate (what it serves within the SLO in a fleet the size of the peak's) is found the same way, by
   bisection on the rate;
2. the day, second by second (`autoscale.replay_day`): the autoscaler with its start delay and
   cooldown against the day's arrivals with bursts, with a fluid backlog where arrivals outrun the
   replicas; each hour's latency is then simulated with the replicas the autoscaler ran in it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from seekserve.errors import ConfigError
from seekserve.plan.autoscale import AutoscaleConfig, DayReplay, replay_day
from seekserve.plan.profile import ProfileService, ReplicaProfile
from seekserve.plan.simulator import FleetConfig, WindowResult, simulate
from seekserve.plan.traffic import TrafficConfig

__all__ = ["FleetPlan", "FleetSizer", "HourPlan", "plan_fleet"]

_BISECTION_STEPS = 7
_MAX_REPLICAS = 100_000
MAX_UTILIZATION = 0.95
"""No replica is planned above this share of its most requests per second: nearer saturation a queue
takes longer to settle than a window lasts, so a window would flatter it, and any surge tips it over."""


@dataclass(frozen=True)
class HourPlan:
    """One hour of the day."""

    hour: int
    rate: float
    """The hour's highest diurnal rate, requests per second (bursts apart)."""
    needed: int
    """The fewest replicas whose simulated p99 at that rate meets the SLO."""
    ready_median: int
    """Replicas the autoscaler had serving, median over the hour's seconds."""
    ready_max: int
    p50_s: float
    p99_s: float
    """Steady-state latency with the autoscaler's replicas (ready_median) at the hour's rate."""
    at_risk_s: int
    """Seconds of the hour in which the fleet was short of its SLO capacity or had a backlog."""


@dataclass(frozen=True)
class FleetPlan:
    """Everything `seekserve plan fleet` reports."""

    feasible: bool
    slo_p99_s: float
    replica_max_rate: float
    """Requests per second one replica serves at most (its best concurrency)."""
    replica_slo_rate: float
    """Requests per second one replica serves within the SLO in a fleet the size of the peak's."""
    peak_needed: int
    peak_bound: str
    """What sets the peak's replicas: "throughput" (MAX_UTILIZATION of each replica's most requests per
    second, with latency to spare) or "latency" (the p99 SLO)."""
    burst_needed: int
    """Replicas a burst at the peak needs within the SLO (what a fleet without autoscaling must run)."""
    hours: tuple[HourPlan, ...]
    replay: DayReplay | None
    gpu_hours: float
    """GPU-hours the autoscaled fleet runs in the day (starting replicas included)."""
    gpu_hours_hourly: float
    """GPU-hours if each hour ran exactly its needed replicas."""
    gpu_hours_static: float
    """GPU-hours of a fleet sized for a burst at the peak, all day."""
    day_mean_s: float
    day_p50_s: float
    day_p99_s: float
    """Over the day's requests: each hour's steady-state latencies weighted by its traffic."""
    over_slo_share: float
    """Share of the day's requests estimated over the SLO: those over it in the hours' steady states,
    plus every request of an at-risk second (a pessimistic count). Above 1%, the day's p99 misses."""
    breaks_first: str
    num_windows: int
    """Request-level windows simulated."""


def _weighted_percentiles(
    samples: list[np.ndarray], weights: list[float], qs: tuple[float, ...]
) -> list[float]:
    values = np.concatenate(samples)
    w = np.concatenate([np.full(len(s), wt / len(s)) for s, wt in zip(samples, weights, strict=True)])
    order = np.argsort(values)
    cumulative = np.cumsum(w[order]) / w.sum()
    return [float(values[order][np.searchsorted(cumulative, q / 100)]) for q in qs]


class FleetSizer:
    """Steady-state windows for one profile and fleet shape, cached by (replicas, rate)."""

    def __init__(
        self, profile: ReplicaProfile, fleet: FleetConfig, slo_p99_s: float, window_requests: int, seed: int
    ):
        if slo_p99_s <= 0 or window_requests < 1000:
            raise ConfigError(
                "need a positive SLO and at least 1000 requests per window, got "
                f"{slo_p99_s} and {window_requests}"
            )
        self.profile, self.fleet, self.slo = profile, fleet, slo_p99_s
        self.window_requests, self.seed = window_requests, seed
        self.service = ProfileService(profile, fleet.num_slots)
        self.max_rate = profile.max_throughput(fleet.num_slots)
        self._cache: dict[tuple[int, float], WindowResult] = {}

    def window(self, replicas: int, rate: float) -> WindowResult:
        """The steady state of `replicas` at `rate`: a window that starts from the batch at which one
        replica's throughput matches its share of the rate, so that it need not fill up from empty."""
        key = (replicas, round(rate, 6))
        if key not in self._cache:
            fleet = dataclasses.replace(self.fleet, num_replicas=replicas)
            seed = hash((self.seed, replicas, key[1])) & 0xFFFFFFFF
            share = rate / replicas
            level = next(
                (k for k in range(1, fleet.num_slots + 1) if self.profile.at(k).throughput >= share),
                fleet.num_slots,
            )
            self._cache[key] = simulate(fleet, self.service, rate, self.window_requests, seed, level)
        return self._cache[key]

    @property
    def num_windows(self) -> int:
        return len(self._cache)

    def meets(self, replicas: int, rate: float) -> bool:
        """Whether `replicas` at `rate` keep p99 within the SLO and utilization within MAX_UTILIZATION."""
        if rate > MAX_UTILIZATION * self.max_rate * replicas:
            return False
        return self.window(replicas, rate).percentile(99) <= self.slo

    def replicas_needed(self, rate: float, guess: int = 1) -> int:
        """The fewest replicas whose p99 at `rate` meets the SLO (p99 falls as replicas are added)."""
        low = max(1, math.ceil(rate / (MAX_UTILIZATION * self.max_rate)))
        n = max(low, guess)
        if self.meets(n, rate):
            while n > low and self.meets(n - 1, rate):
                n -= 1
            return n
        step = 1
        while not self.meets(n + step, rate):
            if n + step > _MAX_REPLICAS:
                raise ConfigError(f"more than {_MAX_REPLICAS} replicas would be needed at {rate:.1f} req/s")
            n, step = n + step, step * 2
        low, high = n, n + step  # low fails, high meets
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if self.meets(mid, rate) else (mid, high)
        return high

    def slo_rate(self, replicas: int, fleet_rate: float) -> float:
        """Requests per second per replica at which `replicas` just meet the SLO (bisection)."""
        low, high = fleet_rate / replicas, MAX_UTILIZATION * self.max_rate
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2
            low, high = (mid, high) if self.meets(replicas, mid * replicas) else (low, mid)
        return low


def _alone_breaks(sizer: FleetSizer) -> str | None:
    first = sizer.profile.at(1)
    if first.p99_s > sizer.slo:
        return (
            f"the replica itself: its p99 with one request in flight is {first.p99_s:.2f} s, over the "
            f"{sizer.slo:.2f} s SLO, so no number of replicas meets it; a faster replica is needed "
            "(shorter outputs, a smaller model, more GPUs per replica)"
        )
    return None


def _clock(t_s: int) -> str:
    return f"{t_s // 3600:02d}:{t_s // 60 % 60:02d}:{t_s % 60:02d}"


def _breaks_first(
    replay: DayReplay, traffic: TrafficConfig, autoscale: AutoscaleConfig, slo_rate: float, max_rate: float
) -> str:
    share = replay.at_risk_share
    tail = (
        f"; {share:.2%} of the day's requests arrived in at-risk seconds"
        + (" (over 1%: the day's p99 misses the SLO)" if share > 0.01 else "")
        + f", the longest backlog wait {replay.max_wait_s(max_rate):.1f} s"
    )
    breach = replay.first_breach
    if breach is None:
        return (
            "nothing in this day: the autoscaled fleet met its SLO capacity every second; the first limit "
            "as traffic grows is the autoscaler's headroom: a rise of more than "
            f"{1 / autoscale.target_utilization:.2f}x within {autoscale.start_s:.0f} s (a replica's start) "
            f"outruns it (one replica serves {slo_rate:.1f} req/s within the SLO, {max_rate:.1f} at most)"
        )
    at, short = _clock(breach.t_s), f"{breach.ready} replicas ready, {breach.needed} needed"
    if breach.cause == "burst":
        return (
            f"a burst at {at} (x{traffic.burst_factor:g} for {traffic.burst_s:.0f} s): {short}; "
            f"a new replica serves {autoscale.start_s:.0f} s after it is asked for, "
            f"plus up to {autoscale.interval_s} s until the autoscaler looks{tail}"
        )
    if breach.cause == "ramp":
        return (
            f"the traffic ramp at {at}: arrivals grew faster than replicas start "
            f"({autoscale.start_s:.0f} s): {short}{tail}"
        )
    if breach.cause == "max_replicas":
        return f"the replica limit at {at}: {short}, at most {autoscale.max_replicas} allowed{tail}"
    return (
        f"the autoscaler's headroom at {at}: at {autoscale.target_utilization:.0%} of the SLO rate, "
        f"fluctuations outran the replicas: {short}{tail}"
    )


def _hour(
    sizer: FleetSizer, hour: int, rate: float, needed: int, replay: DayReplay
) -> tuple[HourPlan, WindowResult]:
    seconds = slice(hour * 3600, (hour + 1) * 3600)
    ready = replay.ready[seconds]
    median = max(1, int(np.median(ready)))
    window = sizer.window(median, rate)
    plan = HourPlan(
        hour,
        rate,
        needed,
        median,
        int(ready.max()),
        window.percentile(50),
        window.percentile(99),
        int(replay.at_risk[seconds].sum()),
    )
    return plan, window


def plan_fleet(
    traffic: TrafficConfig,
    sizer: FleetSizer,
    autoscale: AutoscaleConfig,
) -> FleetPlan:
    """Size the fleet for a day of `traffic` (see the module's docstring)."""
    gpus = sizer.profile.gpus_per_replica
    alone = _alone_breaks(sizer)
    if alone:
        nan = math.nan
        return FleetPlan(
            False,
            sizer.slo,
            sizer.max_rate,
            0.0,
            0,
            "latency",
            0,
            (),
            None,
            0.0,
            0.0,
            0.0,
            nan,
            nan,
            nan,
            1.0,
            alone,
            0,
        )
    hour_rates = [traffic.hour_peak_rate(h) for h in range(24)]
    peak = max(hour_rates)
    peak_needed = sizer.replicas_needed(peak)
    slo_rate = sizer.slo_rate(peak_needed, peak)
    needed = [sizer.replicas_needed(r, math.ceil(r / slo_rate)) for r in hour_rates]
    burst_rate = peak * traffic.burst_factor
    burst_needed = sizer.replicas_needed(burst_rate, math.ceil(burst_rate / slo_rate))
    replay = replay_day(autoscale, traffic, slo_rate, sizer.max_rate, np.random.default_rng(sizer.seed))
    hours, windows = zip(*(_hour(sizer, h, hour_rates[h], needed[h], replay) for h in range(24)), strict=True)
    weights = [float(replay.arrivals[h * 3600 : (h + 1) * 3600].sum()) for h in range(24)]
    p50, p99 = _weighted_percentiles([w.latencies_s for w in windows], weights, (50, 99))
    steady_over = sum(
        wt * float((w.latencies_s > sizer.slo).mean()) for w, wt in zip(windows, weights, strict=True)
    )
    risk = replay.at_risk_share
    over = risk + (1 - risk) * steady_over / sum(weights)
    return FleetPlan(
        feasible=True,
        slo_p99_s=sizer.slo,
        replica_max_rate=sizer.max_rate,
        replica_slo_rate=slo_rate,
        peak_needed=peak_needed,
        peak_bound="throughput"
        if peak_needed == math.ceil(peak / (MAX_UTILIZATION * sizer.max_rate))
        else "latency",
        burst_needed=burst_needed,
        hours=tuple(hours),
        replay=replay,
        gpu_hours=float(replay.provisioned.sum()) * gpus / 3600,
        gpu_hours_hourly=float(sum(needed)) * gpus,
        gpu_hours_static=burst_needed * 24.0 * gpus,
        day_mean_s=sum(w.mean_s * wt for w, wt in zip(windows, weights, strict=True)) / sum(weights),
        day_p50_s=p50,
        day_p99_s=p99,
        over_slo_share=over,
        breaks_first=_breaks_first(replay, traffic, autoscale, slo_rate, sizer.max_rate),
        num_windows=sizer.num_windows,
    )
