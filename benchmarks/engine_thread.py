"""Which thread builds the engine and which steps it: the cost of OpenMP teams on a small CPU.

    python benchmarks/engine_thread.py                    # default model (Gemma 3 270M), bf16
    python benchmarks/engine_thread.py --model DIR --tokens 64

libgomp keeps a team of worker threads for every thread that has run a parallel region and stops
spin-waiting between regions once its threads outnumber the CPUs. Two measurements show what that
does to a thread other than the one that ran torch first:

  matmul   one bf16 row times a 2048 x 640 weight (µs a call) on the main thread, then on a
           second thread while the main thread's team lives on
  decode   the median gap between one stream's tokens: an LLMEngine built and stepped on the main
           thread; the same engine stepped on a second thread; an AsyncEngine built by
           `from_options` (the engine is built on the thread that steps it, as `seekserve serve`
           does), in a fresh process so that no other team exists

Prints a table and writes JSON. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from common import REPO, machine, median, print_table, write_json

PROMPT = list(range(1000, 1128))


def on_thread(fn: Callable[[], float]) -> float:
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(fn()))
    worker.start()
    worker.join()
    return result[0]


def matmul_us(calls: int = 3000) -> float:
    x = torch.randn(1, 640, dtype=torch.bfloat16)
    w = torch.randn(2048, 640, dtype=torch.bfloat16)
    for _ in range(100):
        torch.nn.functional.linear(x, w)
    t = time.perf_counter()
    for _ in range(calls):
        torch.nn.functional.linear(x, w)
    return (time.perf_counter() - t) / calls * 1e6


def gap_ms(stamps: list[float]) -> float:
    return 1000 * median([b - a for a, b in itertools.pairwise(stamps[1:])])  # from the first decode


def engine_gaps(model: str | None, tokens: int) -> dict[str, float]:
    from seekserve.engine.llm_engine import LLMEngine
    from seekserve.engine.sampling_params import SamplingParams

    engine = LLMEngine.from_options(model=model)
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)

    def decode(tag: str) -> float:
        engine.add_request(tag, PROMPT, params)
        stamps = []
        while engine.has_unfinished_requests():
            engine.step()
            stamps.append(time.perf_counter())
        return gap_ms(stamps)

    decode("warm-up")
    main, other = [], []
    for i in range(3):
        main.append(decode(f"main-{i}"))
        other.append(on_thread(functools.partial(decode, f"thread-{i}")))
    return {"built and stepped on the main thread": median(main), "stepped on a second thread": median(other)}


def async_gap(model: str | None, tokens: int) -> float:
    """In this process: an AsyncEngine from from_options, nothing else having run torch."""
    from seekserve.engine.async_engine import AsyncEngine
    from seekserve.engine.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)

    async def run() -> float:
        engine = AsyncEngine.from_options(model=model)
        engine.start()
        gaps = []
        for i in range(4):  # the first is a warm-up
            stamps = []
            async for _ in engine.generate(PROMPT, params, f"a-{i}"):
                stamps.append(time.perf_counter())
            gaps.append(gap_ms(stamps))
        engine.shutdown()
        return median(gaps[1:])

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model (default: the packaged Gemma 3 270M)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--async-only", action="store_true", help=argparse.SUPPRESS)  # the fresh-process half
    ap.add_argument("--json", type=Path, default=REPO / "results" / "engine_thread.json")
    args = ap.parse_args()
    if args.async_only:
        print(json.dumps({"async_gap_ms": async_gap(args.model, args.tokens)}))
        return

    results: dict[str, Any] = {}
    results["matmul µs, main thread"] = matmul_us()
    results["matmul µs, second thread"] = on_thread(matmul_us)
    results.update({f"decode gap ms, {k}": v for k, v in engine_gaps(args.model, args.tokens).items()})
    cmd = [sys.executable, __file__, "--async-only", "--tokens", str(args.tokens)]
    if args.model:
        cmd += ["--model", args.model]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    results["decode gap ms, AsyncEngine.from_options (fresh process)"] = json.loads(out)["async_gap_ms"]
    print_table(
        f"one stream, {len(PROMPT)}-token prompt, {args.tokens} tokens, {torch.get_num_threads()} threads",
        ["measurement", "value"],
        [[k, round(v, 2)] for k, v in results.items()],
    )
    write_json(args.json, {"machine": machine(), "tokens": args.tokens, "results": results})


if __name__ == "__main__":
    main()
