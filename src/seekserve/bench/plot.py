"""`--plot out.png`: latency CDFs and the inter-token gaps of a few streams over time."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seekserve.bench.runner import BenchRun
from seekserve.errors import ConfigError

__all__ = ["check_plotting", "plot_run"]

_NUM_STREAMS = 5


def check_plotting() -> None:
    """Raise ConfigError when matplotlib is missing (checked before a run, not after it)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib, which is not installed: pip install matplotlib")


def _cdf(ax: Any, values: Sequence[float], label: str) -> None:
    if values:
        xs = sorted(v * 1e3 for v in values)
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)


def plot_run(run: BenchRun, path: str | Path) -> None:
    """Write a three-panel figure: TTFT/E2E CDFs, ITL/longest-gap CDFs, gaps over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    done = [r for r in run.records if r.ok]
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    latency, gaps, timeline = fig.subplots(1, 3)
    _cdf(latency, [t for r in done if (t := r.ttft_s) is not None], "TTFT")
    _cdf(latency, [r.e2e_s for r in done], "end-to-end")
    latency.set(title="Request latency", xlabel="ms", ylabel="share of requests", xscale="log")
    _cdf(gaps, [g for r in done for g in r.itls_s], "every inter-token gap")
    _cdf(gaps, [g for r in done if (g := r.max_gap_s) is not None], "longest gap per stream")
    threshold = run.summary.stalls.threshold_s
    if threshold is not None:
        gaps.axvline(threshold * 1e3, color="red", linestyle="--", label="stall threshold")
    gaps.set(title="Inter-token gaps", xlabel="ms", ylabel="share", xscale="log")
    streams = sorted((r for r in done if r.max_gap_s is not None), key=lambda r: r.max_gap_s or 0.0)
    chosen = streams[-(_NUM_STREAMS - 1) :] + streams[len(streams) // 2 : len(streams) // 2 + 1]
    for r in dict.fromkeys(chosen):
        label = f"#{r.index} (longest {r.max_gap_s * 1e3:.0f} ms)" if r.max_gap_s else f"#{r.index}"
        timeline.plot(
            r.token_times_s[1:], [g * 1e3 for g in r.itls_s], marker=".", linewidth=0.8, label=label
        )
    if threshold is not None:
        timeline.axhline(threshold * 1e3, color="red", linestyle="--")
    timeline.set(title="Gaps over time: most stalled streams, one median", xlabel="s since start")
    timeline.set_ylabel("gap before token, ms")
    for ax in (latency, gaps):
        ax.xaxis.set_minor_formatter(NullFormatter())
    for ax in (latency, gaps, timeline):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.config.label or 'bench'}: {run.config.model} at {run.config.base_url}")
    fig.savefig(str(path), dpi=110)
