"""One token through an int4 layer: bound by memory, or by the kernel's own work?

    python benchmarks/int4_gemv.py                     # Gemma 3 270M's layer shapes, group 64
    python benchmarks/int4_gemv.py --shapes 4096x640 --copies 64

For each weight shape N×K, times `Int4Weight.matmul` on one bf16 row (torch's
_weight_int4pack_mm_for_cpu, as a one-stream decode step calls it) two ways: `hot`, the same weight
again and again (it stays in cache, so the time is the kernel's work), and `streamed`, cycling
through --copies weights that together far exceed the cache (as a step reads its layers). When the
two are close the product is bound by its own work, not by memory; the GB/s columns are the int4
bytes over the time. With 1 and 2 torch threads; prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.quant.base import StackShape
from seekserve.quant.int4 import Int4Weight

GEMMA_LAYER_SHAPES = "1536x640,640x1024,4096x640,640x2048"
"""q/k/v fused, o_proj, gate/up fused, down_proj."""


def int4_weight(n: int, k: int, group: int) -> Int4Weight:
    q = Int4Weight(StackShape((), n, k, (n,)), torch.bfloat16, 1 << 30, group)
    q.load_rows((), 0, torch.randn(n, k) * 0.02)
    q.finish(())
    return q


def per_call_us(weights: list[Int4Weight], x: torch.Tensor, calls: int) -> float:
    for w in weights:
        w.matmul(x)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(calls):
            weights[i % len(weights)].matmul(x)
        times.append((time.perf_counter() - t) / calls)
    return 1e6 * median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=GEMMA_LAYER_SHAPES, help="comma-separated NxK weight shapes")
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--copies", type=int, default=48, help="weights cycled through in the streamed case")
    ap.add_argument("--calls", type=int, default=480)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "int4_gemv.json")
    args = ap.parse_args()

    rows, records = [], []
    threads_before = torch.get_num_threads()
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        copies = [int4_weight(n, k, args.group) for _ in range(args.copies)]
        x = torch.randn(1, k, dtype=torch.bfloat16)
        megabytes = n * k / 2 / 1e6
        for threads in (1, 2):
            torch.set_num_threads(threads)
            hot = per_call_us(copies[:1], x, args.calls)
            streamed = per_call_us(copies, x, args.calls)
            records.append({"shape": shape, "threads": threads, "hot_us": hot, "streamed_us": streamed})
            rows.append(
                [
                    shape,
                    threads,
                    round(hot, 1),
                    round(streamed, 1),
                    round(hot / streamed, 2),
                    round(megabytes / hot * 1e3, 1),
                    round(megabytes / streamed * 1e3, 1),
                ]
            )
    torch.set_num_threads(threads_before)
    header = ["shape", "threads", "hot µs", "streamed µs", "hot / streamed", "hot GB/s", "streamed GB/s"]
    print_table(f"int4 product of one token (group {args.group})", header, rows)
    write_json(args.json, {"machine": machine(), "group": args.group, "copies": args.copies, "runs": records})


if __name__ == "__main__":
    main()
