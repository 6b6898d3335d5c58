"""Cold start: seconds from launching a command until it is ready, on a first and a later run.

"Ready" is either the command exiting successfully (default: `seekserve generate` with the default
model, which loads the model and produces one token), or an HTTP URL answering 200 (a server's
/health), after which the server is stopped:

    python benchmarks/cold_start.py                                   # LLM load + first token
    python benchmarks/cold_start.py --command "seekserve serve --port 8123" \\
        --ready-url http://127.0.0.1:8123/health                     # server to ready /health

Unless --home is given, the runs share a fresh, empty SEEKSERVE_HOME, so run 1 includes first-use
work (assembling the default model, converting its tokenizer) and later runs show the warm cache.
The OS page cache is not dropped between runs (that needs root), so run 1 may still find the
packages' files in memory. Prints a table and writes JSON (--output).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import machine, print_table, write_json

DEFAULT_COMMAND = f"{shlex.quote(sys.executable)} -m seekserve generate --max-tokens 1 Hello"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--command", default=DEFAULT_COMMAND, help="command to time (shell syntax, no shell)")
    parser.add_argument(
        "--ready-url", help="ready when this URL answers 200; default: when the command exits"
    )
    parser.add_argument("--runs", type=int, default=2, help="number of runs (first, then warm)")
    parser.add_argument("--home", type=Path, help="SEEKSERVE_HOME to use (default: a fresh temporary one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run counts as failed")
    parser.add_argument(
        "--output", type=Path, default=Path("results/cold_start.json"), help="JSON result file"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs={args.runs} must be at least 1")
    return args


def time_run(command: list[str], env: dict[str, str], ready_url: str | None, timeout: float) -> float:
    """Seconds from launch to ready; raises RuntimeError if the command fails or times out."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        if ready_url is None:
            _, stderr = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"command exited with {proc.returncode}: {stderr.decode()[-2000:]}")
            return time.perf_counter() - start
        return _wait_for_url(proc, ready_url, start, timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"not ready within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _wait_for_url(proc: subprocess.Popen[bytes], url: str, start: float, timeout: float) -> float:
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"command exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet
        time.sleep(0.05)
    raise subprocess.TimeoutExpired(url, timeout)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="seekserve-cold-start-"))
    env = dict(os.environ, SEEKSERVE_HOME=str(home))
    command = shlex.split(args.command)
    results = []
    for run in range(1, args.runs + 1):
        label = "first (empty cache)" if run == 1 and args.home is None else "warm cache"
        seconds = time_run(command, env, args.ready_url, args.timeout)
        results.append({"run": run, "cache": label, "seconds": round(seconds, 3)})
        print(f"run {run} ({label}): {seconds:.2f} s", file=sys.stderr)
    rows = [(r["run"], r["cache"], r["seconds"]) for r in results]
    print_table(f"cold start: {args.command}", ("run", "cache", "seconds to ready"), rows)
    record = {
        "benchmark": "cold_start",
        "command": args.command,
        "ready": args.ready_url or "exit",
        "seekserve_home": str(home),
        "machine": machine(),
        "runs": results,
    }
    write_json(args.output, record)


if __name__ == "__main__":
    main()
