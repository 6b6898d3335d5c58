"""Does the gateway's memory stay flat? Its RSS over 100,000 streamed requests.

    python benchmarks/gateway_soak.py                          # 100,000 requests, 16 tokens, concurrency 32
    python benchmarks/gateway_soak.py --n 20000 --tokens 4

Starts the anchors' fast fake upstream (`../shared/anchors/gateway/fake_upstream.py`, run by the
gateway harness's python) and `python -m seekserve gateway --upstream URL --log-level warning` from
this tree's src, then drives N streamed chat completions through the gateway with a closed loop of
--concurrency aiohttp clients on uvloop. After a --warmup of requests, and every --every requests
after it, it reads the gateway's VmRSS (and open file descriptors and CPU time) from /proc. A leak
shows as RSS that keeps climbing after warm-up; `growth_pct` is the last sample over the first.
Prints a table and writes results/gateway_soak.json. Run it on a quiet machine: the load average
at the start and the end is recorded with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from common import DEFAULT_ANCHORS, REPO, machine, percentile, print_table, write_json
from seekserve.bench.servers import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> dict[str, float]:
    """The process's resident memory (KiB), open file descriptors and CPU seconds, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, fields 14 and 15
    return {"rss_kib": rss_kib, "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_s}


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args!r} exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer 200 within {timeout_s:g} s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Run:
    """What one closed-loop drive measured."""

    samples: list[dict[str, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    e2e_s: list[float] = field(default_factory=list)
    done: int = 0
    started: float = 0.0
    warm_at: float = 0.0
    ended: float = 0.0


async def drive(url: str, pid: int, args: argparse.Namespace) -> Run:
    """N streamed requests, `concurrency` at a time; the gateway sampled at warm-up and every `every`."""
    body = json.dumps(
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": args.tokens,
            "stream": True,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    sample_at = set(range(args.warmup, args.n + 1, args.every)) | {args.n}
    run = Run(started=time.monotonic())
    issued = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < args.n:
            issued += 1
            begun = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    data = await response.read()
                if response.status != 200:
                    run.errors[f"http_{response.status}"] += 1
                elif not data.endswith(b"data: [DONE]\n\n"):
                    run.errors["stream_incomplete"] += 1
                else:
                    run.e2e_s.append(time.monotonic() - begun)
            except TimeoutError:
                run.errors["timeout"] += 1
            except aiohttp.ClientError as exc:
                run.errors[type(exc).__name__] += 1
            run.done += 1
            if run.done in sample_at:
                now = time.monotonic()
                if run.done == args.warmup:
                    run.warm_at = now
                run.samples.append({"requests": run.done, "elapsed_s": now - run.started, **proc_sample(pid)})

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    run.ended = time.monotonic()
    return run


def summarize(run: Run, args: argparse.Namespace, load: dict[str, Any]) -> dict[str, Any]:
    first, last = run.samples[0], run.samples[-1]
    after_warmup = args.n - args.warmup
    return {
        "config": {k: v for k, v in vars(args).items() if not isinstance(v, Path)},
        "load_avg": load,
        "samples": run.samples,
        "growth_pct": 100.0 * (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"],
        "rps": args.n / (run.ended - run.started),
        "rps_after_warmup": after_warmup / (run.ended - run.warm_at) if after_warmup else None,
        "gateway_cpu_ms_per_request": 1000.0 * (last["cpu_s"] - first["cpu_s"]) / after_warmup
        if after_warmup
        else None,
        "e2e_ms": {q: 1000.0 * percentile(run.e2e_s, p) for q, p in (("p50", 50), ("p99", 99))},
        "ok": len(run.e2e_s),
        "errors": dict(run.errors),
    }


def report(result: dict[str, Any]) -> None:
    base = result["samples"][0]["rss_kib"]
    rows = [
        [
            s["requests"],
            f"{s['elapsed_s']:.1f}",
            f"{s['rss_kib'] / 1024:.1f}",
            f"{100.0 * (s['rss_kib'] - base) / base:+.2f}",
            s["fds"],
            f"{s['cpu_s']:.1f}",
        ]
        for s in result["samples"]
    ]
    print_table(
        "Gateway RSS over the run (sampled after warm-up)",
        ["requests", "elapsed s", "RSS MiB", "vs first %", "open fds", "gateway CPU s"],
        rows,
    )
    cpu = result["gateway_cpu_ms_per_request"]
    print(
        f"growth {result['growth_pct']:+.2f} %, {result['rps']:.0f} req/s "
        f"({result['rps_after_warmup'] or 0:.0f} after warm-up), gateway CPU {cpu or 0:.3f} ms/request, "
        f"e2e p50 {result['e2e_ms']['p50']:.2f} ms p99 {result['e2e_ms']['p99']:.2f} ms, "
        f"ok {result['ok']}, errors {result['errors'] or 'none'}, load {result['load_avg']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="streamed requests in all")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per answer")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=5_000, help="requests before the first sample")
    ap.add_argument("--every", type=int, default=5_000, help="requests between samples")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--gw-dir", type=Path, default=Path(os.environ.get("GW_DIR", "/tmp/anchors/gw")))
    ap.add_argument("--json", type=Path, default=REPO / "results" / "gateway_soak.json")
    args = ap.parse_args()
    if not 0 < args.warmup <= args.n or args.every <= 0:
        sys.exit(f"--warmup {args.warmup} must be in 1..--n {args.n} and --every {args.every} positive")
    fake, python = args.anchors / "gateway" / "fake_upstream.py", args.gw_dir / "harness" / "bin" / "python"
    if not fake.is_file() or not python.is_file():
        sys.exit(f"needs {fake} and {python}: run bash {args.anchors / 'gateway' / 'setup.sh'} first")
    upstream_port, gateway_port = free_port(), free_port()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        logs = Path(tmp)
        upstream = start(
            [str(python), str(fake), "--port", str(upstream_port), "--tokens", str(args.tokens)],
            logs / "upstream.log",
        )
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this tree's gateway
        argv = [sys.executable, "-m", "seekserve", "gateway", "--port", str(gateway_port)]
        argv += ["--upstream", f"http://127.0.0.1:{upstream_port}/v1", "--log-level", "warning"]
        gateway = None
        try:
            wait_ready(upstream, f"http://127.0.0.1:{upstream_port}/health", logs / "upstream.log")
            gateway = start(argv, logs / "gateway.log", env)
            wait_ready(gateway, f"http://127.0.0.1:{gateway_port}/health", logs / "gateway.log")
            url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
            run = uvloop.run(drive(url, gateway.pid, args))
        finally:
            if gateway is not None:
                stop(gateway)
            stop(upstream)
    load = {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]}
    result = summarize(run, args, load)
    report(result)
    write_json(args.json, {"machine": machine(), **result})


if __name__ == "__main__":
    main()
