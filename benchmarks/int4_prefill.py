"""Prefill steps of an int4 model against bf16: the forward pass over the layers, and where int4 spends it.

    python benchmarks/int4_prefill.py                       # default model, 256/512/1024 tokens
    python benchmarks/int4_prefill.py --tokens 512 --repeats 5

The default model (Gemma 3 270M) is loaded twice in one process, bf16 and int4. For each prefill
size one request of that many random token ids is scheduled and the model's forward pass over the
layers is re-run on the prepared inputs (the LM head, one row, is left out), bf16 and int4
interleaved, repeat after repeat. int4 runs both large-row paths in turn: `int4 torch` dequantizes
with torch's elementwise ops (QuantizedWeight.dequantized_matmul, the path before the fused
kernel) and `int4 kernel` with int4_dequantize.cpp's one-pass dequantization (a layer's matrix whole).
Medians, with the spread (min-max) in brackets, and ratios to bf16 of the same repeats.

The breakdown re-runs every int4 layer's large-row product on random rows (--breakdown-rows):
dequantization alone, torch and kernel, and the bf16 products over the dequantized blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from common import REPO, machine, median, print_table, write_json
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams
from seekserve.quant.base import QuantizedWeight
from seekserve.quant.int4 import Int4Weight

VARIANTS = ("bf16", "int4 torch", "int4 kernel")


@contextlib.contextmanager
def torch_dequantization() -> Iterator[None]:
    """int4's large-row products through the generic torch dequantization (the path before the kernel)."""
    kernel_matmul, kernel_rows = Int4Weight.dequantized_matmul, Int4Weight.dequantize_rows
    Int4Weight.dequantized_matmul = QuantizedWeight.dequantized_matmul  # type: ignore[method-assign]
    Int4Weight.dequantize_rows = Int4Weight.dequantize_rows_reference  # type: ignore[method-assign]
    try:
        yield
    finally:
        Int4Weight.dequantized_matmul = kernel_matmul  # type: ignore[method-assign]
        Int4Weight.dequantize_rows = kernel_rows  # type: ignore[method-assign]


def prefill_forward(engine: LLMEngine, num_tokens: int, seed: int) -> Callable[[], None]:
    """The forward pass of one prefill step of `num_tokens` random tokens, re-runnable in place."""
    rng = random.Random(seed)
    params = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True)
    engine.add_request(f"p{num_tokens}", [rng.randrange(1000, 200_000) for _ in range(num_tokens)], params)
    scheduled = engine.scheduler.schedule()
    inputs = engine.runner.prepare(scheduled)
    assert inputs.input_ids.shape[0] == num_tokens, "the prefill was chunked: raise max_num_batched_tokens"
    model, caches = engine.model, engine.runner.kv_caches

    def run() -> None:
        with torch.inference_mode():
            model(inputs.input_ids, inputs.positions, caches, inputs.meta)

    return run


def time_once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def step_times(engines: dict[str, LLMEngine], num_tokens: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per forward pass, per variant, the variants interleaved within each repeat."""
    forward = {quant: prefill_forward(engine, num_tokens, num_tokens) for quant, engine in engines.items()}
    runs: dict[str, Callable[[], float]] = {
        "bf16": lambda: time_once(forward["none"]),
        "int4 kernel": lambda: time_once(forward["int4"]),
    }

    def torch_path() -> float:
        with torch_dequantization():
            return time_once(forward["int4"])

    runs["int4 torch"] = torch_path
    for run in runs.values():  # warm up: kernel build, allocator, oneDNN primitives
        run()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(repeats):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        for name in order:
            times[name].append(runs[name]())
    for engine in engines.values():
        engine.abort(f"p{num_tokens}")
    return times


def spread_ms(values: list[float]) -> str:
    return f"{1000 * median(values):.0f} [{1000 * min(values):.0f}-{1000 * max(values):.0f}]"


def layer_times(module: Int4Weight, rows: int, repeats: int) -> list[float]:
    """Seconds (medians) of one layer's large-row product at `rows` rows, in parts: torch
    dequantization, kernel dequantization, the bf16 products of the blocks, and one bf16 product
    of the whole weight (what the bf16 model runs)."""
    x = torch.randn(rows, module.in_features, dtype=module.dtype)
    n, step = module.out_features, module.dequant_block_rows()
    blocks = [(s, min(n, s + step)) for s in range(0, n, step)]
    buffer = torch.empty(min(step, module.layout.rows), module.layout.cols, dtype=module.dtype)
    weights = [module.dequantize_rows_reference((), s, e) for s, e in blocks]
    whole = module.dequantize()
    parts: list[Callable[[], object]] = [
        lambda: [module.dequantize_rows_reference((), s, e) for s, e in blocks],
        lambda: [module.dequantize_rows_into((), s, e, buffer) for s, e in blocks],
        lambda: [F.linear(x, w) for w in weights],
        lambda: F.linear(x, whole),
    ]
    times = []
    with torch.inference_mode():
        for fn in parts:
            fn()
            times.append(median([time_once(fn) for _ in range(repeats)]))
    return times


def breakdown(engine: LLMEngine, rows: int, repeats: int) -> list[list[Any]]:
    """Per kind of layer, ms summed over the model's layers (see `layer_times`)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0] * 4)
    counts: dict[str, int] = defaultdict(int)
    for name, module in engine.model.named_modules():
        if isinstance(module, Int4Weight) and not module.lead:
            kind = name.split(".")[-2]
            totals[kind] = [
                a + b for a, b in zip(totals[kind], layer_times(module, rows, repeats), strict=True)
            ]
            counts[kind] += 1
    return [[kind, counts[kind], *(1000 * v for v in t)] for kind, t in totals.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the packaged Gemma 3 270M")
    ap.add_argument("--tokens", default="256,512,1024")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--breakdown-rows", type=int, default=512, help="0: no breakdown")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "int4_prefill.json")
    args = ap.parse_args()
    options: dict[str, Any] = dict(model=args.model, dtype="bfloat16", max_model_len=2048)
    options.update(max_num_batched_tokens=2048, enable_chunked_prefill=False)
    engines = {quant: LLMEngine.from_options(quantization=quant, **options) for quant in ("none", "int4")}
    rows, results = [], {}
    for num_tokens in map(int, args.tokens.split(",")):
        times = step_times(engines, num_tokens, args.repeats)
        ratios = {
            name: median([t / b for t, b in zip(times[name], times["bf16"], strict=True)])
            for name in VARIANTS
        }
        results[str(num_tokens)] = {"seconds": times, "ratio_to_bf16": ratios}
        rows.append(
            [
                num_tokens,
                *(spread_ms(times[n]) for n in VARIANTS),
                ratios["int4 torch"],
                ratios["int4 kernel"],
            ]
        )
    header = ["tokens", *(f"{n} ms" for n in VARIANTS), "torch/bf16", "kernel/bf16"]
    print_table(f"prefill forward pass, medians of {args.repeats} [min-max]", header, rows)
    if args.breakdown_rows:
        table = breakdown(engines["int4"], args.breakdown_rows, max(3, args.repeats // 2))
        results["breakdown"] = {"rows": args.breakdown_rows, "layers": table}
        print_table(
            f"int4 large-row products at {args.breakdown_rows} rows, ms summed over layers",
            ["layer", "count", "torch dequant", "kernel dequant", "block products", "whole product"],
            table,
        )
    write_json(args.json, {"machine": machine(), "threads": torch.get_num_threads(), "results": results})


if __name__ == "__main__":
    main()
