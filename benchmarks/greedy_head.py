"""Hidden rows through an LM head's greedy screen, against the other ways to the same tokens.

    python benchmarks/greedy_head.py                 # Gemma 3 270M's head shape, 262,144 x 640
    python benchmarks/greedy_head.py --vocab 152064 --dim 1536 --calls 50
    python benchmarks/greedy_head.py --rows 8,16,32,64 --calls 10   # several rows (a decode batch)

An int8 head (what int8 and int4 models keep) of random values, screened for one bfloat16 hidden
row with a few large dimensions (as final hidden states have), two ways on the same values: the
float screen (`CpuKernels.greedy_head` without row sums: int8 widened to bfloat16) and the one-row
integer screen (with `CpuKernels.row_sums`: VNNI dot products on the rows in place, the rows
prefetched ahead). `streamed` reads the whole head from memory each call, as a decode step does;
`hot` screens its first --hot-rows rows again and again, so they stay in cache and the time is the
screen's own work. Calls alternate between the two screens; medians, both threads.

With --rows, R hidden rows a call (streamed only), on two heads of random values: a bfloat16 head
through its int8 copy's integer screen (`GreedyHead`, what a bf16 model screens) against the bf16
matmul the logits would take (the weight prepacked for oneDNN, as the engine keeps it), and an int8
head in place (int8 and int4 models) through the integer screen against the float screen. Prints
tables and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.engine.greedy_head import GreedyHead
from seekserve.layers.cpu_kernels import CpuKernels, cpu_kernels
from seekserve.layers.modules import Linear


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=262_144)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--hot-rows", type=int, default=16_384, help="rows screened again and again (in cache)")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rows", default="", help="comma-separated hidden rows a call: the several-rows tables")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "greedy_head.json")
    args = ap.parse_args()
    kernels = cpu_kernels()
    if kernels is None or not kernels.has_vnni:
        raise SystemExit("needs the CPU kernels built with AVX-512 VNNI (a C++ compiler and such a CPU)")
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (args.vocab, args.dim), dtype=torch.int8, generator=gen)
    scale = torch.rand(args.vocab, generator=gen) * 1e-3 + 1e-4
    sums = kernels.row_sums(q)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    if args.rows:
        counts = [int(r) for r in args.rows.split(",")]
        results = several_rows(kernels, q, scale, sums, counts, args.calls, gen)
    else:
        results = one_row(kernels, q, scale, sums, args, gen)
    write_json(args.json, {"machine": machine(), "args": settings, "results": results})


def hidden_rows(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    hidden = torch.randn(rows, dim, generator=gen)
    hidden[:, :4] *= 40.0  # a few large dimensions, as final hidden states have
    return hidden.to(torch.bfloat16)


def one_row(
    kernels: CpuKernels,
    q: torch.Tensor,
    scale: torch.Tensor,
    sums: tuple[torch.Tensor, torch.Tensor],
    args: argparse.Namespace,
    gen: torch.Generator,
) -> dict[str, Any]:
    hidden = hidden_rows(1, args.dim, gen)
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

        screen = partial(kernels.greedy_head, hidden, None, head, head_scale)
        times = alternate({name: partial(screen, row_sums) for name, row_sums in screens.items()}, args.calls)
        nbytes = head.nbytes + head_scale.nbytes + sum(t.nbytes for t in head_sums)
        for name, ms in times.items():
            results[f"{case}/{name}"] = {"ms": ms, "gb_per_s": nbytes / ms / 1e6, "vocab": vocab}
            rows.append([case, vocab, name, ms, nbytes / ms / 1e6])
    print_table("one row through the int8 head's screen", ["case", "rows", "screen", "ms", "GB/s"], rows)
    return results


def several_rows(
    kernels: CpuKernels,
    q: torch.Tensor,
    scale: torch.Tensor,
    sums: tuple[torch.Tensor, torch.Tensor],
    counts: list[int],
    calls: int,
    gen: torch.Generator,
) -> dict[str, Any]:
    vocab, dim = q.shape
    weight = (q.float() * scale[:, None]).to(torch.bfloat16)  # a bf16 head whose int8 copy is about q
    screened = GreedyHead(kernels, max(counts), torch.bfloat16, weight)
    matmul = Linear(dim, [vocab], bias=False, dtype=torch.bfloat16)
    matmul.weight.data = weight
    packed = matmul.prepack()
    rows, results = [], {}
    for n in counts:
        hidden = hidden_rows(n, dim, gen)
        with torch.inference_mode():
            expected = matmul(hidden).argmax(-1)
            assert torch.equal(screened.tokens(hidden), expected), "the bf16 head's screen disagrees"

            int8 = partial(kernels.greedy_head, hidden, None, q, scale)
            assert torch.equal(int8(sums)[0], int8(None)[0]), "the int8 head's two screens disagree"
            matmul_name = f"bf16 head: matmul{' (prepacked)' if packed else ''}"
            times = alternate(
                {
                    "bf16 head: integer screen": partial(screened.tokens, hidden),
                    matmul_name: partial(matmul, hidden),
                    "int8 head: integer screen": partial(int8, sums),
                    "int8 head: float screen": partial(int8, None),
                },
                calls,
            )
        for name, ms in times.items():
            results[f"{n}/{name}"] = {"ms": ms, "rows": n}
            rows.append([n, name, ms])
    print_table(f"several rows through a {vocab:,} x {dim} head", ["rows", "way", "ms"], rows)
    return results


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each call, the calls taken in turn `repeats` times."""
    for call in calls.values():
        call()  # first touch
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
    return {name: 1000 * median(ts) for name, ts in times.items()}


if __name__ == "__main__":
    main()
