"""seekserve on one anchor workload, timed as the anchors time their engines; prints one JSON record.

    python benchmarks/run_workload.py single                   # default model (Gemma 3 270M), bf16
    python benchmarks/run_workload.py batch64 --quantization int4
    python benchmarks/run_workload.py batch16 --model DIR --engine max_num_seqs=64

All requests of the workload are submitted at once; greedy unless --temperature is given (DeepSeek's
recommendation: --temperature 0.6 --top-p 0.95), exactly max_tokens tokens each; model
load and a 4-token warm-up are excluded from `wall_s`. The record has the fields of the anchors'
`workloads.result()`, so it sits in the same table as vLLM, llama.cpp and transformers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import DEFAULT_ANCHORS, load_workloads, parse_engine_options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["single", "batch16", "batch64"])
    ap.add_argument("--model", default=None, help="model to run (default: the packaged Gemma 3 270M)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--quantization", default="none", choices=["none", "fp8", "int8", "int4"])
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--engine", nargs="*", default=[], metavar="KEY=VALUE", help="more engine options")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy (the anchors' setting)")
    ap.add_argument("--top-p", type=float, default=1.0)
    args = ap.parse_args()

    import torch

    import seekserve
    from seekserve import LLM, SamplingParams

    workloads = load_workloads(args.anchors)
    w = workloads.get(args.workload)
    options = {"max_model_len": 1024, "max_num_seqs": 64, **parse_engine_options(args.engine)}
    t = time.perf_counter()
    llm = LLM(args.model, dtype=args.dtype, quantization=args.quantization, **options)
    load_s = time.perf_counter() - t
    llm.generate([[999, 1000, 1001, 1002]], SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True))
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_tokens=w["max_tokens"], ignore_eos=True
    )
    t = time.perf_counter()
    outs = llm.generate(w["prompts"], params)
    wall = time.perf_counter() - t
    n_out = sum(len(o.outputs[0].token_ids) for o in outs)
    engine = llm.engine
    dtype = args.dtype if args.quantization == "none" else f"{args.quantization} weights, {args.dtype}"
    record = workloads.result(
        "seekserve",
        f"seekserve {seekserve.__version__}",
        w,
        wall,
        n_out,
        dtype,
        torch.get_num_threads(),
        f"continuous: all {len(w['prompts'])} requests submitted at once, "
        f"temperature {args.temperature:g}, top_p {args.top_p:g} "
        f"(max_num_seqs={engine.config.scheduler.max_num_seqs}, "
        f"max_num_batched_tokens={engine.max_num_batched_tokens}, chunked prefill)",
        load_s=round(load_s, 2),
        weight_bytes=engine.weight_bytes,
        options=options,
        omp_env={k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "KMP_"))},
    )
    workloads.emit(record)


if __name__ == "__main__":
    main()
