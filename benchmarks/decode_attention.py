"""The CPU decode-attention kernel alone, on a batch shaped like the anchors' batch64 workload.

    python benchmarks/decode_attention.py                        # Gemma 3 270M's shape, bf16
    python benchmarks/decode_attention.py --seqs 16 --min-len 256 --max-len 384

One query token per sequence over its cached keys (`CpuKernels.paged_decode`), for every layer of
the model: each layer has its own cache, so the keys and values stream from memory as they do in a
decode step, and each sequence's blocks are scattered through the cache as a busy engine leaves
them. Prints the median time of all layers, the bytes of K/V read and the read speed that implies,
and the same with one layer's cache re-read (mostly from cache); writes JSON.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from common import REPO, machine, median, print_table, write_json
from seekserve.layers.cpu_kernels import cpu_kernels


def build_layer(
    lens: list[int], kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    blocks = [-(-n // block_size) for n in lens]
    order = torch.randperm(sum(blocks), generator=gen)
    tables = torch.zeros(len(lens), max(blocks), dtype=torch.int64)
    start = 0
    for i, nb in enumerate(blocks):
        tables[i, :nb] = order[start : start + nb]
        start += nb
    shape = (sum(blocks) * block_size, kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=gen).to(dtype)
    v_cache = torch.randn(shape, generator=gen).to(dtype)
    return tables, k_cache, v_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--min-len", type=int, default=64, help="shortest context (batch64: prompts 64-512)")
    ap.add_argument("--max-len", type=int, default=640)
    ap.add_argument("--layers", type=int, default=18)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "decode_attention.json")
    args = ap.parse_args()

    kernels = cpu_kernels()
    if kernels is None:
        raise SystemExit("the CPU kernels are not available here (no compiler, or not a CPU build)")
    dtype = getattr(torch, args.dtype)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    lens = [rng.randint(args.min_len, args.max_len) for _ in range(args.seqs)]
    shape = (args.kv_heads, args.head_dim, args.block_size, dtype, gen)
    layers = [build_layer(lens, *shape) for _ in range(args.layers)]
    seq_lens = torch.tensor(lens, dtype=torch.int64)
    q = torch.randn(args.seqs, args.heads, args.head_dim, generator=gen).to(dtype)
    scale = args.head_dim**-0.5

    def attend(tables: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
        kernels.paged_decode(q, k_cache, v_cache, tables, seq_lens, args.block_size, None, scale)

    def timed(pass_over: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
        for layer in pass_over[:3]:
            attend(*layer)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for layer in pass_over:
                attend(*layer)
            times.append(time.perf_counter() - t)
        return 1000 * median(times)

    streamed = timed(layers)
    cached = timed([layers[0]] * args.layers)
    gigabytes = sum(lens) * args.kv_heads * args.head_dim * dtype.itemsize * 2 * args.layers / 1e9
    rows = [
        ["all layers, K/V from memory", round(streamed, 2), round(gigabytes / streamed * 1e3, 1)],
        ["one layer's K/V re-read", round(cached, 2), round(gigabytes / cached * 1e3, 1)],
    ]
    title = (
        f"decode attention: {args.seqs} sequences of {args.min_len}-{args.max_len} tokens,"
        f" {args.layers} layers, {args.heads}/{args.kv_heads} heads of {args.head_dim}, {args.dtype}:"
        f" {gigabytes:.3f} GB of K/V"
    )
    print_table(title, ["case", "ms", "GB/s"], rows)
    write_json(
        args.json,
        {
            "machine": machine(),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "kv_gigabytes": gigabytes,
            "streamed_ms": streamed,
            "cached_ms": cached,
        },
    )


if __name__ == "__main__":
    main()
