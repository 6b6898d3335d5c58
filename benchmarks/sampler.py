"""The sampler on random logits rows of Gemma 3's vocabulary: the full sort (the reference path)
against the candidate path, with torch.topk and torch's softmax ("torch") and with the fused CPU
kernel ("kernel", where the kernels build), per sampling setting and batch size.

    python benchmarks/sampler.py                        # rows 1,16,64; bf16 and float32; 7 calls
    python benchmarks/sampler.py --rows 16 --calls 15 --dtypes bfloat16

Logits are N(0, 3^2) per entry (a peaked row, like a model's). Settings: greedy; temperature 0.6
with top_p 0.95 (DeepSeek's recommendation); the same with repetition 1.1 and frequency 0.2
penalties over a 512-token prompt and 128 output tokens; temperature 1.0 on flat rows (N(0, 0.3^2)),
where top-p needs hundreds of thousands of tokens, so the candidate path falls back to the sort.
Calls alternate old / torch / kernel on the same logits; the table gives the median and the spread
(min-max) in milliseconds, and the share of the kernel route's rows that went on to the torch
stages (a top-p or min-p cut within its margin, see candidates.py). Writes JSON to
results/sampler.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from common import REPO, machine, median, print_table, write_json

sys.path.insert(0, str(REPO / "tests"))
from factories import make_request
from seekserve.engine import candidates
from seekserve.engine.request import Request
from seekserve.engine.sampler import Sampler
from seekserve.layers.cpu_kernels import cpu_kernels

VOCAB = 262_144
SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0},
    "t0.6 p0.95": {"temperature": 0.6, "top_p": 0.95},
    "t0.6 p0.95 penalties": {
        "temperature": 0.6,
        "top_p": 0.95,
        "repetition_penalty": 1.1,
        "frequency_penalty": 0.2,
    },
    "t1.0 p0.95 flat": {"temperature": 1.0, "top_p": 0.95},
}


def requests(setting: str, rows: int, gen: torch.Generator) -> list[Request]:
    reqs = []
    for i in range(rows):
        prompt = torch.randint(0, VOCAB, (512,), generator=gen).tolist()
        req = make_request(f"r{i}", prompt=prompt, max_tokens=256, **SETTINGS[setting])
        req.token_ids += torch.randint(0, 4096, (128,), generator=gen).tolist()
        reqs.append(req)
    return reqs


def time_ms(sampler: Sampler, logits: torch.Tensor, reqs: list[Request]) -> float:
    start = time.perf_counter()
    sampler(logits, reqs)
    return (time.perf_counter() - start) * 1e3


class RowsToTorch:
    """Counts the rows `kept_tokens` hands to its torch stages (wraps candidates._torch_stages)."""

    def __init__(self) -> None:
        self.count = 0
        self._inner = candidates._torch_stages
        candidates._torch_stages = self  # type: ignore[assignment]

    def __call__(self, logits: torch.Tensor, filters: Any, pending: torch.Tensor, *rest: Any) -> None:
        self.count += len(pending)
        self._inner(logits, filters, pending, *rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,16,64")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "sampler.json")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    kernels = cpu_kernels()
    samplers = {"old": Sampler(seed=0, full_sort=True), "torch": Sampler(seed=0)}
    if kernels is not None:
        samplers["kernel"] = Sampler(seed=0, kernels=kernels)
    to_torch = RowsToTorch()
    table, results = [], []
    for dtype in args.dtypes.split(","):
        for setting in args.settings.split(","):
            for rows in (int(r) for r in args.rows.split(",")):
                scale = 0.3 if "flat" in setting else 3.0
                logits = (torch.randn(rows, VOCAB, generator=gen) * scale).to(getattr(torch, dtype))
                reqs = requests(setting, rows, gen)
                for sampler in samplers.values():  # warm-up
                    time_ms(sampler, logits, reqs)
                times: dict[str, list[float]] = {name: [] for name in samplers}
                handed = 0
                for _ in range(args.calls):
                    for name, sampler in samplers.items():
                        before = to_torch.count
                        times[name].append(time_ms(sampler, logits, reqs))
                        handed += to_torch.count - before if name == "kernel" else 0
                mid = {name: median(v) for name, v in times.items()}
                spread = {name: f"{min(v):.1f}-{max(v):.1f}" for name, v in times.items()}
                k = mid.get("kernel", float("nan"))
                share = handed / (rows * args.calls) if "kernel" in samplers else float("nan")
                table.append(
                    [dtype, setting, rows, mid["old"], spread["old"], mid["torch"], spread["torch"], k,
                     spread.get("kernel", "-"), f"{share:.0%}", mid["old"] / k, mid["torch"] / k]
                )  # fmt: skip
                results.append(
                    {"dtype": dtype, "setting": setting, "rows": rows, "rows_to_torch_share": share}
                    | {f"{name}_ms": v for name, v in times.items()}
                )
    header = ["dtype", "setting", "rows", "old ms", "spread", "torch ms", "spread", "kernel ms", "spread",
              "to torch", "old/kernel", "torch/kernel"]  # fmt: skip
    print_table("Sampler per call, median of alternating calls", header, table)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    write_json(args.json, {"machine": machine(), "args": settings, "results": results})


if __name__ == "__main__":
    main()
