"""Stalls: 8 streams decoding while a 4,000-token prompt arrives, engine alone (no HTTP).

    python benchmarks/stall.py                       # default model, bf16
    python benchmarks/stall.py --modes paced,budget,unchunked --repeats 3

Each stream's inter-token gaps are taken from the engine's step outputs. Modes: `paced` (the
default: chunks sized so a step stays within max_stall_factor of a decode-only step), `budget`
(chunks of max_num_batched_tokens, no pacing), `unchunked` (the whole prompt in one step).
Reports the median gap, the longest gap of any stream and their ratio (target <= 3), and the
long prompt's time to first token. Runs alternate between modes (paired).
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, median, print_table, write_json
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams

MODES: dict[str, dict[str, Any]] = {
    "paced": {},
    "budget": {"max_stall_factor": None},
    "unchunked": {"enable_chunked_prefill": False},
}


def run(
    engine: LLMEngine, streams: int, decode_tokens: int, long_prompt: int, arrive_after: int
) -> dict[str, float]:
    rng = random.Random(0)
    params = SamplingParams(temperature=0.0, max_tokens=decode_tokens, ignore_eos=True)
    for i in range(streams):
        engine.add_request(f"s{i}", [rng.randrange(1000, 20000) for _ in range(64)], params)
    stamps: dict[str, list[float]] = {f"s{i}": [] for i in range(streams)}
    long_sent = long_first = None
    steps = 0
    while engine.has_unfinished_requests():
        steps += 1
        if steps == arrive_after:
            long_sent = time.perf_counter()
            prompt = [rng.randrange(1000, 20000) for _ in range(long_prompt)]
            engine.add_request("long", prompt, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
        for out in engine.step():
            now = time.perf_counter()
            if out.request_id == "long":
                long_first = long_first or now
            else:
                stamps[out.request_id].extend([now] * len(out.outputs[0].delta_token_ids))
    gaps = {rid: [b - a for a, b in itertools.pairwise(ts)] for rid, ts in stamps.items()}
    all_gaps = [g for gs in gaps.values() for g in gs]
    med = median(all_gaps)
    longest = max(max(gs) for gs in gaps.values())
    assert long_sent is not None and long_first is not None, "the long prompt never produced a token"
    return {
        "median_gap_ms": 1000 * med,
        "longest_gap_ms": 1000 * longest,
        "ratio": longest / med,
        "long_prompt_ttft_s": long_first - long_sent,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the packaged Gemma 3 270M")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--modes", default="paced,budget,unchunked")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--decode-tokens", type=int, default=256)
    ap.add_argument("--long-prompt-tokens", type=int, default=4000)
    ap.add_argument("--arrive-after-steps", type=int, default=40)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "stall.json")
    args = ap.parse_args()
    modes = args.modes.split(",")
    engines = {
        m: LLMEngine.from_options(
            # without prefix caching: every repeat sends the same prompts, and must compute them
            model=args.model,
            dtype=args.dtype,
            max_model_len=8192,
            enable_prefix_caching=False,
            **MODES[m],
        )
        for m in modes
    }
    for engine in engines.values():  # warm-up (and the pacer's first estimates)
        run(engine, args.streams, 16, 256, 4)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for m in modes:
            runs[m].append(
                run(
                    engines[m],
                    args.streams,
                    args.decode_tokens,
                    args.long_prompt_tokens,
                    args.arrive_after_steps,
                )
            )
    summary = {m: {k: median([r[k] for r in rs]) for k in rs[0]} for m, rs in runs.items()}
    print_table(
        f"{args.streams} streams decoding, a {args.long_prompt_tokens}-token prompt arrives (medians)",
        ["mode", "median gap ms", "longest gap ms", "longest/median (target <= 3)", "long prompt TTFT s"],
        [
            [m, s["median_gap_ms"], s["longest_gap_ms"], s["ratio"], s["long_prompt_ttft_s"]]
            for m, s in summary.items()
        ],
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "args": vars(args) | {"json": str(args.json)},
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
