"""What a run shows: a progress bar while it runs, a table at the end, a JSON result file."""

from __future__ import annotations

import dataclasses
import json
import math
import platform
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seekserve import __version__
from seekserve.bench.metrics import BenchSummary, Distribution, RequestRecord
from seekserve.bench.runner import BenchRun

__all__ = ["ProgressReporter", "print_summary", "result_dict", "write_json"]

_ROWS = (
    ("TTFT", "ttft"),
    ("TPOT", "tpot"),
    ("ITL", "itl"),
    ("E2E latency", "e2e"),
    ("Longest gap/stream", None),
    ("Send lag", "send_lag"),
)


class ProgressReporter:
    """A rich progress bar of finished and failed requests (on stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]requests"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            refresh_per_second=4,
            transient=True,
        )
        self._task = self._progress.add_task("requests", total=None, failed=0)
        self._failed = 0

    def start(self, num_requests: int | None, duration_s: float | None) -> None:
        self._progress.update(self._task, total=num_requests)
        self._progress.start()

    def request_done(self, record: RequestRecord) -> None:
        self._failed += not record.ok
        self._progress.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        self._progress.stop()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.1f}"


def _latency_table(s: BenchSummary) -> Table:
    table = Table(title="Latency (ms)", title_justify="left")
    table.add_column("metric")
    for name in ("mean", "median", "p90", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    for label, attr in _ROWS:
        dist: Distribution | None = getattr(s, attr) if attr else s.stalls.longest_gap
        cells = (
            [_ms(getattr(dist, f)) for f in ("mean", "median", "p90", "p95", "p99", "max")]
            if dist
            else ["-"] * 6
        )
        table.add_row(label, *cells)
    return table


def _overview(run: BenchRun) -> Table:
    s, c = run.summary, run.config
    table = Table(
        show_header=False, box=None, title=f"{c.label or 'bench'}: {c.model} at {c.base_url} ({c.endpoint})"
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("requests", f"{s.num_completed} completed, {s.num_failed} failed, in {s.duration_s:.2f} s")
    table.add_row(
        "throughput",
        f"{s.request_throughput:.2f} req/s, {s.output_token_throughput:,.1f} output tok/s, "
        f"{s.total_token_throughput:,.1f} total tok/s",
    )
    table.add_row("tokens", f"{s.prompt_tokens:,} prompt, {s.output_tokens:,} output")
    table.add_row(
        "load", f"{s.achieved_request_rate:.2f} req/s sent, {s.mean_concurrency:.1f} in flight on average"
    )
    if s.goodput is not None:
        slos = ", ".join(f"{k} <= {v * 1e3:g} ms" for k, v in s.goodput.slos.items())
        share = s.goodput.num_good / s.num_requests if s.num_requests else 0.0
        table.add_row("goodput", f"{s.goodput.rate:.2f} req/s ({share:.0%} of requests met {slos})")
    st = s.stalls
    if st.threshold_s is not None:
        table.add_row(
            "stalls",
            f"{st.stalled_share:.0%} of streams ({st.num_stalled} of {st.num_streams}) had a gap over "
            f"{_ms(st.threshold_s)} ms ({st.threshold_source})",
        )
    return table


def _notes(s: BenchSummary) -> list[str]:
    notes = [f"[red]{n} x {kind}[/]: {s.error_examples.get(kind, '')}" for kind, n in s.errors.items()]
    if s.num_length_mismatch:
        notes.append(
            f"[yellow]{s.num_length_mismatch} completed requests got another output length than asked for "
            "(the server may ignore ignore_eos/min_tokens); throughput counts the tokens received"
        )
    if s.num_usage_missing:
        notes.append(
            f"[yellow]{s.num_usage_missing} requests came without usage: their output tokens are counted "
            "as streamed events (one per chunk)"
        )
    return notes


def print_summary(run: BenchRun, console: Console | None = None) -> None:
    """The overview, the latency table and any warnings."""
    console = console or Console()
    console.print(_overview(run))
    console.print(_latency_table(run.summary))
    for note in _notes(run.summary):
        console.print(note)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _request_dict(r: RequestRecord, detailed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": r.index,
        "start_s": r.start_s,
        "end_s": r.end_s,
        "ttft_s": r.ttft_s,
        "e2e_s": r.e2e_s,
        "tpot_s": r.tpot_s,
        "max_gap_s": r.max_gap_s,
        "output_tokens": r.output_tokens,
        "prompt_tokens": r.prompt_tokens,
        "error": r.error,
    }
    if r.error:
        out["error_message"] = r.error_message
    if detailed:
        out["token_times_s"] = list(r.token_times_s)
    return out


def result_dict(run: BenchRun, detailed: bool = False) -> dict[str, Any]:
    """The JSON result: config (API key left out), summary, one entry per request."""
    config = dataclasses.asdict(run.config)
    config["api_key"] = "<set>" if run.config.api_key else None
    summary = dataclasses.asdict(run.summary)
    summary["stalls"]["stalled_share"] = run.summary.stalls.stalled_share
    return _jsonable(
        {
            "seekserve_version": __version__,
            "label": run.config.label,
            "started_at": run.started_at,
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "config": config,
            "summary": summary,
            "requests": [_request_dict(r, detailed) for r in run.records],
        }
    )


def write_json(run: BenchRun, path: str | Path, detailed: bool = False) -> None:
    Path(path).write_text(json.dumps(result_dict(run, detailed), indent=1) + "\n")
