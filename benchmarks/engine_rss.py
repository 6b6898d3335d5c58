"""An engine's resident memory under batches of varied shapes, with oneDNN's caches bounded or not.

    python benchmarks/engine_rss.py                          # 20 rounds, caches of 128 and of 1,024
    python benchmarks/engine_rss.py --rounds 40 --entries 64 128 1024

Each setting runs in a process of its own (oneDNN reads its cache capacities once, when it first
runs): an offline engine on the default model (or --model), one thread, the soak's engine settings
(max_model_len 1024, 160 KV blocks of 16, 6 sequences), then --rounds rounds, each a batch of 1 to 8
random token prompts of 3 to 900 tokens, 1 to 40 output tokens, n of 1 to 3, 60 % sampled at
temperature 0.6 / top_p 0.95, some with log-probabilities. The same seed gives every setting the
same batches. RSS is read after each round. A cache that holds an entry per shape grows with every
new shape a step's oneDNN products meet until it is full (before prefill attention moved to SDPA,
nearly every (query block, context length)); a bounded one stops early.
Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, print_table, write_json
from soak_stack import proc_sample


def rss_mib() -> float:
    return proc_sample(os.getpid())["rss_kib"] / 1024


def child(args: argparse.Namespace) -> None:
    """One setting: print one JSON line per round."""
    from seekserve import LLM, SamplingParams

    llm = LLM(args.model, num_threads=1, max_model_len=1024, num_kv_blocks=160, max_num_seqs=6)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    print(json.dumps({"round": -1, "rss_mib": rss_mib(), "s": 0.0}), flush=True)
    for r in range(args.rounds):
        prompts, params = [], []
        for _ in range(rng.randint(1, 8)):
            prompts.append([rng.randint(100, 5000) for _ in range(rng.randint(3, 900))])
            sampled = rng.random() < 0.6
            params.append(
                SamplingParams(
                    max_tokens=rng.randint(1, 40),
                    n=rng.choice([1, 1, 1, 2, 3]),
                    temperature=0.6 if sampled else 0.0,
                    top_p=0.95 if sampled else 1.0,
                    logprobs=rng.choice([None, None, 2]),
                    ignore_eos=True,
                )
            )
        llm.generate(prompts, params)
        print(json.dumps({"round": r, "rss_mib": rss_mib(), "s": time.perf_counter() - start}), flush=True)


def run_setting(args: argparse.Namespace, entries: int) -> list[dict[str, Any]]:
    env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(entries), "LRU_CACHE_CAPACITY": str(entries)}
    argv = [sys.executable, __file__, "--child", "--rounds", str(args.rounds), "--seed", str(args.seed)]
    if args.model:
        argv += ["--model", args.model]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the default model")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--entries", type=int, nargs="+", default=[128, 1024], help="cache capacities to compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "results" / "engine_rss.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    runs = {entries: run_setting(args, entries) for entries in args.entries}
    rows = []
    half = args.rounds // 2
    for entries, rounds in runs.items():
        rss = [r["rss_mib"] for r in rounds]  # loaded, then after each round
        rows.append([entries, rss[0], rss[1], rss[half], rss[-1], rss[-1] - rss[half], rounds[-1]["s"]])
    print_table(
        f"Engine RSS (MiB) over {args.rounds} rounds of varied batches, by oneDNN cache entries",
        ["entries", "loaded", "round 1", f"round {half}", f"round {args.rounds}", "2nd half +", "seconds"],
        rows,
    )
    write_json(args.out, {"command": sys.argv, "machine": machine(), "runs": runs, "rounds": args.rounds})


if __name__ == "__main__":
    main()
