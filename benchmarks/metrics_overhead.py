"""What metrics collection costs: the same batch workload through `seekserve serve` with metrics on and off.

    python benchmarks/metrics_overhead.py                          # Qwen2.5-0.5B-shaped random model, bf16
    python benchmarks/metrics_overhead.py --model DIR --concurrency 64 --num-requests 256 --rounds 7
    python benchmarks/metrics_overhead.py --model DIR --engine device=cuda --engine max_num_seqs=128

Two servers run side by side on the same model: one with metrics on (the default: per-token latency
histograms, the GPU/process sampler, the live dashboard's frames, and /metrics scraped every
--scrape-interval-s as Prometheus would), one started with --no-enable-metrics. Each round runs
the workload once on each, in alternating order (on/off, then off/on), so drift in the machine's
speed falls on both alike. The workload is a closed loop: --concurrency clients streaming greedy
/v1/completions of exactly --max-tokens tokens over random token-id prompts. The overhead is
1 - median(on tok/s) / median(off tok/s); the median of the per-round ratios is shown too.
Both servers hold a copy of the model (on a GPU, twice the weights).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
from pathlib import Path
from typing import Any

import httpx

from common import (
    QWEN2_0_5B_SHAPE,
    REPO,
    machine,
    parse_engine_options,
    print_table,
    random_model_dir,
    write_json,
)
from http_overhead import (
    Prompt,
    closed_loop,
    make_prompts,
    start_server,
    stream_completion,
)


async def run_once(
    url: str, prompts: list[Prompt], args: argparse.Namespace, scrape: bool
) -> dict[str, float]:
    """One closed-loop run; with `scrape`, /metrics is fetched every --scrape-interval-s meanwhile."""
    limits = httpx.Limits(
        max_connections=args.concurrency + 1, max_keepalive_connections=args.concurrency + 1
    )
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as http:
        done = asyncio.Event()

        async def scraper() -> int:
            scrapes = 0
            while not done.is_set() and args.scrape_interval_s > 0:
                (await http.get("/metrics")).raise_for_status()
                scrapes += 1
                await asyncio.sleep(args.scrape_interval_s)
            return scrapes

        scraping = asyncio.create_task(scraper()) if scrape else None
        result = await closed_loop(
            lambda p: stream_completion(http, p, args.max_tokens), prompts, args.concurrency
        )
        done.set()
        if scraping is not None:
            result["scrapes"] = await scraping
        return result


def measure(
    urls: dict[str, str], prompts: list[Prompt], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}

    async def main() -> None:
        for url in urls.values():  # warm both up before timing either
            await run_once(url, prompts[: args.warmup], args, scrape=False)
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for mode in order:
                runs[mode].append(await run_once(urls[mode], prompts, args, scrape=mode == "on"))
            tok_s = ", ".join(f"{m} {runs[m][-1]['output_tok_s']:.1f} tok/s" for m in ("on", "off"))
            print(f"round {r + 1}/{args.rounds}: {tok_s}")

    asyncio.run(main())
    return runs


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    on = [r["output_tok_s"] for r in runs["on"]]
    off = [r["output_tok_s"] for r in runs["off"]]
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    return {
        "on_tok_s_median": statistics.median(on),
        "off_tok_s_median": statistics.median(off),
        "overhead_pct": 100 * (1 - statistics.median(on) / statistics.median(off)),
        "overhead_pct_median_of_rounds": 100 * (1 - statistics.median(ratios)),
        "ttft_p50_ms_on": statistics.median(r["ttft_p50_ms"] for r in runs["on"]),
        "ttft_p50_ms_off": statistics.median(r["ttft_p50_ms"] for r in runs["off"]),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: a random Qwen2.5-0.5B-shaped model)")
    ap.add_argument("--concurrency", type=int, default=32, help="clients in the closed loop")
    ap.add_argument("--num-requests", type=int, default=128, help="requests per run")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5, help="on/off pairs; medians are taken over them")
    ap.add_argument("--warmup", type=int, default=8, help="untimed requests on each server first")
    ap.add_argument(
        "--scrape-interval-s", type=float, default=1.0, help="/metrics polling while on (0: none)"
    )
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE", help="more engine options")
    ap.add_argument("--json", default=str(REPO / "results" / "metrics_overhead.json"))
    return ap.parse_args()


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], summary: dict[str, float]
) -> None:
    rows: list[list[Any]] = [
        [r + 1, runs["on"][r]["output_tok_s"], runs["off"][r]["output_tok_s"]] for r in range(args.rounds)
    ]
    rows.append(["median", summary["on_tok_s_median"], summary["off_tok_s_median"]])
    print_table(
        f"Metrics overhead ({args.num_requests} requests x {args.max_tokens} tokens, "
        f"{args.concurrency} clients): {summary['overhead_pct']:+.2f}% throughput lost with metrics on",
        ["round", "on tok/s", "off tok/s"],
        rows,
    )


def main() -> None:
    args = parse_args()
    model = (
        Path(args.model)
        if args.model
        else random_model_dir("qwen2-0.5b-shape", "Qwen2Config", QWEN2_0_5B_SHAPE)
    )
    options = {"dtype": args.dtype, "max_model_len": args.max_model_len, **parse_engine_options(args.engine)}
    vocab = json.loads((model / "config.json").read_text())["vocab_size"] if model.is_dir() else 30000
    prompts = make_prompts(args.num_requests, args.prompt_len, min(vocab, 30000))
    servers = {
        mode: start_server(model, {**options, "enable_metrics": mode == "on"}) for mode in ("on", "off")
    }
    try:
        runs = measure({mode: url for mode, (_, url) in servers.items()}, prompts, args)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    summary = summarize(runs)
    report(args, runs, summary)
    workload = ("num_requests", "prompt_len", "max_tokens", "concurrency", "rounds", "scrape_interval_s")
    write_json(
        Path(args.json),
        {
            "machine": machine(),
            "model": str(model),
            "engine_options": options,
            "workload": {k: getattr(args, k) for k in workload},
            "runs": runs,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
