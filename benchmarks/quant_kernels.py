"""Quantized matmul paths against a float matmul, by batch size: where each path wins.

    python benchmarks/quant_kernels.py                       # Gemma-3-270M shapes, all batch sizes
    python benchmarks/quant_kernels.py --shapes 640x2048 --batch-sizes 1,16 --rounds 3   # smoke run

For each weight shape N×K (output × input) and batch size M (token rows in one step), times
x [M, K] @ W^T through:

    float          F.linear on bf16 weights (the unquantized model)
    int8-kernel    torch._weight_int8pack_mm (bf16 activations, int8 weights)
    int8-dequant   the int8 layer dequantized to bf16, then F.linear
    int8-dynamic   int8 × int8 torch._int_mm with per-token activation scales
    int4-kernel    torch._weight_int4pack_mm_for_cpu (group --group)
    int4-dequant   unpack the int4 layer to bf16, then F.linear
    fp8-dequant    FP8 bytes -> bf16 through a lookup table with 128×128 block scales, then F.linear

Every path runs in the same round, rounds are repeated (--rounds) and the median of each is
reported, with the minimum beside it: on a shared machine the minimum is the better estimate of
the undisturbed cost, the median of what a step sees. The crossover table gives, per mode, the
largest M at which the low-bit kernel still beats the large-batch path and the float matmul:
the engine's default max_quantized_kernel_rows (seekserve/quant/config.py) comes from it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from common import REPO, machine, print_table, write_json
from seekserve.quant.base import QuantizedWeight, StackShape
from seekserve.quant.fp8 import Fp8Weight
from seekserve.quant.int4 import Int4Weight
from seekserve.quant.int8 import Int8Weight

GEMMA_270M_SHAPES = "1536x640,640x1024,4096x640,640x2048,262144x640"
"""q/k/v fused, o_proj, gate/up fused, down_proj, LM head (vocabulary × hidden)."""
PATHS = ("float", "int8-kernel", "int8-dequant", "int8-dynamic", "int4-kernel", "int4-dequant", "fp8-dequant")
MAX_ROWS = 1 << 30


def weights(n: int, k: int, group: int) -> dict[str, QuantizedWeight]:
    """The quantized forms of one random bf16 matrix, each set to take one path."""
    w = torch.randn(n, k) * 0.02
    made: dict[str, QuantizedWeight] = {
        "int8-kernel": Int8Weight(StackShape((), n, k, (n,)), torch.bfloat16, MAX_ROWS),
        "int8-dequant": Int8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0),
        "int8-dynamic": Int8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0, dynamic_activations=True),
        "int4-kernel": Int4Weight(StackShape((), n, k, (n,)), torch.bfloat16, MAX_ROWS, group),
        "int4-dequant": Int4Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0, group),
        "fp8-dequant": Fp8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0, 128, keep_fp8=True),
    }
    for q in made.values():
        for start in range(0, n, 16384):
            q.load_rows((), start, w[start : start + 16384])
        q.finish(())
    return made


def time_round(fns: dict[str, Callable[[], object]], budget_s: float) -> dict[str, float]:
    """One timing of every function (seconds per call), each repeated to fill about `budget_s`."""
    out = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        reps = max(1, int(budget_s / max(once, 1e-7)))
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        out[name] = (time.perf_counter() - start) / reps
    return out


def measure(shape: str, batch_sizes: list[int], args: argparse.Namespace) -> list[dict[str, object]]:
    n, k = (int(v) for v in shape.split("x"))
    w = (torch.randn(n, k) * 0.02).to(torch.bfloat16)
    quantized = weights(n, k, args.group)
    rows = []
    for m in batch_sizes:
        x = torch.randn(m, k, dtype=torch.bfloat16)
        fns: dict[str, Callable[[], object]] = {"float": lambda x=x: F.linear(x, w)}
        for name, q in quantized.items():
            if name.endswith("kernel") and m > args.max_kernel_batch:
                continue  # linear in M and far slower than the others there
            fns[name] = lambda q=q, x=x: q.matmul(x)
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, t in time_round(fns, args.budget_s).items():
                samples[name].append(t * 1e3)
        for name, ms in samples.items():
            rows.append(
                {"shape": shape, "m": m, "path": name, "median_ms": statistics.median(ms), "min_ms": min(ms)}
            )
        print(
            f"{shape} M={m}: "
            + "  ".join(
                f"{r['path']} {r['median_ms']:.3f}" for r in rows if r["m"] == m and r["shape"] == shape
            ),
            flush=True,
        )
    return rows


def crossovers(rows: list[dict[str, object]]) -> list[list[object]]:
    """Per shape and mode: the largest M where the kernel beats the large-batch path, and the float matmul."""
    table = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        ms = {(r["m"], r["path"]): float(r["median_ms"]) for r in rows if r["shape"] == shape}  # type: ignore[arg-type]
        sizes = sorted({m for m, _ in ms})
        for kernel, large in (
            ("int8-kernel", "int8-dequant"),
            ("int8-kernel", "int8-dynamic"),
            ("int4-kernel", "int4-dequant"),
        ):
            wins_large = [m for m in sizes if (m, kernel) in ms and ms[m, kernel] <= ms[m, large]]
            wins_float = [m for m in sizes if (m, kernel) in ms and ms[m, kernel] <= ms[m, "float"]]
            table.append([shape, large, max(wins_large, default=0), max(wins_float, default=0)])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default=GEMMA_270M_SHAPES, help="comma-separated NxK weight shapes")
    parser.add_argument("--batch-sizes", default="1,2,4,8,12,16,24,32,64,128,512", help="token rows per call")
    parser.add_argument("--group", type=int, default=32, help="int4 group size")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (median and minimum reported)")
    parser.add_argument("--budget-s", type=float, default=0.02, help="seconds each timing fills")
    parser.add_argument(
        "--max-kernel-batch", type=int, default=128, help="largest M timed on the low-bit kernels"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "quant_kernels.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    rows = [r for shape in args.shapes.split(",") for r in measure(shape, batch_sizes, args)]
    header = ["shape", "M", *PATHS]
    by_key = {(r["shape"], r["m"], r["path"]): r for r in rows}
    table = [
        [s, m, *(f"{by_key[s, m, p]['median_ms']:.3f}" if (s, m, p) in by_key else "-" for p in PATHS)]
        for s, m in dict.fromkeys((r["shape"], r["m"]) for r in rows)
    ]
    print_table("median ms per matmul", header, table)
    cross = crossovers(rows)
    print_table(
        "largest M where the low-bit kernel wins",
        ["shape", "large-batch path", "kernel beats it", "kernel beats float"],
        cross,
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "args": vars(args) | {"json": str(args.json)},
            "rows": rows,
            "crossovers": cross,
        },
    )


if __name__ == "__main__":
    main()
