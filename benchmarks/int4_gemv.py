"""A few tokens through an int4 layer: torch's kernel against seekserve's, bound by memory or by work?

    python benchmarks/int4_gemv.py                     # Gemma 3 270M's layer shapes, group 32
    python benchmarks/int4_gemv.py --shapes 4096x640 --copies 64 --rows 1,4,16

For each weight shape N×K and row count, times one bf16 product with torch's
_weight_int4pack_mm_for_cpu and with seekserve's integer-dot-product kernel
(layers/kernels/int4_matmul.cpp, what `Int4Weight.matmul` runs where the CPU has AVX-512 VNNI and
VBMI) on the same packed weights, two ways: `hot`, the same weight again and again (it stays in
cache, so the time is the kernel's work), and `streamed`, cycling through --copies weights that
together far exceed the cache (as a decode step reads its layers). When hot and streamed are close
the product is bound by its own work, not by memory; GB/s is the weight's bytes (values, scales and
zeros) over the streamed time. Both threads; prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.quant.base import StackShape
from seekserve.quant.config import DEFAULT_INT4_GROUP
from seekserve.quant.int4 import Int4Weight, vnni_kernels

GEMMA_LAYER_SHAPES = "1536x640,640x1024,4096x640,640x2048"
"""q/k/v fused, o_proj, gate/up fused, down_proj."""


def int4_weight(n: int, k: int, group: int) -> Int4Weight:
    q = Int4Weight(StackShape((), n, k, (n,)), torch.bfloat16, 1 << 30, group)
    q.load_rows((), 0, torch.randn(n, k) * 0.02)
    q.finish(())
    return q


def torch_kernel(w: Int4Weight, x: torch.Tensor) -> torch.Tensor:
    return torch._weight_int4pack_mm_for_cpu(x, w.packed, w.layout.group, w.scales_zeros)


def seekserve_kernel(w: Int4Weight, x: torch.Tensor) -> torch.Tensor:
    assert w.kernels is not None
    return w.kernels.int4_matmul(x, w.packed, w.scales_zeros, w.layout.group)


KERNELS = {"torch": torch_kernel, "seekserve": seekserve_kernel}


def per_call_us(kernel: str, weights: list[Int4Weight], x: torch.Tensor, calls: int) -> float:
    product = KERNELS[kernel]
    for w in weights:
        product(w, x)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(calls):
            product(weights[i % len(weights)], x)
        times.append((time.perf_counter() - t) / calls)
    return 1e6 * median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=GEMMA_LAYER_SHAPES, help="comma-separated NxK weight shapes")
    ap.add_argument("--group", type=int, default=DEFAULT_INT4_GROUP)
    ap.add_argument("--rows", default="1,4", help="comma-separated token rows per product")
    ap.add_argument("--copies", type=int, default=48, help="weights cycled through in the streamed case")
    ap.add_argument("--calls", type=int, default=480)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "int4_gemv.json")
    args = ap.parse_args()
    kernels = ["torch", "seekserve"] if vnni_kernels() is not None else ["torch"]
    if len(kernels) == 1:
        print("this CPU or torch has no AVX-512 VNNI + VBMI int4 kernel: timing torch's alone")

    rows, records = [], []
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        copies = [int4_weight(n, k, args.group) for _ in range(args.copies)]
        megabytes = (copies[0].packed.nbytes + copies[0].scales_zeros.nbytes) / 1e6
        for m in map(int, args.rows.split(",")):
            x = torch.randn(m, k, dtype=torch.bfloat16)
            for kernel in kernels:
                hot = per_call_us(kernel, copies[:1], x, args.calls)
                streamed = per_call_us(kernel, copies, x, args.calls)
                records.append(
                    {"shape": shape, "rows": m, "kernel": kernel, "hot_us": hot, "streamed_us": streamed}
                )
                gb_s = round(megabytes / streamed * 1e3, 1)
                rows.append(
                    [shape, m, kernel, round(hot, 1), round(streamed, 1), round(hot / streamed, 2), gb_s]
                )
    header = ["shape", "rows", "kernel", "hot µs", "streamed µs", "hot / streamed", "streamed GB/s"]
    print_table(f"int4 products of a few tokens (group {args.group}, bf16)", header, rows)
    write_json(args.json, {"machine": machine(), "group": args.group, "copies": args.copies, "runs": records})


if __name__ == "__main__":
    main()
