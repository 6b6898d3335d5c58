"""seekserve vs vLLM through HTTP, measured by vLLM's own client (`vllm bench serve`), in one run.

    python benchmarks/vllm_client.py                                 # concurrency 1, 16, 32; greedy
                                                                     # and sampled; 3 interleaved repeats
    python benchmarks/vllm_client.py --concurrency 16 --modes sampled --repeats 2

Each server runs alone (started, measured at every point, stopped), in interleaved order
(seekserve, vLLM, seekserve, vLLM, ...). The client is the anchors' `vllm_bench_serve.py` (every flag
vLLM's): random dataset, 256 tokens in and 128 out, `--ignore-eos`, the model's tokenizer;
`greedy` sends temperature 0, `sampled` temperature 0.6 and top_p 0.95 (DeepSeek's advice), no seed.
Each point (mode, concurrency) draws its own prompts (the dataset seed differs), the same for both
servers, so no point is served from the prefix cache an earlier point filled.
Both servers get the same limits (1,024-token context, 64 sequences) on both cores. Prints medians
of output tokens/s, TTFT and ITL with their spread, the ratios the targets name (throughput ≥ 1.3×
vLLM's, p99 ITL no worse), and writes JSON. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_ANCHORS, REPO, machine, median, print_table, write_json
from seekserve.bench.servers import ManagedServer, ServerSpec

LIMITS = "--max-model-len 1024 --max-num-seqs 64"
SERVERS = {
    "seekserve": ServerSpec(
        "seekserve",
        "{python} -m seekserve serve --model {model} --host 127.0.0.1 --port {port} "
        + LIMITS
        + " {seekserve_args}",
    ),
    # serve.sh: vLLM's CPU build, bf16, both cores, the same limits.
    "vllm": ServerSpec("vllm", "bash {anchors}/serve.sh vllm {port}", ready_timeout_s=600),
}
MODES = {"greedy": ["--temperature", "0"], "sampled": ["--temperature", "0.6", "--top-p", "0.95"]}
FIGURES = {  # label: key in vLLM's result JSON
    "output tok/s": "output_throughput",
    "TTFT mean (ms)": "mean_ttft_ms",
    "TTFT p99 (ms)": "p99_ttft_ms",
    "ITL mean (ms)": "mean_itl_ms",
    "ITL p99 (ms)": "p99_itl_ms",
}


def bench(server: ManagedServer, args: argparse.Namespace, mode: str, concurrency: int) -> dict[str, Any]:
    """One `vllm bench serve` run against a started server; vLLM's result JSON."""
    prompts = args.num_prompts or max(8, min(64, 4 * concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            str(args.anchors_dir / "vllm/bin/python"),
            str(args.anchors / "vllm_bench_serve.py"),
            "--backend", "openai",
            "--base-url", server.base_url,
            "--endpoint", "/v1/completions",
            "--model", str(server.model),
            "--tokenizer", str(args.model),
            "--dataset-name", "random",
            "--random-input-len", str(args.input_len),
            "--random-output-len", str(args.output_len),
            "--num-prompts", str(prompts),
            "--max-concurrency", str(concurrency),
            "--ignore-eos",
            "--percentile-metrics", "ttft,tpot,itl",
            "--metric-percentiles", "50,99",
            "--seed", str(args.seed + 1000 * list(MODES).index(mode) + concurrency),
            "--save-result", "--result-dir", tmp, "--result-filename", "result.json",
            *MODES[mode],
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
        result_path = Path(tmp) / "result.json"
        if proc.returncode != 0 or not result_path.is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            return {"error": f"exit {proc.returncode}: {tail}"}
        result: dict[str, Any] = json.loads(result_path.read_text())
    if result.get("completed") != prompts:
        result["error"] = f"{result.get('completed')} of {prompts} requests completed"
    return {k: v for k, v in result.items() if not isinstance(v, list)}  # drop per-request lists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="1,16,32")
    ap.add_argument("--modes", default="greedy,sampled")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", default="seekserve,vllm")
    ap.add_argument("--num-prompts", type=int, help="per run (default: 4 × concurrency, from 8 to 64)")
    ap.add_argument("--input-len", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--anchors-dir", type=Path, default=Path(os.environ.get("ANCHORS_DIR", "/tmp/anchors")))
    ap.add_argument("--model", type=Path, help="default: the anchors' Gemma 3 270M bf16 directory")
    ap.add_argument("--seekserve-args", default="", help="more flags for seekserve serve")
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "vllm_client.json")
    args = ap.parse_args()
    args.model = args.model or args.anchors_dir / "models" / "gemma3-270m-bf16"
    if not (args.anchors_dir / "vllm/bin/python").is_file():
        sys.exit(f"no vLLM venv under {args.anchors_dir}: run {args.anchors / 'setup.sh'} first")
    values = {"model": str(args.model), "anchors": str(args.anchors), "seekserve_args": args.seekserve_args}
    points = [(m, int(c)) for m in args.modes.split(",") for c in args.concurrency.split(",")]
    names = args.servers.split(",")

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs:
        for repeat in range(args.repeats):
            for name in names:
                with ManagedServer(SERVERS[name], Path(logs), values) as server:
                    for mode, concurrency in points:
                        result = bench(server, args, mode, concurrency)
                        runs.append(
                            {
                                "server": name,
                                "mode": mode,
                                "concurrency": concurrency,
                                "repeat": repeat,
                                **result,
                            }
                        )
                        shown = result.get("error") or ", ".join(
                            f"{label} {result[key]:.1f}" for label, key in FIGURES.items()
                        )
                        when = time.strftime("%H:%M:%S")
                        print(f"[{when}] #{repeat + 1} {name} {mode} c{concurrency}: {shown}", flush=True)

    def values_of(name: str, mode: str, c: int, key: str) -> list[float]:
        return [
            r[key]
            for r in runs
            if (r["server"], r["mode"], r["concurrency"]) == (name, mode, c) and "error" not in r
        ]

    summary: dict[str, Any] = {}
    rows = []
    for mode, c in points:
        for name in names:
            entry = {}
            for label, key in FIGURES.items():
                v = values_of(name, mode, c, key)
                entry[label] = {"median": median(v), "min": min(v, default=0), "max": max(v, default=0)}
            summary[f"{name}/{mode}/c{c}"] = entry
            rows.append(
                [mode, c, name]
                + [
                    f"{entry[label]['median']:.1f} ({entry[label]['min']:.0f}-{entry[label]['max']:.0f})"
                    for label in FIGURES
                ]
            )
    print_table("vllm bench serve: median (range) of the repeats", ["mode", "conc", "server", *FIGURES], rows)

    targets = []
    if {"seekserve", "vllm"} <= set(names):
        for mode, c in points:
            ours, peer = summary[f"seekserve/{mode}/c{c}"], summary[f"vllm/{mode}/c{c}"]
            throughput = ours["output tok/s"]["median"] / peer["output tok/s"]["median"]
            itl = ours["ITL p99 (ms)"]["median"] / peer["ITL p99 (ms)"]["median"]
            targets.append(
                {
                    "mode": mode,
                    "concurrency": c,
                    "throughput_ratio": throughput,
                    "p99_itl_ratio": itl,
                    "met": throughput >= 1.3 and itl <= 1.0,
                }
            )
        print_table(
            "against the targets: throughput ≥ 1.3× vLLM's, p99 ITL ≤ vLLM's (ratios of medians)",
            ["mode", "conc", "throughput ×", "p99 ITL ×", "met"],
            [
                [t["mode"], t["concurrency"], t["throughput_ratio"], t["p99_itl_ratio"], t["met"]]
                for t in targets
            ],
        )
    write_json(
        args.json,
        {
            "machine": machine(),
            "client": "vllm bench serve (anchors' vllm_bench_serve.py)",
            "input_len": args.input_len,
            "output_len": args.output_len,
            "repeats": args.repeats,
            "summary": summary,
            "targets": targets,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
