"""Where a decode step's time goes: layers, LM head, and the engine around them.

    python benchmarks/step_profile.py                            # default model, bf16 and int4
    python benchmarks/step_profile.py --quantization none --batch-sizes 1,64
    python benchmarks/step_profile.py --quantization none --temperature 0.6 --top-p 0.95   # sampled
    python benchmarks/step_profile.py --quantization none --temperature 0.6 --top-p 0.95 --full-sort

For each batch size, B requests with 32-token prompts are prefilled and decoded for a while; then
the median of --steps engine steps (schedule, forward, logits, sampling, detokenization, outputs) is
set against the median forward pass over the layers alone and the LM head alone, both re-run on
the same prepared inputs; the head is timed as the step takes it (the screened greedy head up to
`cpu_greedy_head_rows` rows, else the logits), and the sampler alone on those logits (`sampler
ms`: the argmax for greedy rows the screen does not take, else temperature, top-p and the draw).
`--full-sort` samples the reference way (`Sampler(full_sort=True)`: penalties row by row, the
whole vocabulary sorted, noise for every token), as the sampler did before the candidate sampler:
the "before" of a sampled step. The remainder is the engine's own work (Python, scheduling,
detokenization). Both heads are also timed on the same hidden rows (`screen ms`, `logits ms`),
whichever the step takes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams


def profile(engine: LLMEngine, batch: int, steps: int, temperature: float, top_p: float) -> dict[str, float]:
    params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=steps * 2 + 64, ignore_eos=True)
    for i in range(batch):
        engine.add_request(f"b{batch}-{i}", [1000 + (7 * i + j) % 19000 for j in range(32)], params)
    for _ in range(16):  # prefill, then settle
        engine.step()
    step_times = []
    for _ in range(steps):
        t = time.perf_counter()
        engine.step()
        step_times.append(time.perf_counter() - t)
    scheduled = engine.scheduler.schedule()  # the next decode, re-run in place
    inputs = engine.runner.prepare(scheduled)
    requests = [s.request for s in scheduled.scheduled if s.samples]
    model, caches, sampler = engine.model, engine.runner.kv_caches, engine.runner.sampler
    greedy = engine.runner.greedy_head  # the step's head, as the engine takes it for greedy rows
    screened = greedy is not None and greedy.accepts(len(requests)) and not sampler.needs_logits(requests)
    layers, screen, logits, sampling = [], [], [], []
    with torch.inference_mode():
        for _ in range(steps):
            t = time.perf_counter()
            hidden = model(inputs.input_ids, inputs.positions, caches, inputs.meta)
            t1 = time.perf_counter()
            rows = hidden[inputs.sample_rows]
            row_logits = model.compute_logits(rows)
            t2 = time.perf_counter()
            if not screened:
                sampler(row_logits, requests)
                sampling.append(time.perf_counter() - t2)
            t3 = time.perf_counter()
            if greedy is not None:
                greedy.tokens(rows)
                screen.append(time.perf_counter() - t3)
            layers.append(t1 - t)
            logits.append(t2 - t1)
    for i in range(batch):
        engine.abort(f"b{batch}-{i}")
    step, fwd, full = (1000 * median(x) for x in (step_times, layers, logits))
    screened_ms = 1000 * median(screen) if screen else None
    lm = screened_ms if screened and screened_ms is not None else full
    sample = 1000 * median(sampling) if sampling else 0.0
    return {
        "step_ms": step,
        "layers_ms": fwd,
        "lm_head_ms": lm,
        "sampler_ms": sample,
        "engine_ms": step - fwd - lm - sample,
        "screened_head": screened,
        "screen_ms": screened_ms,
        "logits_ms": full,
        "tokens_per_s": batch * 1000 / step,
    }


COLUMNS = [
    "weights",
    "batch",
    "step ms",
    "layers ms",
    "LM head ms",
    "sampler ms",
    "engine ms",
    "screen ms",
    "logits ms",
    "tokens/s",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the packaged Gemma 3 270M")
    ap.add_argument("--quantization", default="none,int4")
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--full-sort", action="store_true", help="the reference sampler (the one before)")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "step_profile.json")
    args = ap.parse_args()
    rows, results = [], {}
    for quant in args.quantization.split(","):
        engine = LLMEngine.from_options(
            model=args.model, dtype="bfloat16", quantization=quant, max_model_len=1024, max_num_seqs=64
        )
        engine.runner.sampler.full_sort = args.full_sort
        for batch in map(int, args.batch_sizes.split(",")):
            r = profile(engine, batch, args.steps, args.temperature, args.top_p)
            results[f"{quant}/{batch}"] = r
            rows.append(
                [
                    quant,
                    batch,
                    r["step_ms"],
                    r["layers_ms"],
                    r["lm_head_ms"],
                    r["sampler_ms"],
                    r["engine_ms"],
                    r["screen_ms"] if r["screen_ms"] is not None else "-",
                    r["logits_ms"],
                    r["tokens_per_s"],
                ]
            )
        del engine
    mode = "greedy" if args.temperature == 0 else f"temperature {args.temperature:g}, top_p {args.top_p:g}"
    mode += ", full-sort sampler" if args.full_sort else ""
    print_table(f"decode step, {mode}, medians", COLUMNS, rows)
    write_json(args.json, {"machine": machine(), "mode": mode, "results": results})


if __name__ == "__main__":
    main()
