"""One hidden row through an int8 LM head's greedy screen: the float screen against the integer one.

    python benchmarks/greedy_head.py                 # Gemma 3 270M's head shape, 262,144 x 640
    python benchmarks/greedy_head.py --vocab 152064 --dim 1536 --calls 50

An int8 head (what int8 and int4 models keep) of random values, screened for one bfloat16 hidden
row with a few large dimensions (as final hidden states have), two ways on the same values: the
float screen (`CpuKernels.greedy_head` without row sums: int8 widened to bfloat16) and the one-row
integer screen (with `CpuKernels.row_sums`: VNNI dot products on the rows in place, the rows
prefetched ahead). `streamed` reads the whole head from memory each call, as a decode step does;
`hot` screens its first --hot-rows rows again and again, so they stay in cache and the time is the
screen's own work. Calls alternate between the two screens; medians, both threads. Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.engine.cpu_kernels import cpu_kernels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=262_144)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--hot-rows", type=int, default=16_384, help="rows screened again and again (in cache)")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "greedy_head.json")
    args = ap.parse_args()
    kernels = cpu_kernels()
    if kernels is None or not kernels.has_vnni:
        raise SystemExit("needs the CPU kernels built with AVX-512 VNNI (a C++ compiler and such a CPU)")
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (args.vocab, args.dim), dtype=torch.int8, generator=gen)
    scale = torch.rand(args.vocab, generator=gen) * 1e-3 + 1e-4
    sums = kernels.row_sums(q)
    hidden = torch.randn(1, args.dim, generator=gen)
    hidden[0, :4] *= 40.0
    hidden = hidden.to(torch.bfloat16)
    cases = {"streamed": args.vocab, "hot": min(args.hot_rows, args.vocab)}
    rows, results = [], {}
    for case, vocab in cases.items():
        head, head_scale = q[:vocab], scale[:vocab]
        head_sums = (sums[0][:vocab], sums[1][:vocab])
        screens = {"float": None, "integer": head_sums}  # the integer screen takes the row sums
        tokens = {
            name: kernels.greedy_head(hidden, None, head, head_scale, row_sums)[0].item()
            for name, row_sums in screens.items()
        }
        assert len(set(tokens.values())) == 1, f"the screens disagree: {tokens}"
        times: dict[str, list[float]] = {name: [] for name in screens}
        for _ in range(args.calls):
            for name, row_sums in screens.items():
                t = time.perf_counter()
                kernels.greedy_head(hidden, None, head, head_scale, row_sums)
                times[name].append(time.perf_counter() - t)
        nbytes = head.nbytes + head_scale.nbytes + sum(t.nbytes for t in head_sums)
        for name, ts in times.items():
            ms = 1000 * median(ts)
            results[f"{case}/{name}"] = {"ms": ms, "gb_per_s": nbytes / ms / 1e6, "vocab": vocab}
            rows.append([case, vocab, name, ms, nbytes / ms / 1e6])
    print_table("one row through the int8 head's screen", ["case", "rows", "screen", "ms", "GB/s"], rows)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    write_json(args.json, {"machine": machine(), "args": settings, "results": results})


if __name__ == "__main__":
    main()
