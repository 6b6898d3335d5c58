"""What the HTTP layer costs: the same workload in-process and through `seekserve serve`.

    python benchmarks/http_overhead.py                            # Qwen2.5-0.5B-shaped random model, bf16
    python benchmarks/http_overhead.py --model DIR --concurrency 1,16,64 --num-requests 256
    python benchmarks/http_overhead.py --model DIR --engine device=cuda --engine max_num_seqs=128

Each concurrency level runs a closed loop: C clients, each sending its next request as soon as
the last one finished, over token-id prompts (random, fixed seeds) with greedy decoding of
exactly --max-tokens tokens. Two paths:

  engine   AsyncEngine in this process (what the server wraps), streams read directly
  http     `seekserve serve` in a child process, /v1/completions streamed over loopback SSE
           by an httpx client in this process (raw SSE parsing, no SDK)

Each level (and the warm-up) gets prompts of its own, the same on both paths, so no level finds
the last one's prompts in the prefix cache. Both measure TTFT to the first non-empty text delta
and report requests/s, TTFT p50/p99 and output tokens/s; the overhead columns compare http with
engine. The two paths run one after the other (never both loaded at once), so a GPU holds one copy
of the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from common import (
    QWEN2_0_5B_SHAPE,
    REPO,
    machine,
    parse_engine_options,
    percentile,
    print_table,
    random_model_dir,
    write_json,
)

Prompt = list[int]
RunOne = Callable[[Prompt], Awaitable[tuple[float, int]]]


def make_prompts(num: int, length: int, vocab: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    return [[rng.randrange(10, vocab) for _ in range(length)] for _ in range(num)]


async def closed_loop(run_one: RunOne, prompts: list[Prompt], concurrency: int) -> dict[str, float]:
    """Run every prompt with `concurrency` clients; (TTFT, output tokens) per request come from run_one."""
    queue: asyncio.Queue[Prompt] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    ttfts: list[float] = []
    num_tokens = 0

    async def client() -> None:
        nonlocal num_tokens
        while not queue.empty():
            ttft, tokens = await run_one(queue.get_nowait())
            ttfts.append(ttft)
            num_tokens += tokens

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "requests_per_s": len(prompts) / wall,
        "output_tok_s": num_tokens / wall,
        "ttft_p50_ms": 1000 * percentile(ttfts, 50),
        "ttft_p99_ms": 1000 * percentile(ttfts, 99),
        "wall_s": wall,
    }


def run_engine(
    model: Path, options: dict[str, Any], prompts: dict[int, list[Prompt]], args: argparse.Namespace
) -> dict[int, Any]:
    from seekserve.engine.async_engine import AsyncEngine
    from seekserve.engine.sampling_params import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    results: dict[int, Any] = {}

    async def main() -> None:
        engine = AsyncEngine.from_options(model=str(model), **options)
        engine.start()

        async def run_one(prompt: Prompt) -> tuple[float, int]:
            start, ttft, tokens = time.perf_counter(), None, 0
            async for out in engine.generate(prompt, params):
                if ttft is None and out.outputs[0].delta_text:
                    ttft = time.perf_counter() - start
                tokens = len(out.outputs[0].token_ids)
            assert tokens == args.max_tokens, f"expected {args.max_tokens} tokens, got {tokens}"
            return ttft if ttft is not None else time.perf_counter() - start, tokens

        await closed_loop(run_one, prompts[0], min(args.warmup, 4))
        for c in args.concurrency:
            results[c] = await closed_loop(run_one, prompts[c], c)
        await asyncio.to_thread(engine.shutdown)

    asyncio.run(main())
    return results


def serve_command(model: Path, options: dict[str, Any], port: int) -> list[str]:
    cmd = [sys.executable, "-m", "seekserve", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--served-model-name", "bench", "--log-level", "warning"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + flag[2:])
        else:
            cmd += [flag, str(value)]
    return cmd


def start_server(model: Path, options: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(serve_command(model, options, port), env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"seekserve serve exited with {proc.returncode}; see its messages above")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("seekserve serve did not become healthy within 15 minutes")


async def stream_completion(http: httpx.AsyncClient, prompt: Prompt, max_tokens: int) -> tuple[float, int]:
    """Stream one greedy /v1/completions of exactly `max_tokens` tokens; (TTFT, output tokens)."""
    body = {
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    start, ttft, tokens = time.perf_counter(), None, 0
    async with http.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and any(c["text"] for c in chunk["choices"]):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    assert tokens == max_tokens, f"expected {max_tokens} tokens, got {tokens}"
    return ttft if ttft is not None else time.perf_counter() - start, tokens


def run_http(
    model: Path, options: dict[str, Any], prompts: dict[int, list[Prompt]], args: argparse.Namespace
) -> dict[int, Any]:
    proc, url = start_server(model, options)
    results: dict[int, Any] = {}

    async def main() -> None:
        limits = httpx.Limits(
            max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency)
        )
        async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as http:

            async def run_one(prompt: Prompt) -> tuple[float, int]:
                return await stream_completion(http, prompt, args.max_tokens)

            await closed_loop(run_one, prompts[0], min(args.warmup, 4))
            for c in args.concurrency:
                results[c] = await closed_loop(run_one, prompts[c], c)

    try:
        asyncio.run(main())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, help="model directory (default: a random Qwen2.5-0.5B-shaped model)"
    )
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    ap.add_argument("--num-requests", type=int, default=128, help="requests per concurrency level")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=8, help="untimed requests before each path")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE", help="more engine options")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "http_overhead.json")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    model = args.model or random_model_dir("qwen2-0.5b-shape", "Qwen2Config", QWEN2_0_5B_SHAPE)
    options = {"dtype": args.dtype, "max_model_len": args.max_model_len, **parse_engine_options(args.engine)}
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    vocab = min(vocab, 30000)
    prompts = {0: make_prompts(args.warmup, args.prompt_len, vocab, seed=0)}  # 0: the warm-up's
    for c in args.concurrency:
        prompts[c] = make_prompts(args.num_requests, args.prompt_len, vocab, seed=c)
    results = {
        "engine": run_engine(model, options, prompts, args),
        "http": run_http(model, options, prompts, args),
    }
    report(args, results)
    write_json(
        args.json,
        {
            "machine": machine(),
            "model": str(model),
            "engine_options": options,
            "workload": {
                k: getattr(args, k) for k in ("num_requests", "prompt_len", "max_tokens", "concurrency")
            },
            "results": {p: {str(c): r for c, r in by_c.items()} for p, by_c in results.items()},
        },
    )


def report(args: argparse.Namespace, results: dict[str, dict[int, Any]]) -> None:
    rows: list[list[Any]] = []
    for c in args.concurrency:
        eng, web = results["engine"][c], results["http"][c]
        for path, r in (("engine", eng), ("http", web)):
            rows.append([c, path, r["requests_per_s"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["output_tok_s"]])
        rows.append(
            [
                c,
                "http overhead",
                f"{100 * (1 - web['requests_per_s'] / eng['requests_per_s']):+.1f}% fewer",
                f"{web['ttft_p50_ms'] - eng['ttft_p50_ms']:+.2f}",
                f"{web['ttft_p99_ms'] - eng['ttft_p99_ms']:+.2f}",
                "",
            ]
        )
    print_table(
        f"HTTP overhead ({args.num_requests} requests, "
        f"prompt {args.prompt_len}, output {args.max_tokens} tokens)",
        ["clients", "path", "requests/s", "TTFT p50 ms", "TTFT p99 ms", "output tok/s"],
        rows,
    )


if __name__ == "__main__":
    main()
