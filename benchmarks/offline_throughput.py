"""Offline throughput of the engine: the anchor workloads, continuous vs static scheduling.

    python benchmarks/offline_throughput.py                      # Qwen2.5-0.5B-shaped random model, bf16
    python benchmarks/offline_throughput.py --model DIR --workloads single,batch16 --repeats 1

Runs each workload with both schedulers in interleaved pairs (continuous, static, continuous, ...)
and reports output tokens/s, mean and p99 request latency (all requests submitted at once), plus
the engine's own overhead: the time of one decode step at batch 1 against a bare forward pass of
the same model over the same inputs (inputs prepared beforehand, no scheduling or sampling).
Besides the anchors' exact-length workloads, `batch64-varied` gives each request of batch64 an
output length drawn from [16, 256], where the schedulers differ.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import torch

from common import (
    DEFAULT_ANCHORS,
    QWEN2_0_5B_SHAPE,
    REPO,
    load_workloads,
    machine,
    median,
    percentile,
    print_table,
    random_model_dir,
    write_json,
)
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams


def get_workload(workloads: Any, name: str) -> tuple[list[list[int]], list[int]]:
    """(prompts, output length per request)."""
    if name == "batch64-varied":
        w = workloads.get("batch64")
        rng = random.Random(64)
        return w["prompts"], [rng.randint(16, 256) for _ in w["prompts"]]
    w = workloads.get(name)
    return w["prompts"], [w["max_tokens"]] * len(w["prompts"])


def run_once(engine: LLMEngine, prompts: list[list[int]], lengths: list[int]) -> dict[str, float]:
    start = time.perf_counter()
    for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
        engine.add_request(f"r{i}", prompt, SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True))
    latencies: list[float] = []
    num_out = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                latencies.append(time.perf_counter() - start)
                num_out += len(out.outputs[0].token_ids)
    wall = time.perf_counter() - start
    assert num_out == sum(lengths), f"expected {sum(lengths)} output tokens, got {num_out}"
    return {
        "wall_s": wall,
        "output_tok_s": num_out / wall,
        "mean_latency_s": sum(latencies) / len(latencies),
        "p99_latency_s": percentile(latencies, 99),
    }


def decode_overhead(engine: LLMEngine, prompt: list[int], steps: int = 64) -> dict[str, float]:
    """Median decode step at batch 1 vs a bare forward (plus logits) over prebuilt inputs."""
    engine.add_request(
        "overhead", prompt, SamplingParams(temperature=0.0, max_tokens=steps + 8, ignore_eos=True)
    )
    engine.step()  # prefill
    step_times = []
    for _ in range(steps):
        t = time.perf_counter()
        engine.step()
        step_times.append(time.perf_counter() - t)
    batch = engine.scheduler.schedule()  # the next decode, run repeatedly without advancing
    inputs = engine.runner.prepare(batch)
    model, caches = engine.model, engine.runner.kv_caches
    forward_times = []
    with torch.inference_mode():
        for _ in range(steps):
            t = time.perf_counter()
            hidden = model(inputs.input_ids, inputs.positions, caches, inputs.meta)
            model.compute_logits(hidden[inputs.sample_rows])
            forward_times.append(time.perf_counter() - t)
    engine.abort("overhead")
    step_ms, forward_ms = 1000 * median(step_times), 1000 * median(forward_times)
    return {"step_ms": step_ms, "bare_forward_ms": forward_ms, "ratio": step_ms / forward_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, help="model directory (default: a random Qwen2.5-0.5B-shaped model)"
    )
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--workloads", default="single,batch16,batch64,batch64-varied")
    ap.add_argument("--modes", default="continuous,static")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-num-seqs", type=int, default=64, help="as the vLLM anchor runs (64)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "offline_throughput.json")
    args = ap.parse_args()

    workloads = load_workloads(args.anchors)
    model = args.model or random_model_dir("qwen2-0.5b-shape", "Qwen2Config", QWEN2_0_5B_SHAPE)
    modes = args.modes.split(",")
    engines = {
        mode: LLMEngine.from_options(
            model=str(model),
            dtype=args.dtype,
            scheduling=mode,
            max_num_seqs=args.max_num_seqs,
            max_model_len=args.max_model_len,
            enable_prefix_caching=False,  # every repeat sends the same prompts, and must compute them
        )
        for mode in modes
    }
    for engine in engines.values():  # warm-up, not timed
        run_once(engine, [[1000, 1001, 1002, 1003]], [4])
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in args.workloads.split(","):
        prompts, lengths = get_workload(workloads, name)
        for _ in range(args.repeats):
            for mode in modes:  # interleaved pairs
                results.setdefault(name, {}).setdefault(mode, []).append(
                    run_once(engines[mode], prompts, lengths)
                )
    rows, summary = [], {}
    for name, by_mode in results.items():
        for mode, runs in by_mode.items():
            tok_s = [r["output_tok_s"] for r in runs]
            entry = {k: median([r[k] for r in runs]) for k in runs[0]}
            entry["output_tok_s_min"], entry["output_tok_s_max"] = min(tok_s), max(tok_s)
            summary[f"{name}/{mode}"] = entry
            rows.append(
                [
                    name,
                    mode,
                    entry["output_tok_s"],
                    f"{min(tok_s):.1f}-{max(tok_s):.1f}",
                    entry["mean_latency_s"],
                    entry["p99_latency_s"],
                ]
            )
    print_table(
        "offline throughput (medians)",
        ["workload", "scheduling", "output tok/s", "range", "mean latency s", "p99 latency s"],
        rows,
    )
    overhead = decode_overhead(engines[modes[0]], workloads.get("single")["prompts"][0])
    print_table(
        "engine overhead at batch 1",
        ["decode step ms", "bare forward ms", "ratio (target <= 1.2)"],
        [[overhead["step_ms"], overhead["bare_forward_ms"], overhead["ratio"]]],
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "model": str(model),
            "dtype": args.dtype,
            "repeats": args.repeats,
            "max_num_seqs": args.max_num_seqs,
            "results": summary,
            "runs": results,
            "overhead": overhead,
        },
    )


if __name__ == "__main__":
    main()
