"""What the soak (benchmarks/soak.py) measures when the traffic stops, and the checks it passes or fails."""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from common import percentile
from soak_stack import Stack, engine_gauge, proc_sample, scrape
from soak_traffic import Case, Result

MAX_RSS_GROWTH = 0.05
FD_SLACK = 2
"""Open files may differ by a health check's connection or two between two quiet moments."""
MIN_PROBES = 5
SAMPLES = 5
MAX_POOL_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""asyncio's default executor starts threads as needed up to this many and keeps them: a pool filling,
not a leak. Thread-pool threads may grow to this (or to what they were after the warm-up)."""
RUNTIME_SERIES = ("event_loop_tasks", "python_threads", "pool_threads")
"""Of every seekserve process's /metrics (the gateway's with its prefix)."""
ENGINE_SERIES = (
    "kv_cache_used_blocks", "kv_cache_block_references", "kv_cache_audit_failures_total",
    "num_preemptions_total", "prefix_cache_queries_total", "prefix_cache_hits_total",
)  # fmt: skip


@dataclass
class Snapshot:
    """A quiet moment: the stack drained, idle keep-alive connections closed."""

    drained: bool
    drain_s: float
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per process: median RSS (KiB), fewest threads and open files over SAMPLES seconds, and
    (seekserve processes) the fewest asyncio tasks and Python threads their /metrics showed."""
    engines: dict[str, dict[str, float]] = field(default_factory=dict)
    gateway: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _idle(stack: Stack, client: httpx.Client) -> bool:
    for engine in stack.engines:
        m = scrape(client, engine)
        if engine_gauge(m, "num_requests_running") or engine_gauge(m, "num_requests_waiting"):
            return False
    m = scrape(client, stack.gateway)
    in_flight = sum(v for k, v in m.items() if k.startswith("seekserve:gateway_backend_in_flight{"))
    return in_flight == 0 and m.get("seekserve:gateway_queue_waiting", 0) == 0


def quiescent(stack: Stack, settle_s: float, timeout_s: float = 120.0) -> Snapshot:
    """Wait until nothing runs or waits anywhere, then `settle_s` more, and read every process."""
    started = time.monotonic()
    with httpx.Client(headers={"Connection": "close"}) as client:
        drained = False
        while not drained and time.monotonic() - started < timeout_s:
            drained = _idle(stack, client)
            time.sleep(0.25)
        snap = Snapshot(drained, round(time.monotonic() - started, 2))
        time.sleep(settle_s)
        children = [c for c in (*stack.servers, stack.redis) if c is not None]
        samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in children}
        metrics: dict[str, dict[str, float]] = {}
        for _ in range(SAMPLES):
            for child in children:
                row: dict[str, float] = dict(proc_sample(child.pid))
                if child in stack.servers:
                    metrics[child.name] = m = scrape(client, child)
                    prefix = "seekserve:gateway_" if child is stack.gateway else "seekserve:"
                    row.update({k: m[prefix + k] for k in RUNTIME_SERIES})
                samples[child.name].append(row)
            time.sleep(1.0)
        # The fewest of each count over the samples: a task or a thread that ends a moment later (a
        # request still ending, a health check) is not a leak; one that leaked is in every sample.
        for name, rows in samples.items():
            snap.processes[name] = {
                "rss_kib": statistics.median(r["rss_kib"] for r in rows),
                "fds": min(r["fds"] for r in rows),
                "threads": min(r["threads"] for r in rows),
            }
            if "event_loop_tasks" in rows[0]:
                snap.processes[name].update(
                    tasks=min(r["event_loop_tasks"] for r in rows),
                    python_threads=min(r["python_threads"] for r in rows),
                    pool_threads=min(r["pool_threads"] for r in rows),
                )
        for engine in stack.engines:
            m = metrics[engine.name]
            snap.engines[engine.name] = {name: engine_gauge(m, name) for name in ENGINE_SERIES}
        m = metrics[stack.gateway.name]
        snap.gateway = {k: v for k, v in m.items() if "backend_in_flight" in k or "queue_waiting" in k}
    return snap


def _overlaps(result: Result, bursts: list[tuple[float, float]], margin_s: float = 1.0) -> bool:
    return any(result.start_s < end + margin_s and result.end_s > start - margin_s for start, end in bursts)


def latency_windows(
    results: list[tuple[Case, Result]],
    bursts: list[tuple[float, float]],
    timeline: dict[str, float],
    window_s: float,
) -> dict[str, dict[str, Any]]:
    """Probe TTFT and time per output token in the first and last `window_s` of the measured traffic
    (probes that overlap a burst left out), and the TTFT of the other completed streams."""
    start, end = timeline["measure_start_s"], timeline["measure_end_s"]
    windows = {"first": (start, start + window_s), "last": (end - window_s, end)}
    out: dict[str, dict[str, Any]] = {}
    for name, (lo, hi) in windows.items():
        inside = [(c, r) for c, r in results if lo <= r.start_s < hi and r.outcome == "complete"]
        probes = [r for c, r in inside if c.kind == "probe" and not _overlaps(r, bursts)]
        ttft = [r.ttft_s for r in probes if r.ttft_s is not None]
        tpot = [r.tpot_s for r in probes if r.tpot_s is not None]
        traffic = [
            r.ttft_s for c, r in inside if c.kind != "probe" and r.ttft_s is not None and not r.cache_hit
        ]
        out[name] = {
            "from_s": round(lo, 1), "to_s": round(hi, 1), "probes": len(probes),
            "ttft_p50": percentile(ttft, 50), "ttft_p90": percentile(ttft, 90),
            "tpot_p50": percentile(tpot, 50), "tpot_p90": percentile(tpot, 90),
            "traffic_streams": len(traffic), "traffic_ttft_p50": percentile(traffic, 50),
            "traffic_ttft_p90": percentile(traffic, 90),
        }  # fmt: skip
    return out


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _outcomes(results: list[tuple[Case, Result]]) -> dict[str, Any]:
    bad = [r for _, r in results if not r.expected]
    lost = [r for r in bad if r.outcome == "lost"]
    examples = "; ".join(f"{r.kind} #{r.index}: {r.outcome} {r.detail}" for r in bad[:3])
    detail = f"{len(results)} requests, {len(lost)} lost, {len(bad) - len(lost)} other unexpected. {examples}"
    return _check("every request has one outcome it may have", not bad, detail.strip())


def _log_lines(stack: Stack, results: list[tuple[Case, Result]]) -> dict[str, Any]:
    """The gateway's access log has exactly one line per request, with the status the client saw
    (for a client that left: one line or, if it left before the gateway read it, none)."""
    seen: dict[str, list[int]] = {}
    for line in stack.gateway.stdout_path.read_text().splitlines():
        entry = json.loads(line)
        seen.setdefault(entry.get("request_id", ""), []).append(entry["status"])
    wrong = []
    for case, result in results:
        statuses = seen.get(case.request_id, [])
        if result.outcome == "disconnected":  # 499, or the answer the gateway had when it noticed
            ok = len(statuses) <= 1
        else:
            ok = statuses == [result.status] if result.status else len(statuses) == 1
        if not ok:
            wrong.append(f"{case.request_id} ({result.outcome} {result.status}): logged {statuses}")
    return _check(
        "one access-log line per request", not wrong, f"{len(wrong)} mismatched. {'; '.join(wrong[:3])}"
    )


def _kv(base: Snapshot, end: Snapshot) -> dict[str, Any]:
    parts, ok = [], base.drained and end.drained
    for name, kv in end.engines.items():
        used, refs, audits = (
            kv["kv_cache_used_blocks"],
            kv["kv_cache_block_references"],
            kv["kv_cache_audit_failures_total"],
        )
        ok = (
            ok and used == 0 and refs == 0 and audits == 0 and base.engines[name]["kv_cache_used_blocks"] == 0
        )
        preempted = kv["num_preemptions_total"]
        parts.append(
            f"{name}: {used:g} blocks, {refs:g} refs, {audits:g} failed audits, {preempted:g} preemptions"
        )
    return _check("KV blocks back to zero, reference counts balanced", ok, "; ".join(parts))  # fmt: skip


def _resources(base: Snapshot, end: Snapshot) -> list[dict[str, Any]]:
    rss, fds, threads, tasks = [], [], [], []
    rss_ok = fds_ok = threads_ok = tasks_ok = True
    # The gateway's Redis clients keep as many pooled connections as were busy at once (a burst of
    # rate-limit calls): each is also a client socket Redis holds open, so Redis' own new sockets
    # are the gateway's pool growing, not a leak; a leak of anything else still shows.
    redis_growth = 0
    if "redis" in base.processes and "redis" in end.processes:
        redis_growth = max(0, int(end.processes["redis"]["fds"] - base.processes["redis"]["fds"]))
    for name, b in base.processes.items():
        if name == "redis":
            continue
        e = end.processes[name]
        growth = e["rss_kib"] / b["rss_kib"] - 1
        rss_ok &= growth < MAX_RSS_GROWTH
        rss.append(f"{name} {growth:+.2%}")
        pooled = redis_growth if name == "gateway" else 0
        fds_ok &= e["fds"] <= b["fds"] + FD_SLACK + pooled
        fds.append(f"{name} {b['fds']}→{e['fds']}" + (f" (Redis pool +{pooled})" if pooled else ""))
        native = [p["threads"] - p["python_threads"] for p in (b, e)]
        python = [p["python_threads"] - p["pool_threads"] for p in (b, e)]
        pools = max(b["pool_threads"], MAX_POOL_THREADS)
        threads_ok &= native[1] <= native[0] and python[1] <= python[0] and e["pool_threads"] <= pools
        threads.append(
            f"{name} native {native[0]:g}→{native[1]:g}, Python {python[0]:g}→{python[1]:g}, "
            f"pools {b['pool_threads']:g}→{e['pool_threads']:g}"
        )
        tasks_ok &= e["tasks"] <= b["tasks"]
        tasks.append(f"{name} {b['tasks']:g}→{e['tasks']:g}")
    return [
        _check(f"RSS growth after warm-up < {MAX_RSS_GROWTH:.0%}", rss_ok, ", ".join(rss)),
        _check("no leaked file descriptors", fds_ok, ", ".join(fds)),
        _check(
            f"no leaked threads (native and Python; thread pools within {MAX_POOL_THREADS})",
            threads_ok,
            ", ".join(threads),
        ),
        _check("no leaked asyncio tasks", tasks_ok, ", ".join(tasks)),
    ]


def _latency(latency: dict[str, dict[str, Any]], tolerance: float) -> dict[str, Any]:
    first, last = latency["first"], latency["last"]
    parts, ok = [], min(first["probes"], last["probes"]) >= MIN_PROBES
    for key in ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90"):
        change = last[key] / first[key] - 1
        ok = ok and last[key] <= first[key] * (1 + tolerance)
        parts.append(f"{key} {1e3 * first[key]:.1f}→{1e3 * last[key]:.1f} ms ({change:+.1%})")
    detail = f"{first['probes']} and {last['probes']} probes; " + ", ".join(parts)
    return _check(f"probe latency in the last window within {tolerance:.0%} of the first", ok, detail)


def evaluate(
    stack: Stack, results: list[tuple[Case, Result]], base: Snapshot, end: Snapshot,
    latency: dict[str, dict[str, Any]], tolerance: float,
) -> list[dict[str, Any]]:  # fmt: skip
    exits = stack.exit_codes
    return [
        _outcomes(results),
        _log_lines(stack, results),
        _kv(base, end),
        *_resources(base, end),
        _latency(latency, tolerance),
        _check(
            "every process stopped cleanly on SIGTERM",
            all(code in (0, -signal.SIGTERM) for code in exits.values()),
            f"exit statuses {exits} (-15: uvicorn re-raises SIGTERM after its graceful shutdown; -9: killed)",
        ),
    ]
