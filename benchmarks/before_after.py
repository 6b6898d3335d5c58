"""This checkout against another revision on the anchors' workloads: does a change keep the figures?

    git worktree add /tmp/seekserve-base b52089a
    python benchmarks/before_after.py --base /tmp/seekserve-base
    python benchmarks/before_after.py --base /tmp/seekserve-base --workloads single --quantization none,int4

Each run is this checkout's `benchmarks/run_workload.py` (public API only) in its own process with
one tree's src first on the path (the default model; greedy, or `--temperature 0.6 --top-p 0.95`),
alternating base and this checkout, so drift on a shared machine hits both alike. Prints
the median output tokens/s of each side with its spread and the ratio this / base, and writes JSON.
Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import DEFAULT_ANCHORS, REPO, machine, median, print_table, write_json


def run(tree: Path, workload: str, quantization: str, args: argparse.Namespace) -> float:
    """Output tokens/s of one run of run_workload.py with `tree`'s src on the path."""
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "run_workload.py"),
        workload,
        "--anchors",
        str(args.anchors),
    ]
    cmd += [
        "--quantization",
        quantization,
        "--temperature",
        str(args.temperature),
        "--top-p",
        str(args.top_p),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"engine"')]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{tree}: {workload} {quantization} failed:\n{proc.stderr[-2000:]}")
    return float(json.loads(lines[-1])["output_tok_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="a checkout of the revision to compare with")
    ap.add_argument("--workloads", default="single,batch16,batch64")
    ap.add_argument("--quantization", default="none,int4", help="comma-separated: none, int8, int4")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "before_after.json")
    args = ap.parse_args()

    trees = {"base": args.base.resolve(), "this": REPO}
    cases = [(w, q) for q in args.quantization.split(",") for w in args.workloads.split(",")]
    runs: dict[str, dict[str, list[float]]] = {f"{w} {q}": {"base": [], "this": []} for w, q in cases}
    for repeat in range(args.repeats):
        for w, q in cases:
            order = ["base", "this"] if repeat % 2 == 0 else ["this", "base"]
            for side in order:
                tok_s = run(trees[side], w, q, args)
                runs[f"{w} {q}"][side].append(tok_s)
                print(f"  {w:8} {q:5} {side:4} {tok_s:8.1f} tok/s", flush=True)
    rows: list[list[Any]] = []
    summary = {}
    for case, sides in runs.items():
        base, this = median(sides["base"]), median(sides["this"])
        spread = {s: f"{min(v):.1f}-{max(v):.1f}" for s, v in sides.items()}
        ratio = f"{this / base:.3f}"
        rows.append([case, f"{base:.1f}", spread["base"], f"{this:.1f}", spread["this"], ratio])
        summary[case] = {"base": sides["base"], "this": sides["this"], "ratio": this / base}
    header = ["workload", "base tok/s", "spread", "this tok/s", "spread", "this / base"]
    mode = "greedy" if args.temperature == 0 else f"temperature {args.temperature:g}, top_p {args.top_p:g}"
    print_table(f"output tok/s, {mode}, base vs this checkout", header, rows)
    payload = {"machine": machine(), "base": str(trees["base"]), "mode": mode, "cases": summary}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
