"""seekserve vs the peer engines on Gemma 3 270M (CPU), the anchors' fixed workloads, in one run.

    python benchmarks/cpu_vs_peers.py                       # all workloads, 3 interleaved repeats
    python benchmarks/cpu_vs_peers.py --workloads single --repeats 5
    python benchmarks/cpu_vs_peers.py --temperature 0.6 --top-p 0.95 --drop seekserve-int4 --drop llamacpp

Each (engine, workload) runs in its own process, in interleaved order (seekserve, peer, seekserve,
peer, ...), so drift on a shared machine hits both sides alike. Contestants: seekserve bf16 and
int4 (benchmarks/run_workload.py), vLLM's CPU build with both cores (`run_vllm.py --reserved-cpus 0`)
and llama.cpp on the Q4_K_M GGUF (`run_llamacpp.py`), both from the anchors (run their setup.sh
first). `--temperature`/`--top-p` sample every timed request of both seekserve and vLLM (vLLM through
`run_vllm_sampled.py`, the anchors' runner with the same parameters); llama.cpp's runner is greedy
only and is left out of sampled runs. Prints median output tokens/s with the spread, the ratios the
targets name, and writes JSON plus a markdown table. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_ANCHORS, REPO, machine, median, print_table, read_bandwidth_gbs, write_json

WORKLOAD_CONTESTANTS = {
    "single": ["seekserve-bf16", "vllm-r0", "seekserve-int4", "llamacpp"],
    "batch16": ["seekserve-bf16", "vllm-r0", "seekserve-int4", "llamacpp"],
    "batch64": ["seekserve-bf16", "vllm-r0", "seekserve-int4", "llamacpp"],
}
TARGETS = [  # (workload, seekserve contestant, peer, target ratio)
    ("single", "seekserve-bf16", "vllm-r0", 1.6),
    ("single", "seekserve-int4", "llamacpp", 1.5),
    ("batch16", "seekserve-bf16", "vllm-r0", 1.3),
    ("batch64", "seekserve-bf16", "vllm-r0", 1.3),
]


def command(
    contestant: str, workload: str, anchors: Path, anchors_dir: Path, sampling: list[str]
) -> list[str]:
    ours = [sys.executable, str(REPO / "benchmarks" / "run_workload.py"), workload, "--anchors", str(anchors)]
    vllm = [str(anchors_dir / "vllm/bin/python"), str(anchors / "run_vllm.py")]
    if sampling:
        vllm = [vllm[0], str(REPO / "benchmarks" / "run_vllm_sampled.py"), "--anchors", str(anchors)]
    return {
        "seekserve-bf16": [*ours, *sampling],
        "seekserve-int4": [*ours, "--quantization", "int4", *sampling],
        "vllm-r0": [*vllm, workload, "--reserved-cpus", "0", *sampling],
        "llamacpp": [str(anchors_dir / "llama/bin/python"), str(anchors / "run_llamacpp.py"), workload],
    }[contestant]


def run(cmd: list[str], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"engine"')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "process_s": time.perf_counter() - t}
    record: dict[str, Any] = json.loads(lines[-1])
    record["process_s"] = round(time.perf_counter() - t, 1)
    return record


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for workload, by_contestant in runs.items():
        for contestant, records in by_contestant.items():
            values = [r["output_tok_s"] for r in records if "output_tok_s" in r]
            if values:
                out.setdefault(workload, {})[contestant] = {
                    "median": median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="single,batch16,batch64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--drop", action="append", default=[], help="leave a contestant out (repeatable)")
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--anchors-dir", type=Path, default=Path(os.environ.get("ANCHORS_DIR", "/tmp/anchors")))
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "cpu_vs_peers.json")
    ap.add_argument("--temperature", type=float, help="sample (seekserve and vLLM); default: greedy")
    ap.add_argument("--top-p", type=float, default=1.0)
    args = ap.parse_args()
    sampling = (
        []
        if args.temperature is None
        else ["--temperature", str(args.temperature), "--top-p", str(args.top_p)]
    )
    if sampling and "llamacpp" not in args.drop:
        sys.exit("llama.cpp's anchor runner is greedy only: add --drop llamacpp to a sampled run")

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    bandwidth: list[float] = []
    for workload in args.workloads.split(","):
        contestants = [c for c in WORKLOAD_CONTESTANTS[workload] if c not in args.drop]
        for repeat in range(args.repeats):
            bandwidth.append(read_bandwidth_gbs())
            print(f"[{time.strftime('%H:%M:%S')}] memory read: {bandwidth[-1]:.1f} GB/s", flush=True)
            for contestant in contestants:
                record = run(
                    command(contestant, workload, args.anchors, args.anchors_dir, sampling), args.timeout_s
                )
                runs.setdefault(workload, {}).setdefault(contestant, []).append(record)
                shown = record.get("output_tok_s", record.get("error"))
                print(
                    f"[{time.strftime('%H:%M:%S')}] {workload} #{repeat + 1} {contestant}: {shown}",
                    flush=True,
                )
    summary = summarise(runs)
    rows = [
        [w, c, s["median"], f"{s['min']:.1f}-{s['max']:.1f}", s["n"]]
        for w, by in summary.items()
        for c, s in by.items()
    ]
    print_table("output tokens/s (median of repeats)", ["workload", "engine", "tok/s", "range", "runs"], rows)
    ratios = []
    for workload, ours, peer, target in TARGETS:
        if ours in summary.get(workload, {}) and peer in summary.get(workload, {}):
            ratio = summary[workload][ours]["median"] / summary[workload][peer]["median"]
            pairs = [
                a["output_tok_s"] / b["output_tok_s"]
                for a, b in zip(runs[workload][ours], runs[workload][peer], strict=True)
                if "output_tok_s" in a and "output_tok_s" in b
            ]
            ratios.append(
                {
                    "workload": workload,
                    "seekserve": ours,
                    "peer": peer,
                    "ratio": ratio,
                    "pair_ratios": pairs,
                    "target": target,
                    "met": ratio >= target,
                }
            )
    print_table(
        "ratios against the targets (ratio of medians; range of the paired runs' ratios)",
        ["workload", "seekserve", "peer", "ratio", "pairs", "target", "met"],
        [
            [
                r["workload"],
                r["seekserve"],
                r["peer"],
                r["ratio"],
                f"{min(r['pair_ratios'], default=0):.2f}-{max(r['pair_ratios'], default=0):.2f}",
                r["target"],
                r["met"],
            ]
            for r in ratios
        ],
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "repeats": args.repeats,
            "sampling": {"temperature": args.temperature, "top_p": args.top_p} if sampling else "greedy",
            "read_gbs": bandwidth,
            "summary": summary,
            "ratios": ratios,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
