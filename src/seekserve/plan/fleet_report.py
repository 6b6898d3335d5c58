"""What `seekserve plan fleet` prints: the assumptions, replicas and latency per hour, the day's cost
and latency, and what breaks the SLO first; or all of it as one JSON object."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from seekserve.plan.autoscale import AutoscaleConfig
from seekserve.plan.fleet import FleetPlan
from seekserve.plan.profile import ReplicaProfile
from seekserve.plan.simulator import FleetConfig
from seekserve.plan.traffic import DAY_S, TrafficConfig

__all__ = ["fleet_dict", "print_fleet"]


_BOUND = {
    "throughput": "throughput: 95% of a replica's most requests per second, with latency to spare",
    "latency": "the p99 SLO",
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def fleet_dict(
    plan: FleetPlan,
    traffic: TrafficConfig,
    profile: ReplicaProfile,
    fleet: FleetConfig,
    autoscale: AutoscaleConfig,
    method: dict[str, Any],
) -> dict[str, Any]:
    """The fleet plan as one JSON-ready object."""
    replay = plan.replay
    bursts = [] if replay is None else replay.bursts
    return {
        "feasible": plan.feasible,
        "slo_p99_s": plan.slo_p99_s,
        "traffic": {
            **dataclasses.asdict(traffic),
            "requests_per_day": traffic.mean_rate * DAY_S,
            "bursts": [dataclasses.asdict(b) for b in bursts],
        },
        "profile": {
            "name": profile.name,
            "source": profile.source,
            "gpus_per_replica": profile.gpus_per_replica,
            "points": [dataclasses.asdict(p) | {"throughput": p.throughput} for p in profile.points],
        },
        "fleet": {k: v for k, v in dataclasses.asdict(fleet).items() if k != "num_replicas"},
        "autoscale": dataclasses.asdict(autoscale),
        "replica_max_rate": plan.replica_max_rate,
        "replica_slo_rate": plan.replica_slo_rate,
        "peak_replicas_needed": plan.peak_needed,
        "peak_bound_by": plan.peak_bound,
        "burst_replicas_needed": plan.burst_needed,
        "hours": [dataclasses.asdict(h) for h in plan.hours],
        "gpu_hours": {
            "autoscaled": plan.gpu_hours,
            "hourly_needed": plan.gpu_hours_hourly,
            "static_for_bursts": plan.gpu_hours_static,
        },
        "day": {
            "mean_s": _finite(plan.day_mean_s),
            "p50_s": _finite(plan.day_p50_s),
            "p99_s": _finite(plan.day_p99_s),
            "over_slo_share": plan.over_slo_share,
            "at_risk_share": None if replay is None else replay.at_risk_share,
            "max_backlog_wait_s": None if replay is None else replay.max_wait_s(plan.replica_max_rate),
        },
        "breaks_first": plan.breaks_first,
        "method": method,
    }


def _hours_table(data: dict[str, Any]) -> Table:
    table = Table(title="Per hour (steady state at the hour's peak rate)", title_justify="left")
    for name in ("hour", "req/s", "needed", "autoscaled", "max", "p50 ms", "p99 ms", "at-risk s"):
        table.add_column(name, justify="right")
    slo = data["slo_p99_s"]
    for h in data["hours"]:
        p99 = f"{h['p99_s'] * 1e3:,.0f}"
        table.add_row(
            f"{h['hour']:02d}",
            f"{h['rate']:,.0f}",
            str(h["needed"]),
            str(h["ready_median"]),
            str(h["ready_max"]),
            f"{h['p50_s'] * 1e3:,.0f}",
            p99 if h["p99_s"] <= slo else f"[red]{p99}[/]",
            str(h["at_risk_s"]),
        )
    return table


def print_fleet(data: dict[str, Any], console: Console | None = None) -> None:
    """The fleet plan as text."""
    console = console or Console()
    t, p, a = data["traffic"], data["profile"], data["autoscale"]
    console.print(
        f"[bold]traffic[/]: {t['requests_per_day'] / 1e6:,.1f}M requests/day ({t['mean_rate']:,.1f}/s mean, "
        f"peak {t['peak_to_mean']:g}x at {t['peak_hour']:g}:00, {len(t['bursts'])} bursts of "
        f"x{t['burst_factor']:g} for {t['burst_s']:g} s); SLO p99 <= {data['slo_p99_s'] * 1e3:,.0f} ms"
    )
    console.print(f"[bold]replica[/] ({p['gpus_per_replica']} GPUs): {p['source']}", highlight=False)
    if not data["feasible"]:
        console.print(f"[red]breaks first[/]: {data['breaks_first']}")
        return
    console.print(
        f"one replica serves {data['replica_max_rate']:,.1f} req/s at most, {data['replica_slo_rate']:,.1f} "
        f"within the SLO; autoscaler: start {a['start_s']:g} s, cooldown {a['cooldown_s']:g} s, every "
        f"{a['interval_s']} s, target {a['target_utilization']:.0%}"
    )
    console.print(_hours_table(data))
    g, d = data["gpu_hours"], data["day"]
    console.print(
        f"replicas: {data['peak_replicas_needed']} at the peak (set by {_BOUND[data['peak_bound_by']]}), "
        f"{data['burst_replicas_needed']} for a "
        f"burst at the peak; GPU-hours/day: {g['autoscaled']:,.0f} autoscaled, "
        f"{g['hourly_needed']:,.0f} if each hour ran exactly what it needs, "
        f"{g['static_for_bursts']:,.0f} sized for bursts all day"
    )
    console.print(
        f"day: mean {d['mean_s'] * 1e3:,.0f} ms, p50 {d['p50_s'] * 1e3:,.0f} ms, "
        f"p99 {d['p99_s'] * 1e3:,.0f} ms in steady state; "
        f"{d['over_slo_share']:.2%} of requests estimated over the SLO "
        + ("([green]p99 met[/])" if d["over_slo_share"] <= 0.01 else "([red]p99 missed[/])")
    )
    console.print(f"[bold]breaks first[/]: {data['breaks_first']}")
    m = data["method"]
    console.print(
        f"[dim]{m['num_windows']} request-level windows of {m['window_requests']:,} requests and a "
        f"second-by-second day, seed {m['seed']}, in {m['elapsed_s']:.1f} s[/]"
    )
