"""Soak: the whole stack under mixed traffic for a while; exits 0 only when nothing was lost or leaked.

    python benchmarks/soak.py --duration 3600                  # the documented run (docs/reliability.md)
    python benchmarks/soak.py --duration 120 --model DIR --max-model-len 512

Starts Redis (cache and rate limits; skipped when redis-server is not installed), --engines
`seekserve serve` engines on the default model (or --model) and `seekserve gateway` in front, all
from this tree's src/, then drives traffic through the gateway for --duration seconds: --concurrency
closed-loop clients drawing chat and completions, streamed or not, short and long prompts (long ones
share system prompts, so prefix-cache blocks are shared and preempted), n up to 3, stop strings,
log-probabilities, seeds, prompts past max_model_len and up to it, a key over its rate limit,
clients that leave before the first token and mid-stream; a burst now and then overflows the
queues, and some of its clients leave while queued; one probe at a time sends the same greedy
stream for latency (soak_traffic.py says what each answer counts as).

The warm-up (10 % of the duration, 20 s to 5 min) starts with the largest shapes the run will
see, all at once (`Driver.prime`), then runs the mix. After it and at the end, the traffic stops, the stack
drains and settles, and a snapshot reads every process's RSS, threads and open files (/proc) and
asyncio tasks, Python threads and KV blocks (/metrics). The run passes when every request has
exactly one outcome (a whole answer, a clear OpenAI error it may get, or a client that left; the
gateway's access log has exactly one line for each), the engines hold no KV block and their
reference-count audits all balanced, RSS grew under 5 % and tasks, threads and files did not grow
from snapshot to snapshot, the probe's TTFT and time per output token (p50, p90) in the last window
are within --latency-tolerance of the first (windows: a sixth of the run, at most 10 minutes, after
the warm-up), and every process exited 0 when stopped. Prints tables, writes --out (JSON) and
prints a one-line JSON summary last. Logs stay in --log-dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from common import REPO, machine, print_table, write_json
from soak_checks import Snapshot, evaluate, latency_windows, quiescent
from soak_stack import MAIN_KEY, MODEL, Stack, StackConfig, proc_sample, running_stack
from soak_traffic import Case, Prompts, Result, make_case, probe_case, send

WORKER_KINDS = {"normal": 72, "limited": 6, "too_long": 3, "near_limit": 3, "leave_first": 8, "leave_mid": 8}
SAMPLE_EVERY_S = 5.0
PROBE_GAP_S = 0.5


class Driver:
    """Runs the traffic of one phase; every request's Result lands in `results`."""

    def __init__(self, url: str, prompts: Prompts, args: argparse.Namespace, t0: float) -> None:
        self.url, self.prompts, self.args, self.t0 = url, prompts, args, t0
        self.results: list[tuple[Case, Result]] = []
        self.bursts: list[tuple[float, float]] = []
        """(start, end) of each burst, seconds from t0."""
        self._next = 0

    def case(self, kind: str) -> Case:
        self._next += 1
        return probe_case(self._next) if kind == "probe" else make_case(self._next, kind, self.prompts)

    async def prime(self, session: aiohttp.ClientSession) -> None:
        """The largest shapes the run will see, at once, before the warm-up's random traffic: each
        engine's max_num_seqs prompts of nearly max_model_len (the longest prefills and a full batch,
        past the KV cache) and a burst (thread pools, queue limits). What grows to a high-water mark
        and stays there (buffers, pools, allocator arenas) reaches it before the first snapshot."""
        longest = [self.case("near_limit") for _ in range(self.args.engines * self.args.max_num_seqs)]
        burst = [self.case("burst") for _ in range(self.args.burst_size)]
        await asyncio.gather(*(self._one(session, c) for c in [*longest, *burst]))

    async def run(self, session: aiohttp.ClientSession, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        workers = [self._worker(session, deadline) for _ in range(self.args.concurrency)]
        await asyncio.gather(*workers, self._prober(session, deadline), self._burster(session, deadline))

    async def _one(self, session: aiohttp.ClientSession, case: Case) -> Result:
        result = await send(session, self.url, case, self.t0)
        self.results.append((case, result))
        return result

    async def _worker(self, session: aiohttp.ClientSession, deadline: float) -> None:
        kinds, weights = zip(*WORKER_KINDS.items(), strict=True)
        while time.monotonic() < deadline:
            result = await self._one(session, self.case(self.prompts.rng.choices(kinds, weights)[0]))
            if result.retry_after_s is not None:  # as the OpenAI SDKs do with a 429 or 503
                await asyncio.sleep(min(result.retry_after_s, max(0.0, deadline - time.monotonic())))

    async def _prober(self, session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            await self._one(session, self.case("probe"))
            await asyncio.sleep(PROBE_GAP_S)

    async def _burster(self, session: aiohttp.ClientSession, deadline: float) -> None:
        """Every burst_period_s, burst_size short requests at once; a fifth of them leave while queued."""
        await asyncio.sleep(self.args.burst_period_s / 2)
        while time.monotonic() < deadline:
            start = time.monotonic() - self.t0
            rng = self.prompts.rng
            cases = [
                self.case("leave_queued" if rng.random() < 0.2 else "burst")
                for _ in range(self.args.burst_size)
            ]
            await asyncio.gather(*(self._one(session, c) for c in cases))
            self.bursts.append((start, time.monotonic() - self.t0))
            await asyncio.sleep(max(0.0, self.args.burst_period_s - (time.monotonic() - self.t0 - start)))


async def sample_resources(
    stack: Stack, t0: float, series: list[dict[str, Any]], stop: asyncio.Event
) -> None:
    """Every SAMPLE_EVERY_S: each process's RSS, threads and open files (the run's memory curve)."""
    children = [c for c in (*stack.servers, stack.redis) if c is not None]
    while not stop.is_set():
        series.append(
            {"t_s": round(time.monotonic() - t0, 1), **{c.name: proc_sample(c.pid) for c in children}}
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


async def calibrate(url: str) -> float:
    """Prompt tokens per word of the served model's tokenizer (one uncached request)."""
    words = " ".join(["river stone light market garden"] * 4)
    body = {"model": MODEL, "prompt": words, "max_tokens": 1, "cache": False}
    headers = {"Authorization": f"Bearer {MAIN_KEY}", "x-request-id": "soak-calibrate"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/completions", json=body, headers=headers) as r,
    ):
        answer = await r.json()
    if r.status != 200:
        sys.exit(f"the calibration request failed: {r.status} {answer}")
    return float(answer["usage"]["prompt_tokens"]) / 20


async def drive(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, base snapshot, measured traffic, end snapshot; everything the checks read."""
    prompts = Prompts(random.Random(args.seed), args.max_model_len, await calibrate(stack.url))
    t0 = time.monotonic()
    driver = Driver(stack.url, prompts, args, t0)
    series: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_resources(stack, t0, series, stop))
    timeline: dict[str, float] = {}
    # One client session per phase: the snapshots see no idle client connection at either end.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await driver.prime(session)
        await driver.run(session, max(0.0, args.warmup_s - (time.monotonic() - t0)))
    timeline["warm_end_s"] = time.monotonic() - t0
    base = await asyncio.to_thread(quiescent, stack, args.settle_s)
    timeline["measure_start_s"] = time.monotonic() - t0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await driver.run(session, args.duration - args.warmup_s)
    timeline["measure_end_s"] = time.monotonic() - t0
    end = await asyncio.to_thread(quiescent, stack, args.settle_s)
    stop.set()
    await sampler
    return {
        "driver": driver,
        "base": base,
        "end": end,
        "series": series,
        "timeline": timeline,
        "prompts": prompts,
    }


def outcome_rows(results: list[tuple[Case, Result]]) -> tuple[list[list[Any]], dict[str, dict[str, int]]]:
    by_kind: dict[str, dict[str, int]] = {}
    for case, result in results:
        label = result.outcome if result.outcome != "error" else f"error {result.detail}"
        if not result.expected:
            label = f"UNEXPECTED {label}"
        counts = by_kind.setdefault(case.kind, {})
        counts[label] = counts.get(label, 0) + 1
    rows = [
        [kind, label, n] for kind, counts in sorted(by_kind.items()) for label, n in sorted(counts.items())
    ]
    return rows, by_kind


def lost_first(results: list[Result]) -> list[Result]:
    return sorted(results, key=lambda r: r.outcome != "lost")


def report(payload: dict[str, Any], snapshots: dict[str, Snapshot]) -> None:
    print_table(
        "Outcomes (kind, outcome, requests)", ["kind", "outcome", "requests"], payload["outcome_rows"]
    )
    rows = []
    for name in snapshots["base"].processes:
        b, e = snapshots["base"].processes[name], snapshots["end"].processes[name]
        growth = 100 * (e["rss_kib"] / b["rss_kib"] - 1)
        changes = [f"{b[k]:g} → {e[k]:g}" if k in b else "-" for k in ("fds", "threads", "tasks")]
        rows.append([name, b["rss_kib"] / 1024, e["rss_kib"] / 1024, f"{growth:+.2f} %", *changes])
    print_table(
        "After warm-up → at the end (quiescent)",
        ["process", "RSS MiB", "RSS MiB", "growth", "fds", "threads", "tasks"],
        rows,
    )
    lat = payload["latency"]
    print_table(
        "Probe latency (ms), first and last window",
        ["window", "probes", "TTFT p50", "TTFT p90", "TPOT p50", "TPOT p90"],
        [[w, lat[w]["probes"], *(1e3 * lat[w][k] for k in ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90"))]
         for w in ("first", "last")],
    )  # fmt: skip
    print_table(
        "Checks",
        ["check", "passed", "measured"],
        [[c["name"], c["passed"], c["detail"]] for c in payload["checks"]],
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, required=True, help="seconds of traffic, warm-up included")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--model", default=None, help="the engines' --model (default: the default model)")
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--num-kv-blocks", type=int, default=160, help="per engine, of 16 tokens")
    p.add_argument("--max-num-seqs", type=int, default=6, help="per engine")
    p.add_argument("--max-queue-len", type=int, default=6, help="per engine")
    p.add_argument("--engine-args", default="", help="more `seekserve serve` options, one string")
    p.add_argument("--concurrency", type=int, default=6, help="closed-loop clients")
    p.add_argument("--burst-size", type=int, default=32)
    p.add_argument("--burst-period-s", type=float, default=None, help="default: duration / 16, 10 s to 4 min")
    p.add_argument("--warmup-s", type=float, default=None, help="default: 10 %% of duration, 20 s to 5 min")
    p.add_argument(
        "--settle-s", type=float, default=7.0, help="idle time before a snapshot (keep-alives close)"
    )
    p.add_argument("--latency-tolerance", type=float, default=0.10)
    p.add_argument("--no-redis", action="store_true", help="cache and limits in the gateway, not in Redis")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "results" / "soak.json")
    p.add_argument("--log-dir", type=Path, default=REPO / "results" / "soak-logs")
    args = p.parse_args()
    args.warmup_s = args.warmup_s if args.warmup_s is not None else min(max(0.1 * args.duration, 20.0), 300.0)
    if args.burst_period_s is None:
        args.burst_period_s = min(max(args.duration / 16, 10.0), 240.0)
    if args.duration <= args.warmup_s:
        p.error(f"--duration {args.duration:g} must be longer than the warm-up ({args.warmup_s:g} s)")
    return args


def main() -> None:
    args = parse_args()
    config = StackConfig(
        model=args.model, num_engines=args.engines, max_model_len=args.max_model_len,
        num_kv_blocks=args.num_kv_blocks, max_num_seqs=args.max_num_seqs, max_queue_len=args.max_queue_len,
        engine_args=tuple(shlex.split(args.engine_args)),
        redis=not args.no_redis, log_dir=args.log_dir,
    )  # fmt: skip
    load_before = os.getloadavg()
    started = time.time()
    with running_stack(config) as stack:
        ran = asyncio.run(drive(stack, args))
    driver: Driver = ran["driver"]
    rows, by_kind = outcome_rows(driver.results)
    window_s = min(600.0, args.duration / 6)
    latency = latency_windows(driver.results, driver.bursts, ran["timeline"], window_s)
    checks = evaluate(stack, driver.results, ran["base"], ran["end"], latency, args.latency_tolerance)
    passed = all(c["passed"] for c in checks)
    results = [r for _, r in driver.results]
    counts = {o: sum(r.outcome == o for r in results) for o in ("complete", "error", "disconnected", "lost")}
    payload = {
        "command": " ".join(sys.argv), "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "load_before": load_before, "load_after": os.getloadavg(), "wall_s": round(time.time() - started, 1),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "tokens_per_word": ran["prompts"].tokens_per_word, "timeline": ran["timeline"], "window_s": window_s,
        "requests": len(results), "outcomes": counts, "unexpected": sum(not r.expected for r in results),
        "by_kind": by_kind, "outcome_rows": rows, "latency": latency, "checks": checks, "passed": passed,
        "bursts": driver.bursts, "snapshots": {k: ran[k].as_dict() for k in ("base", "end")},
        "exit_codes": stack.exit_codes, "series": ran["series"],
        "problems": [vars(r) for r in lost_first(results) if not r.expected][:50],
    }  # fmt: skip
    report(payload, {"base": ran["base"], "end": ran["end"]})
    write_json(args.out, payload)
    summary = {
        "passed": passed, "requests": len(results), **counts, "unexpected": payload["unexpected"],
        "failed_checks": [c["name"] for c in checks if not c["passed"]], "out": str(args.out),
    }  # fmt: skip
    print(json.dumps(summary))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
