"""The sampler on random logits rows of Gemma 3's vocabulary: the full sort (the reference path)
against the candidate path, per sampling setting and batch size.

    python benchmarks/sampler.py                        # rows 1,16,64; bf16 and float32; 7 calls
    python benchmarks/sampler.py --rows 16 --calls 15 --dtypes bfloat16

Logits are N(0, 3^2) per entry (a peaked row, like a model's). Settings: greedy; temperature 0.6
with top_p 0.95 (DeepSeek's recommendation); the same with repetition 1.1 and frequency 0.2
penalties over a 512-token prompt and 128 output tokens; temperature 1.0 on flat rows (N(0, 0.3^2)),
where top-p needs hundreds of thousands of tokens, so the candidate path falls back to the sort.
Calls alternate old / new on the same logits; the table gives the median and the spread (min-max)
in milliseconds. Writes JSON to results/sampler.json.
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
from seekserve.engine.request import Request
from seekserve.engine.sampler import Sampler

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,16,64")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "sampler.json")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    old, new = Sampler(seed=0, full_sort=True), Sampler(seed=0)
    table, results = [], []
    for dtype in args.dtypes.split(","):
        for setting in args.settings.split(","):
            for rows in (int(r) for r in args.rows.split(",")):
                scale = 0.3 if "flat" in setting else 3.0
                logits = (torch.randn(rows, VOCAB, generator=gen) * scale).to(getattr(torch, dtype))
                reqs = requests(setting, rows, gen)
                time_ms(old, logits, reqs), time_ms(new, logits, reqs)  # warm-up
                times: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(args.calls):
                    times["old"].append(time_ms(old, logits, reqs))
                    times["new"].append(time_ms(new, logits, reqs))
                o, n = median(times["old"]), median(times["new"])
                spread = {k: f"{min(v):.1f}-{max(v):.1f}" for k, v in times.items()}
                table.append([dtype, setting, rows, o, spread["old"], n, spread["new"], o / n])
                results.append(
                    {
                        "dtype": dtype,
                        "setting": setting,
                        "rows": rows,
                        "old_ms": times["old"],
                        "new_ms": times["new"],
                    }
                )
    header = ["dtype", "setting", "rows", "old ms", "old spread", "new ms", "new spread", "old/new"]
    print_table("Sampler per call, median of alternating calls", header, table)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    write_json(args.json, {"machine": machine(), "args": settings, "results": results})


if __name__ == "__main__":
    main()
