"""How many requests per second can `seekserve bench` itself drive? (It must not be the bottleneck.)

Starts the fake streaming server (seekserve.bench.fake_server, no model work, its own process),
then runs the load generator against it in this process: closed loops at a few concurrencies and
an open-loop Poisson run at a target rate. Reports the achieved request rate, the client's CPU time
per request (its ceiling on one core is 1 / that), and how late requests went out against the
Poisson schedule. Run it alone: on a shared machine every figure falls.

    python benchmarks/bench_client_capacity.py                      # 20,000 requests per run
    python benchmarks/bench_client_capacity.py --num-requests 2000 --json capacity.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from seekserve.bench.config import BenchConfig
from seekserve.bench.metrics import RequestRecord
from seekserve.bench.runner import run


@dataclass(frozen=True)
class Row:
    load: str
    completed: int
    failed: int
    achieved_rps: float
    output_tok_s: float
    client_cpu_us_per_request: float
    send_lag_p99_ms: float | None

    @property
    def cpu_ceiling_rps(self) -> float:
        return 1e6 / self.client_cpu_us_per_request if self.client_cpu_us_per_request else 0.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """A Reporter that takes this process's CPU time over the send loop alone (no setup, no warm-up)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def start(self, num_requests: int | None, duration_s: float | None) -> None:
        self.cpu_s = -_cpu_s()

    def request_done(self, record: RequestRecord) -> None:
        pass

    def stop(self) -> None:
        self.cpu_s += _cpu_s()


def _measure(label: str, config: BenchConfig) -> Row:
    meter = CpuMeter()
    result = run(config, meter)
    cpu = meter.cpu_s
    s = result.summary
    lag = s.send_lag.p99 * 1e3 if s.send_lag and config.max_concurrency is None else None
    return Row(
        label,
        s.num_completed,
        s.num_failed,
        s.request_throughput,
        s.output_token_throughput,
        cpu / max(1, s.num_requests) * 1e6,
        lag,
    )


def _start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "seekserve.bench.fake_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None, "stdout is a pipe"
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return server, line.split()[-1]


def _print_table(rows: list[Row], args: argparse.Namespace, load: float) -> None:
    print(
        f"{args.num_requests} requests per run, {args.output_tokens} tokens each; {os.cpu_count()} CPUs, "
        f"load average {load:.2f} (the fake server runs in its own process)"
    )
    header = (
        "load",
        "completed",
        "failed",
        "req/s",
        "output tok/s",
        "client CPU µs/req",
        "CPU ceiling req/s",
    )
    print("| " + " | ".join((*header, "send lag p99 ms")) + " |\n" + "|---" * (len(header) + 1) + "|")
    for r in rows:
        lag = "-" if r.send_lag_p99_ms is None else f"{r.send_lag_p99_ms:.1f}"
        print(
            f"| {r.load} | {r.completed} | {r.failed} | {r.achieved_rps:,.0f} | {r.output_tok_s:,.0f} | "
            f"{r.client_cpu_us_per_request:,.0f} | {r.cpu_ceiling_rps:,.0f} | {lag} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-requests", type=int, default=20_000, help="requests per run")
    p.add_argument("--output-tokens", type=int, default=16, help="streamed tokens per request")
    p.add_argument("--concurrency", default="64,256", help="closed-loop concurrencies, comma-separated")
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop Poisson target (requests/s)")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    server, url = _start_server()
    base = {
        "base_url": url,
        "model": "fake-model",
        "num_requests": args.num_requests,
        "input_len": "32",
        "output_len": str(args.output_tokens),
    }
    rows = []
    try:
        for c in (int(x) for x in args.concurrency.split(",")):
            rows.append(_measure(f"closed loop, concurrency {c}", BenchConfig(**base, max_concurrency=c)))
        rows.append(_measure(f"Poisson {args.rate:g} req/s", BenchConfig(**base, request_rate=args.rate)))
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
    load = os.getloadavg()
    _print_table(rows, args, load[0])
    if args.json:
        out: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count(), "loadavg": load}
        out["rows"] = [{**r.__dict__, "cpu_ceiling_rps": r.cpu_ceiling_rps} for r in rows]
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
