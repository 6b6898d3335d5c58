"""What prefix-aware routing saves: two engines behind `seekserve gateway`, prompts sharing long prefixes.

    python benchmarks/gateway_prefix.py                          # prefix, least-loaded, round-robin
    python benchmarks/gateway_prefix.py --repeats 2 --num-requests 48 --model /models/qwen
    python benchmarks/gateway_prefix.py --engine-args "--num-kv-blocks 192 --max-model-len 2048"

Two `seekserve serve` engines (the packaged Gemma 3 270M unless --model is given), each pinned to
one core with `taskset` and one torch thread, prefix caching on, run behind `seekserve gateway
--config FILE` with one routing strategy at a time. `seekserve bench`'s shared-prefix dataset drives
the gateway: --num-prefixes system prompts of --prefix-len tokens, each followed by a distinct
question. Every run starts fresh engines (cold prefix caches) and a fresh gateway, warms each engine
with one short unrelated request, then sends the same requests (same seed) in a closed loop of
--concurrency. Strategies run interleaved: prefix, least-loaded, round-robin, prefix, ...

Reports per strategy TTFT (mean, p99), output throughput, the engines' prefix-cache hit rate
(prompt tokens found in the cache / looked up, from their /metrics) and how many requests each
engine served; medians over repeats. Writes results/gateway_prefix.json. The gateway and the
load generator are not pinned: on a 2-core host they share the engines' cores.

Each engine's KV cache holds every prefix unless --engine-args makes it smaller: then only the
cold start separates the strategies (each engine prefills each prefix once). A cache that holds
about half the prefixes, as in the second example, shows the steady state: prefix routing keeps
each prefix on one engine, the others make both engines evict and prefill prefixes again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import REPO, machine, print_table, write_json

sys.path.insert(0, str(REPO / "src"))  # this checkout's seekserve, here and in the child processes
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))

from seekserve.bench.config import BenchConfig
from seekserve.bench.runner import run
from seekserve.bench.servers import ManagedServer, ServerSpec

STRATEGIES = ("prefix", "least-loaded", "round-robin")
COUNTERS = {
    "queries": "seekserve:prefix_cache_queries_total",
    "hits": "seekserve:prefix_cache_hits_total",
    "requests": "seekserve:request_success_total",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model of both engines; default: the packaged Gemma 3 270M")
    ap.add_argument("--strategies", default=" ".join(STRATEGIES), help="routing strategies, in run order")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all strategies, interleaved")
    ap.add_argument("--num-prefixes", type=int, default=8)
    ap.add_argument("--prefix-len", type=int, default=512, help="tokens per system prompt")
    ap.add_argument("--input-len", default="64", help="question tokens (a bench length: N, uniform:LO,HI)")
    ap.add_argument("--output-len", default="32")
    ap.add_argument("--num-requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    ap.add_argument("--cores", default="0,1", help="one CPU per engine (taskset -c); '' leaves them unpinned")
    ap.add_argument("--engine-args", default="", help="extra `seekserve serve` options for both engines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "gateway_prefix.json")
    args = ap.parse_args()
    unknown = set(args.strategies.split()) - set(STRATEGIES)
    if unknown:
        sys.exit(f"--strategies: {', '.join(sorted(unknown))} unknown; use {', '.join(STRATEGIES)}")
    return args


def engine_spec(name: str, core: str, args: argparse.Namespace) -> ServerSpec:
    pin = f"taskset -c {core} " if core else ""
    model = f"--model {shlex.quote(args.model)} " if args.model else ""
    command = (
        f"{pin}{{python}} -m seekserve serve {model}--port {{port}} --num-threads 1 --log-level warning "
        f"--enable-prefix-caching {args.engine_args}"
    )
    return ServerSpec(name, command, ready_timeout_s=600.0, env={"OMP_NUM_THREADS": "1"})


def post(url: str, body: dict[str, Any], timeout_s: float = 300.0) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


def warm_up(base_url: str, model: str, word: str) -> None:
    """One short request whose prompt shares nothing with the dataset's (so no cache hits come of it)."""
    prompt = " ".join([word] * 24)
    post(f"{base_url}/v1/completions", {"model": model, "prompt": prompt, "max_tokens": 8})


def scrape(base_url: str) -> dict[str, float]:
    """The engine's counters in COUNTERS, summed over their label sets."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        for key, name in COUNTERS.items():
            if line.startswith(name + "{") or line.startswith(name + " "):
                totals[key] += float(line.rsplit(" ", 1)[1])
    return totals


def gateway_config(path: Path, engines: list[ManagedServer], model: str, strategy: str) -> None:
    config = {
        "backends": [
            {"name": e.spec.name, "url": f"{e.base_url}/v1", "models": [model], "engine": "seekserve"}
            for e in engines
        ],
        "models": {model: {"routing": strategy}},
        "access_log": False,
    }
    path.write_text(json.dumps(config))  # JSON is YAML


def bench_config(base_url: str, model: str, args: argparse.Namespace, strategy: str) -> BenchConfig:
    return BenchConfig(
        base_url=base_url,
        model=model,
        endpoint=args.endpoint,
        num_requests=args.num_requests,
        max_concurrency=args.concurrency,
        dataset=f"shared-prefix:{args.num_prefixes},{args.prefix_len}",
        input_len=args.input_len,
        output_len=args.output_len,
        num_warmup=0,
        seed=args.seed,
        label=strategy,
    )


def run_strategy(strategy: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Fresh engines and gateway, one bench run; the figures of the run."""
    cores = args.cores.split(",") if args.cores else ["", ""]
    engines = [ManagedServer(engine_spec(f"engine{i}", cores[i], args), work) for i in range(2)]
    gateway: ManagedServer | None = None
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ManagedServer.start, engines))
        model = engines[0].model
        assert model is not None and model == engines[1].model, "both engines serve the same model"
        for engine, word in zip(engines, ("alpha", "omega"), strict=True):
            warm_up(engine.base_url, model, word)
        config = work / "gateway.yaml"
        gateway_config(config, engines, model, strategy)
        command = f"{{python}} -m seekserve gateway --config {config} --port {{port}} --log-level warning"
        gateway = ManagedServer(ServerSpec("gateway", command), work)
        gateway.start()
        warm_up(gateway.base_url, model, "zeta")  # the gateway's first request and connections
        before = [scrape(e.base_url) for e in engines]
        result = run(bench_config(gateway.base_url, model, args, strategy))
        after = [scrape(e.base_url) for e in engines]
    finally:
        for server in (gateway, *engines):
            if server is not None:
                server.stop()
    return figures(strategy, result, before, after)


def figures(
    strategy: str, result: Any, before: list[dict[str, float]], after: list[dict[str, float]]
) -> dict[str, Any]:
    s = result.summary
    delta = [{k: a[k] - b[k] for k in COUNTERS} for a, b in zip(after, before, strict=True)]
    queries, hits = sum(d["queries"] for d in delta), sum(d["hits"] for d in delta)
    return {
        "strategy": strategy,
        "completed": s.num_completed,
        "failed": s.num_failed,
        "duration_s": s.duration_s,
        "ttft_mean_s": s.ttft.mean if s.ttft else None,
        "ttft_median_s": s.ttft.median if s.ttft else None,
        "ttft_p99_s": s.ttft.p99 if s.ttft else None,
        "e2e_mean_s": s.e2e.mean if s.e2e else None,
        "output_tok_s": s.output_token_throughput,
        "prompt_tokens": s.prompt_tokens,
        "prefix_cache_queries": queries,
        "prefix_cache_hits": hits,
        "prefix_cache_hit_rate": hits / queries if queries else None,
        "requests_per_engine": [int(d["requests"]) for d in delta],
        "load_avg_1m": os.getloadavg()[0],
    }


def aggregate(runs: list[dict[str, Any]], strategies: list[str]) -> list[dict[str, Any]]:
    keys = ("ttft_mean_s", "ttft_p99_s", "output_tok_s", "prefix_cache_hit_rate", "duration_s")
    rows = []
    for strategy in strategies:
        mine = [r for r in runs if r["strategy"] == strategy]
        row: dict[str, Any] = {"strategy": strategy, "runs": len(mine)}
        for key in keys:
            values = [r[key] for r in mine if r[key] is not None]
            row[key] = statistics.median(values) if values else None
        row["failed"] = sum(r["failed"] for r in mine)
        row["requests_per_engine"] = [r["requests_per_engine"] for r in mine]
        rows.append(row)
    return rows


def show(rows: list[dict[str, Any]]) -> None:
    def num(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
        return "–" if value is None else f"{value * scale:,.{digits}f}"

    print_table(
        "Routing strategies on a shared-prefix workload (medians over repeats)",
        ["strategy", "runs", "TTFT mean ms", "TTFT p99 ms", "out tok/s", "hit rate", "run s", "failed",
         "req/engine"],
        [
            [r["strategy"], r["runs"], num(r["ttft_mean_s"], 1e3), num(r["ttft_p99_s"], 1e3),
             num(r["output_tok_s"], digits=1), num(r["prefix_cache_hit_rate"], 100, 1) + " %",
             num(r["duration_s"], digits=1), r["failed"],
             " ".join("/".join(map(str, counts)) for counts in r["requests_per_engine"])]
            for r in rows
        ],
    )  # fmt: skip


def main() -> None:
    args = parse_args()
    os.environ.setdefault("COLUMNS", "120")  # rich's tables keep their width when output is not a terminal
    if args.cores and not shutil.which("taskset"):
        sys.exit("taskset is not installed: install util-linux or pass --cores ''")
    strategies = args.strategies.split()
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    runs, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gateway_prefix_") as tmp:
        for repeat in range(args.repeats):
            for strategy in strategies:
                t0 = time.perf_counter()
                runs.append({**run_strategy(strategy, args, Path(tmp)), "repeat": repeat})
                print(
                    f"[{repeat}] {strategy}: {json.dumps(runs[-1])} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    rows = aggregate(runs, strategies)
    show(rows)
    workload = {k: v for k, v in vars(args).items() if k not in ("json", "strategies")}
    write_json(
        args.json,
        {
            "machine": machine(),
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "wall_s": time.perf_counter() - started,
            "workload": {**workload, "model": args.model or "gemma-3-270m (packaged)"},
            "summary": rows,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
