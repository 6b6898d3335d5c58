"""What prompt work costs inside a decode step: steps of 15 decoding streams, alone and with a chunk
of a 256-token prompt, engine alone (no HTTP).

    python benchmarks/mixed_step.py                        # default model, bf16; chunks 32, 64, 128, 256
    PYTHONPATH=/tmp/seekserve-base/src python benchmarks/mixed_step.py    # another revision's engine

15 requests (32-token prompts, greedy) decode; then, three times, a 256-token prompt arrives and is
prefilled in chunks of exactly C tokens (the step's token budget is 15 + C, no pacing), one chunk
per step beside the 15 decodes. Reports the median decode-only step, the median step with a chunk,
and what a prompt token added to the step (their difference over C): under a steady stream of
arrivals (an HTTP server at a fixed concurrency) most steps look like this, and a cost of its own
per mixed step shows as a higher cost a token for small chunks. Writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, median, print_table, write_json
from seekserve import LLM, SamplingParams

DECODES = 15
PROMPT = 256


def measure(model: str | None, chunk: int, arrivals: int) -> dict[str, Any]:
    llm = LLM(
        model,
        dtype="bfloat16",
        max_model_len=1024,
        max_num_seqs=DECODES + 1,
        max_num_batched_tokens=DECODES + chunk,
        max_stall_factor=None,
        prefill_spread_steps=None,
    )
    engine = llm.engine
    decode = SamplingParams(temperature=0.0, max_tokens=1000, ignore_eos=True)
    for i in range(DECODES):
        engine.add_request(f"d{i}", [1000 + (7 * i + j) % 19000 for j in range(32)], decode)
    for _ in range(40):  # prefill, then settle
        engine.step()

    def steps(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            engine.step()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    decode_ms = steps(10)
    mixed_ms: list[float] = []
    for r in range(arrivals):
        prompt = [2000 + (13 * r + j) % 17000 for j in range(PROMPT)]
        engine.add_request(f"p{r}", prompt, SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True))
        mixed_ms += steps(PROMPT // chunk)  # every one of these steps carries a full chunk
        decode_ms += steps(6)
    decode_med, mixed_med = median(decode_ms), median(mixed_ms)
    return {
        "chunk": chunk,
        "decode_step_ms": decode_med,
        "mixed_step_ms": mixed_med,
        "ms_per_prompt_token": (mixed_med - decode_med) / chunk,
        "decode_steps": decode_ms,
        "mixed_steps": mixed_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the packaged Gemma 3 270M")
    ap.add_argument("--chunks", default="32,64,128,256")
    ap.add_argument("--arrivals", type=int, default=3, help="256-token prompts per chunk size")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "mixed_step.json")
    args = ap.parse_args()
    results = [measure(args.model, int(c), args.arrivals) for c in args.chunks.split(",")]
    print_table(
        f"{DECODES} decoding streams with a chunk of a {PROMPT}-token prompt (medians)",
        ["chunk", "decode-only step ms", "step with the chunk ms", "ms a prompt token"],
        [[r["chunk"], r["decode_step_ms"], r["mixed_step_ms"], r["ms_per_prompt_token"]] for r in results],
    )
    payload = {"machine": machine(), "decodes": DECODES, "prompt_tokens": PROMPT, "results": results}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
