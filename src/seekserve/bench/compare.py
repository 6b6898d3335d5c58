"""Run one scenario on several servers, interleaved, and tabulate medians and ratios.

A scenario names its servers (command templates), its workloads (BenchConfig options without
base_url and model) and the figures to compare. Each repeat runs every workload on every
server in turn (A, B, A, B, ...), so slow drifts of a shared machine hit all servers alike;
the table gives the median over repeats and each server's ratio to the baseline (the first).

Isolated (the default), only one server is up at a time: each is started for its turn (all
workloads of one repeat) and stopped after it. Otherwise all start first and stay up, and the
servers alternate on every workload; faster, but an idle server's background work may disturb
the others.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seekserve.bench.config import BenchConfig
from seekserve.bench.report import result_dict
from seekserve.bench.runner import BenchRun, run
from seekserve.bench.servers import ManagedServer, ServerSpec
from seekserve.errors import ConfigError

__all__ = [
    "Metric",
    "Scenario",
    "ScenarioResult",
    "Workload",
    "markdown_table",
    "run_scenario",
    "summary_metric",
]


@dataclass(frozen=True)
class Metric:
    """One compared figure of a run."""

    label: str
    """Row name, unit included, e.g. "TTFT median (ms)"."""

    extract: Callable[[BenchRun], float | None]
    """The figure of one run (None when the run has none)."""

    higher_is_better: bool = False


def summary_metric(label: str, path: str, scale: float = 1.0, higher_is_better: bool = False) -> Metric:
    """A metric read from the summary by dotted path, e.g. ("TTFT p99 (ms)", "ttft.p99", 1e3)."""

    def extract(run: BenchRun) -> float | None:
        value: Any = run.summary
        for part in path.split("."):
            value = getattr(value, part, None)
            if value is None:
                return None
        return float(value) * scale

    return Metric(label, extract, higher_is_better)


@dataclass(frozen=True)
class Workload:
    """One load: BenchConfig options (everything but base_url and model)."""

    name: str
    options: dict[str, Any]
    calibrate: float | None = None
    """If set: first run this workload all at once on the calibration server and send the real runs
    at this fraction of the request throughput it reached (a rate "near saturation")."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    servers: tuple[ServerSpec, ...]
    workloads: tuple[Workload, ...]
    metrics: tuple[Metric, ...]
    calibration_server: str | None = None
    """The server calibrated workloads measure their saturation on (default: the last)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.servers]
        if len(names) < 1 or len(set(names)) != len(names):
            raise ConfigError(f"scenario {self.name!r} needs servers with distinct names, got {names}")


@dataclass
class ScenarioResult:
    scenario: Scenario
    runs: list[dict[str, Any]] = field(default_factory=list)
    """One entry per run: server, workload, repeat, figures by metric label, the JSON result."""
    rates: dict[str, float] = field(default_factory=dict)
    """Calibrated request rates by workload."""

    def medians(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """workload -> metric label -> server -> median over repeats."""
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        for w in self.scenario.workloads:
            for m in self.scenario.metrics:
                row = out.setdefault(w.name, {}).setdefault(m.label, {})
                for s in self.scenario.servers:
                    values = [
                        r["figures"][m.label]
                        for r in self.runs
                        if r["server"] == s.name
                        and r["workload"] == w.name
                        and r["figures"][m.label] is not None
                    ]
                    row[s.name] = statistics.median(values) if values else None
        return out

    def to_json(self) -> dict[str, Any]:
        medians = self.medians()
        base = self.scenario.servers[0].name
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "servers": [dataclasses.asdict(s) for s in self.scenario.servers],
            "baseline": base,
            "calibrated_rates": self.rates,
            "medians": medians,
            "ratios": {
                w: {m: {s: ratio(v, row[base]) for s, v in row.items()} for m, row in rows.items()}
                for w, rows in medians.items()
            },
            "runs": self.runs,
        }


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, None when either is missing or base is 0."""
    if value is None or not base:
        return None
    return value / base


def _bench(server: ManagedServer, options: Mapping[str, Any], label: str) -> BenchRun:
    assert server.model is not None, "the server is started"
    config = BenchConfig(base_url=server.base_url, model=server.model, label=label, **options)
    return run(config)


def run_scenario(
    scenario: Scenario,
    out_dir: Path,
    values: Mapping[str, str] | None = None,
    repeats: int = 3,
    isolate: bool = True,
    log: Callable[[str], None] = print,
) -> ScenarioResult:
    """Run every workload `repeats` times on every server, interleaved; logs go to `out_dir`."""
    if repeats < 1:
        raise ConfigError(f"repeats={repeats} is invalid: give at least 1")
    result = ScenarioResult(scenario)
    servers = {s.name: ManagedServer(s, out_dir / "logs", values) for s in scenario.servers}
    try:
        if not isolate:
            for server in servers.values():
                _start(server, log)
        _calibrate(scenario, servers, result, isolate, log)
        for repeat in range(repeats):
            for spec, workloads in _turns(scenario, isolate):
                server = servers[spec.name]
                if isolate:
                    _start(server, log)
                try:
                    for w in workloads:
                        _run_workload(result, server, w, repeat, log)
                finally:
                    if isolate:
                        server.stop()
    finally:
        for server in servers.values():
            server.stop()
    return result


def _turns(scenario: Scenario, isolate: bool) -> list[tuple[ServerSpec, tuple[Workload, ...]]]:
    """One repeat's order: isolated, each server runs all workloads in its one start (A: w1 w2,
    B: w1 w2); all up, servers alternate on each workload (w1: A B, w2: A B)."""
    if isolate:
        return [(spec, scenario.workloads) for spec in scenario.servers]
    return [(spec, (w,)) for w in scenario.workloads for spec in scenario.servers]


def _run_workload(
    result: ScenarioResult, server: ManagedServer, w: Workload, repeat: int, log: Callable[[str], None]
) -> None:
    options = {**w.options, **({"request_rate": result.rates[w.name]} if w.calibrate else {})}
    run_ = _bench(server, options, f"{server.spec.name}/{w.name}/{repeat}")
    figures = {m.label: m.extract(run_) for m in result.scenario.metrics}
    entry = {"server": server.spec.name, "workload": w.name, "repeat": repeat, "figures": figures}
    result.runs.append({**entry, "result": result_dict(run_)})
    log(f"  {server.spec.name:>12} {w.name}: " + _brief(figures))


def _start(server: ManagedServer, log: Callable[[str], None]) -> None:
    started = time.monotonic()
    server.start()
    elapsed = time.monotonic() - started
    log(f"{server.spec.name} ready at {server.base_url} in {elapsed:.1f} s (model {server.model})")


def _calibrate(
    scenario: Scenario,
    servers: Mapping[str, ManagedServer],
    result: ScenarioResult,
    isolate: bool,
    log: Callable[[str], None],
) -> None:
    workloads = [w for w in scenario.workloads if w.calibrate]
    if not workloads:
        return
    server = servers[scenario.calibration_server or scenario.servers[-1].name]
    if isolate:
        _start(server, log)
    try:
        for w in workloads:
            options = {
                k: v for k, v in w.options.items() if k not in ("request_rate", "arrival", "burstiness")
            }
            run_ = _bench(server, options, f"calibrate/{w.name}")
            assert w.calibrate is not None, "filtered above"
            result.rates[w.name] = w.calibrate * run_.summary.request_throughput
            log(
                f"calibrated {w.name}: {run_.summary.request_throughput:.3f} req/s at saturation on "
                f"{server.spec.name}; runs use {result.rates[w.name]:.3f} req/s"
            )
    finally:
        if isolate:
            server.stop()


def _brief(figures: Mapping[str, float | None]) -> str:
    return ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} -" for k, v in figures.items())


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown_table(result: ScenarioResult) -> str:
    """Medians per server and ratios to the baseline, one row per workload and metric."""
    servers = [s.name for s in result.scenario.servers]
    base, others = servers[0], servers[1:]
    head = ["workload", "metric", *servers, *(f"{s} / {base}" for s in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    medians = result.medians()
    for w in result.scenario.workloads:
        for m in result.scenario.metrics:
            row = medians[w.name][m.label]
            ratios = []
            for s in others:
                r = ratio(row[s], row[base])
                better = r is not None and r != 1 and (r > 1) == m.higher_is_better
                verdict = "better" if better else "worse" if r is not None and r != 1 else "same"
                ratios.append("-" if r is None else f"{r:.2f}x ({(r - 1) * 100:+.0f} %, {verdict})")
            lines.append(
                "| " + " | ".join([w.name, m.label, *(_fmt(row[s]) for s in servers), *ratios]) + " |"
            )
    return "\n".join(lines) + "\n"


def stream_figure(
    indices: Sequence[int], figure: Callable[[list[float]], float]
) -> Callable[[BenchRun], float | None]:
    """An extractor over the longest gaps of the given streams (by send index), e.g. their max."""

    def extract(run_: BenchRun) -> float | None:
        gaps = [g for r in run_.records if r.index in indices and r.ok and (g := r.max_gap_s) is not None]
        return figure(gaps) if gaps else None

    return extract
