"""How long a client's stream stalls when the engine serving it dies behind `seekserve gateway`.

    python benchmarks/gateway_recovery.py                           # two engines on the packaged Gemma 3 270M
    python benchmarks/gateway_recovery.py --model DIR --runs 3 --modes kill stall

Two `seekserve serve` engines and `seekserve gateway` run as child processes. Each run streams a
greedy completion of --max-tokens tokens (`ignore_eos`) through the gateway; after the client has
read --signal-after events, the engine serving it (the `x-seekserve-backend` header) is

    kill    SIGKILL'd: its connection closes as soon as the kernel has torn the process down (reported:
            SIGKILL to reaped), the gateway sees it at once and continues the stream on the other
            engine (`--upstream` gateway, default timeouts: inter_token_s plays no part)
    stall   SIGSTOP'd: the connection stays open and silent; the gateway gives up after
            timeouts.inter_token_s (--stall-inter-token-s, `--config` gateway) and continues elsewhere
    none    left alone: the gaps of an undisturbed stream through the gateway

The client stamps every event's arrival. Per run: the median gap between events (outside the
recovery window), the longest gap among the first --window events after the signal (the recovery
as the client sees it), the longest gap elsewhere, whether the text equals the uninterrupted
answer, and whether the gateway counted a continued stream. A killed engine is restarted (and
warmed up) and a stopped one continued before the next run. The engines run without prefix
caching, so each continuation prefills prompt + generated tokens in full; that prefill alone is
timed once, straight on an engine, for comparison. Prints a table and writes
results/gateway_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common import REPO, machine, median, print_table, write_json

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
SIGNALS = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A `python -m seekserve ...` child process on a fixed port, restartable."""

    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "seekserve", *self.argv, "--port", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={
                    **os.environ,
                    "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                },
            )

    def wait_healthy(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None, "start() first"
            if self.proc.poll() is not None:
                sys.exit(f"{self.argv[0]} on port {self.port} exited: see {self.log}")
            try:
                if httpx.get(self.root + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        sys.exit(f"{self.argv[0]} on port {self.port} not healthy within {timeout_s:g} s: see {self.log}")

    def stop(self) -> None:
        """Stop by pid: continue it if stopped, SIGINT, SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)


@dataclass
class Trace:
    backend: str
    times: list[float] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    """Generated token ids, when the request asked for `return_token_ids`."""
    prompt_ids: list[int] = field(default_factory=list)
    signal_at: float | None = None
    done: bool = False
    error: str | None = None


def stream(client: httpx.Client, url: str, body: dict[str, Any], hit: Any = None, after: int = 0) -> Trace:
    """Stream `body`; after `after` events call hit(backend name) once. Event arrival times in `times`."""
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            sys.exit(f"{url} answered {response.status_code}: {response.read()[:500]!r}")
        trace = Trace(response.headers.get("x-seekserve-backend", ""))
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            payload = line[5:].strip()
            if payload == "[DONE]":
                trace.done = True
                break
            event = json.loads(payload)
            if "error" in event:
                trace.error = str(event["error"])[:300]
                continue
            trace.times.append(now)
            for choice in event.get("choices") or ():
                trace.text.append(choice.get("text") or "")
                trace.ids += choice.get("token_ids") or ()
                trace.prompt_ids = trace.prompt_ids or choice.get("prompt_token_ids") or []
            if hit is not None and len(trace.times) == after:
                hit(trace.backend)
                trace.signal_at = time.perf_counter()
    return trace


def summarize(trace: Trace, after: int, window: int) -> dict[str, Any]:
    """Gaps in ms; gap j ends at event j + 1. The recovery window: the gaps ending at the first
    `window` events that arrived after the signal (without a signal: after event `after`, the same
    place in an undisturbed stream)."""
    gaps = [(b - a) * 1e3 for a, b in zip(trace.times, trace.times[1:], strict=False)]
    first = after
    if trace.signal_at is not None:
        first = next((i for i, t in enumerate(trace.times) if t > trace.signal_at), len(trace.times))
    lo = max(first - 1, 0)
    recovery, others = gaps[lo : lo + window], gaps[:lo] + gaps[lo + window :]
    return {
        "num_events": len(trace.times),
        "median_gap_ms": median(others),
        "recovery_gap_ms": max(recovery) if recovery else float("nan"),
        "max_other_gap_ms": max(others) if others else float("nan"),
        "gaps_ms": [round(g, 3) for g in gaps],
    }


def continued_total(gateway: Child, model: str) -> float:
    text = httpx.get(gateway.root + "/metrics", timeout=10).text
    key = f'seekserve:gateway_continued_streams_total{{model="{model}",outcome="continued"}} '
    return sum(float(line[len(key) :]) for line in text.splitlines() if line.startswith(key))


def wait_gateway_sees_all(gateway: Child, timeout_s: float = 60.0) -> None:
    """Until the gateway's own health view has every backend healthy with a closed circuit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backends = httpx.get(gateway.root + "/health", timeout=5).json()["backends"].values()
        if all(b["healthy"] and b["circuit"] == "closed" for b in backends):
            return
        time.sleep(0.2)
    sys.exit(f"the gateway did not see every backend healthy within {timeout_s:g} s")


def gateway_child(mode: str, engines: list[Child], args: argparse.Namespace, tmp: Path) -> Child:
    urls = [e.root + "/v1" for e in engines]
    if mode != "stall":
        argv = ["gateway", *(a for u in urls for a in ("--upstream", u))]
    else:
        config = {
            "backends": [{"name": f"upstream{i}", "url": u} for i, u in enumerate(urls)],
            "timeouts": {"inter_token_s": args.stall_inter_token_s},
        }
        path = tmp / "gateway.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        argv = ["gateway", "--config", str(path)]
    return Child([*argv, "--log-level", "warning"], free_port(), tmp / f"gateway-{mode}.log")


@dataclass
class Signaller:
    """Sends `mode`'s signal to the engine a gateway backend name (upstreamN) stands for. After a
    SIGKILL a thread waits for the process to be reaped: the kernel closes a dying process's
    sockets only after tearing down its memory, so that is when the gateway can see the reset."""

    mode: str
    engines: list[Child]
    victims: list[Child] = field(default_factory=list)
    exit_ms: float | None = None
    reaper: threading.Thread | None = None

    def __call__(self, backend: str) -> None:
        target = self.engines[int(backend.removeprefix("upstream"))]
        assert target.proc is not None, "engines are running"
        sent = time.perf_counter()
        os.kill(target.proc.pid, SIGNALS[self.mode])
        self.victims.append(target)
        if self.mode == "kill":
            self.reaper = threading.Thread(target=self._reap, args=(target.proc, sent), daemon=True)
            self.reaper.start()

    def _reap(self, proc: subprocess.Popen[bytes], sent: float) -> None:
        proc.wait()
        self.exit_ms = (time.perf_counter() - sent) * 1e3


def one_run(
    client: httpx.Client, gateway: Child, engines: list[Child], mode: str, args: argparse.Namespace,
    body: dict[str, Any], reference: str,
) -> dict[str, Any]:  # fmt: skip
    wait_gateway_sees_all(gateway)
    before = continued_total(gateway, body["model"])
    signaller = Signaller(mode, engines)
    hit = signaller if mode in SIGNALS else None
    trace = stream(client, gateway.root + "/v1/completions", body, hit, args.signal_after)
    row = {"mode": mode, "backend": trace.backend, **summarize(trace, args.signal_after, args.window)}
    row["exact"] = "".join(trace.text) == reference
    row["done"], row["error"] = trace.done, trace.error
    row["continued"] = continued_total(gateway, body["model"]) - before
    if signaller.reaper is not None:
        signaller.reaper.join()
    row["victim_exit_ms"] = signaller.exit_ms
    for target in signaller.victims:
        restore(target, mode)
    return row


def run_mode(
    mode: str, engines: list[Child], args: argparse.Namespace, tmp: Path, model: str, reference: str
) -> list[dict[str, Any]]:
    gateway = gateway_child(mode, engines, args, tmp)
    gateway.start()
    rows = []
    try:
        gateway.wait_healthy()
        body = request_body(model, args.max_tokens)
        with httpx.Client(timeout=600) as client:
            for _ in range(4):  # open the gateway's pooled connections to both engines
                stream(client, gateway.root + "/v1/completions", request_body(model, 8))
            for run in range(args.runs):
                row = {"run": run, **one_run(client, gateway, engines, mode, args, body, reference)}
                rows.append(row)
                gap, typical = row["recovery_gap_ms"], row["median_gap_ms"]
                exit_ms = row["victim_exit_ms"]
                died = "" if exit_ms is None else f", engine gone {exit_ms:.1f} ms after SIGKILL"
                print(
                    f"{mode} run {run}: recovery gap {gap:.1f} ms, median gap {typical:.1f} ms{died}",
                    flush=True,
                )
    finally:
        gateway.stop()
    return rows


def restore(engine: Child, mode: str) -> None:
    assert engine.proc is not None, "engines are running"
    if mode == "stall":
        os.kill(engine.proc.pid, signal.SIGCONT)
    else:
        engine.proc.wait(timeout=30)
        engine.start()
    engine.wait_healthy()
    warm_up(engine)


def warm_up(engine: Child) -> None:
    """One short request, so a restarted engine is not cold when a continuation lands on it."""
    model = httpx.get(engine.root + "/v1/models", timeout=10).json()["data"][0]["id"]
    with httpx.Client(timeout=600) as client:
        stream(client, engine.root + "/v1/completions", request_body(model, 8))


def request_body(model: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "stream": True,
    }  # fmt: skip


def engine_argv(args: argparse.Namespace) -> list[str]:
    argv = ["serve", "--max-model-len", "1024", "--num-kv-blocks", "256", "--no-enable-prefix-caching"]
    if args.model:
        argv += ["--model", args.model]
    return argv + shlex.split(args.engine_args)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=None, help="model for both engines (default: the packaged Gemma 3 270M)"
    )
    ap.add_argument(
        "--engine-args", default="", help='more `seekserve serve` options, e.g. "--num-threads 1"'
    )
    ap.add_argument(
        "--modes", nargs="+", choices=["none", "kill", "stall"], default=["none", "kill", "stall"]
    )
    ap.add_argument("--runs", type=int, default=5, help="runs per mode")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--signal-after", type=int, default=64, help="events the client reads before the signal")
    ap.add_argument("--window", type=int, default=8, help="events after the signal that make the recovery")
    ap.add_argument("--stall-inter-token-s", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "gateway_recovery.json")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gateway-recovery-"))
    engines = [Child(engine_argv(args), free_port(), tmp / f"engine{i}.log") for i in range(2)]
    rows: list[dict[str, Any]] = []
    try:
        for engine in engines:
            engine.start()
        for engine in engines:
            engine.wait_healthy()
        for engine in engines:
            warm_up(engine)
        model = httpx.get(engines[0].root + "/v1/models").json()["data"][0]["id"]
        with httpx.Client(timeout=600) as client:  # the uninterrupted answer, and what a continuation costs
            body = {**request_body(model, args.max_tokens), "return_token_ids": True}
            direct = stream(client, engines[0].root + "/v1/completions", body)
            prefill_ms = continuation_ttft_ms(client, engines[1], model, direct, args.signal_after)
        reference = "".join(direct.text)
        for mode in args.modes:
            rows += run_mode(mode, engines, args, tmp, model, reference)
    finally:
        for engine in engines:
            engine.stop()
    report(args, model, rows, {**summarize(direct, args.signal_after, args.window), "prefill_ms": prefill_ms})


def continuation_ttft_ms(client: httpx.Client, engine: Child, model: str, direct: Trace, after: int) -> float:
    """Median time to the first event of a continuation's request (prompt + `after` generated ids,
    one token) sent straight to `engine`: the prefill a recovery pays, without the gateway."""
    prompt = direct.prompt_ids + direct.ids[:after]
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "stream": True}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        trace = stream(client, engine.root + "/v1/completions", body)
        times.append((trace.times[0] - start) * 1e3)
    return median(times)


def report(args: argparse.Namespace, model: str, rows: list[dict[str, Any]], direct: dict[str, Any]) -> None:
    header = ["mode", "run", "events", "median", "recovery", "added", "max other", "exact", "continued"]
    table = [
        [r["mode"], r["run"], r["num_events"], r["median_gap_ms"], r["recovery_gap_ms"],
         r["recovery_gap_ms"] - r["median_gap_ms"], r["max_other_gap_ms"], r["exact"], int(r["continued"])]
        for r in rows
    ]  # fmt: skip
    print_table(f"gaps between events at the client, ms ({model}, {args.max_tokens} tokens)", header, table)
    summary = {}
    for mode in args.modes:
        mine = [r for r in rows if r["mode"] == mode]
        recovery = [r["recovery_gap_ms"] for r in mine]
        exits = [r["victim_exit_ms"] for r in mine if r["victim_exit_ms"] is not None]
        summary[mode] = {
            "median_gap_ms": median([r["median_gap_ms"] for r in mine]),
            "median_recovery_gap_ms": median(recovery),
            "max_recovery_gap_ms": max(recovery) if recovery else None,
            "median_victim_exit_ms": median(exits) if exits else None,
            "all_exact": all(r["exact"] for r in mine),
            "all_continued": all(r["continued"] == 1 for r in mine) if mode in SIGNALS else None,
        }
    print(json.dumps(summary, indent=2))
    print(
        f"direct: median gap {direct['median_gap_ms']:.1f} ms; a continuation's first event "
        f"(prompt + {args.signal_after} generated ids, prefilled) {direct['prefill_ms']:.1f} ms"
    )
    write_json(
        args.json,
        {
            "machine": {**machine(), "loadavg": os.getloadavg()},
            "args": {k: str(v) for k, v in vars(args).items()},
            "model": model,
            "direct_median_gap_ms": direct["median_gap_ms"],
            "continuation_prefill_ttft_ms": direct["prefill_ms"],
            "summary": summary,
            "runs": rows,
        },
    )


if __name__ == "__main__":
    main()
