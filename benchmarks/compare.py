"""Side-by-side serving comparisons: one named scenario, several servers, one run.

    python benchmarks/compare.py static-vs-continuous   seekserve --scheduling static vs continuous:
        Poisson arrivals at 0.9 x the continuous server's saturation rate, varied output lengths;
        mean/p99 latency and throughput (the field guide claims -42 % mean latency, +28 % throughput)
    python benchmarks/compare.py stall                  seekserve with chunked prefill off vs on:
        8 streams decode, then one 4,000-token prompt arrives; the longest gap of each decoding stream
    python benchmarks/compare.py peers                  seekserve vs vLLM (CPU) vs llama.cpp's server on
        Gemma 3 270M at concurrency 1, 8 and 32: TTFT, ITL, throughput

Servers are started from command templates (see --server), one at a time unless --all-up, and the
runs interleave (A, B, A, B, ...). Writes OUT/SCENARIO.md (medians and ratios to the first server)
and OUT/SCENARIO.json (every run), server logs in OUT/logs/. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from seekserve.bench.compare import Metric, Scenario, Workload, markdown_table, run_scenario, stream_figure
from seekserve.bench.compare import summary_metric as sm
from seekserve.bench.datasets import load_tokenizer, random_text
from seekserve.bench.runner import BenchRun
from seekserve.bench.servers import ServerSpec
from seekserve.errors import SeekserveError

SEEKSERVE = (
    "{python} -m seekserve serve --model {seekserve_model} --host 127.0.0.1 --port {port} {seekserve_args}"
)
VLLM = "bash {anchors}/serve.sh vllm {port}"
# serve.sh's llama.cpp line plus --interrupt_requests False: by default llama-cpp-python's server
# aborts the running request whenever a new one arrives, which leaves nothing to measure at
# concurrency above 1 (requests still run one at a time, queued, as its users would see).
LLAMACPP = (
    "{anchors_dir}/llama/bin/python -m llama_cpp.server --model {anchors_dir}/models/gemma-3-270m-q4_k_m.gguf"
    " --host 127.0.0.1 --port {port} --n_threads 2 --n_ctx 4096 --model_alias gemma3-270m"
    " --interrupt_requests False"
)
NUM_DECODERS = 8


def _tokenizer(args: argparse.Namespace) -> str | None:
    if args.tokenizer:
        return str(args.tokenizer)
    candidate = Path(args.seekserve_model) / "tokenizer.json"
    return str(candidate) if candidate.is_file() else None


def static_vs_continuous(args: argparse.Namespace) -> Scenario:
    options = {
        "endpoint": "completions",
        "input_len": "uniform:32,256",
        "output_len": "uniform:16,256",
        "num_requests": args.num_requests or 64,
        "tokenizer": _tokenizer(args),
        "seed": args.seed,
    }
    if args.request_rate:
        workload = Workload(
            f"poisson {args.request_rate:g} req/s", {**options, "request_rate": args.request_rate}
        )
    else:
        workload = Workload("poisson 0.9x saturation", {**options, "request_rate": 1.0}, calibrate=0.9)
    return Scenario(
        "static-vs-continuous",
        "seekserve's engine with static vs continuous batching; the guide claims -42 % mean latency and "
        "+28 % throughput for continuous batching",
        (
            ServerSpec("static", SEEKSERVE + " --scheduling static"),
            ServerSpec("continuous", SEEKSERVE + " --scheduling continuous"),
        ),
        (workload,),
        (
            sm("E2E mean (ms)", "e2e.mean", 1e3),
            sm("E2E p99 (ms)", "e2e.p99", 1e3),
            sm("TTFT mean (ms)", "ttft.mean", 1e3),
            sm("output tok/s", "output_token_throughput", higher_is_better=True),
            sm("requests/s", "request_throughput", higher_is_better=True),
        ),
    )


def _stall_trace(args: argparse.Namespace) -> Path:
    """8 short prompts that decode long at t=0, then one long prompt at --long-prompt-at."""
    tokenizer_path = _tokenizer(args)
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path else None
    rng = random.Random(args.seed)
    lines = []
    for _ in range(NUM_DECODERS):
        prompt, _ = random_text(32, rng, tokenizer)
        lines.append({"prompt": prompt, "output_len": args.decode_tokens, "arrival_s": 0.0})
    prompt, _ = random_text(args.long_prompt_tokens, rng, tokenizer)
    lines.append({"prompt": prompt, "output_len": 8, "arrival_s": args.long_prompt_at})
    path = args.out / "stall-trace.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def stall(args: argparse.Namespace) -> Scenario:
    trace = _stall_trace(args)
    decoders = list(range(NUM_DECODERS))

    def long_ttft(run: BenchRun) -> float | None:
        ttft = run.records[NUM_DECODERS].ttft_s
        return None if ttft is None else ttft * 1e3

    def ms(figure: Callable[[list[float]], float]) -> Callable[[list[float]], float]:
        return lambda gaps: figure(gaps) * 1e3

    length = f"--max-model-len {args.long_prompt_tokens + 1024}"
    return Scenario(
        "stall",
        f"{NUM_DECODERS} streams decode {args.decode_tokens} tokens; a {args.long_prompt_tokens}-token "
        f"prompt arrives at {args.long_prompt_at:g} s; the longest inter-token gap of each decoding stream",
        (
            ServerSpec("unchunked", f"{SEEKSERVE} --no-enable-chunked-prefill {length}"),
            ServerSpec("chunked", f"{SEEKSERVE} --enable-chunked-prefill {length}"),
        ),
        (
            Workload(
                "8 decoding + 1 long prompt",
                {"dataset": f"jsonl:{trace}", "arrival": "trace", "endpoint": "completions"},
            ),
        ),
        (
            Metric("longest gap, worst stream (ms)", stream_figure(decoders, ms(max))),
            Metric("longest gap, median stream (ms)", stream_figure(decoders, ms(statistics.median))),
            Metric("long prompt TTFT (ms)", long_ttft),
            sm("ITL median (ms)", "itl.median", 1e3),
        ),
    )


def peers(args: argparse.Namespace) -> Scenario:
    workloads = tuple(
        Workload(
            f"concurrency {c}",
            {
                "endpoint": "completions",
                "max_concurrency": c,
                "num_requests": args.num_requests or max(8, 2 * c),
                "input_len": "128",
                "output_len": "64",
                "tokenizer": _tokenizer(args),
                "seed": args.seed,
            },
        )
        for c in (1, 8, 32)
    )
    return Scenario(
        "peers",
        "seekserve vs vLLM (CPU, bf16) vs llama.cpp's server (Q4_K_M) on Gemma 3 270M, through HTTP",
        (
            ServerSpec("seekserve", SEEKSERVE),
            ServerSpec("vllm", VLLM, ready_timeout_s=600),
            ServerSpec("llamacpp", LLAMACPP),
        ),
        workloads,
        (
            sm("TTFT median (ms)", "ttft.median", 1e3),
            sm("TTFT p99 (ms)", "ttft.p99", 1e3),
            sm("ITL median (ms)", "itl.median", 1e3),
            sm("ITL p99 (ms)", "itl.p99", 1e3),
            sm("output tok/s", "output_token_throughput", higher_is_better=True),
        ),
    )


SCENARIOS: dict[str, Callable[[argparse.Namespace], Scenario]] = {
    "static-vs-continuous": static_vs_continuous,
    "stall": stall,
    "peers": peers,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    p.add_argument("--repeats", type=int, default=3, help="runs per server and workload (median reported)")
    p.add_argument("--all-up", action="store_true", help="keep every server up for the whole scenario")
    p.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="replace a server's command template ({port}, {python}, {seekserve_model}, {seekserve_args}, "
        "{anchors}, {anchors_dir})",
    )
    p.add_argument("--drop", action="append", default=[], metavar="NAME", help="leave a server out")
    p.add_argument(
        "--seekserve-model", help="{seekserve_model} (default: the Gemma 3 270M bf16 dir under --anchors-dir)"
    )
    p.add_argument("--seekserve-args", default="", help="extra flags for seekserve serve ({seekserve_args})")
    p.add_argument("--anchors", default="/work/shared/anchors", help="directory of serve.sh ({anchors})")
    p.add_argument(
        "--anchors-dir",
        default=os.environ.get("ANCHORS_DIR", "/tmp/anchors"),
        help="where setup.sh put the peer engines and models ({anchors_dir}; $ANCHORS_DIR)",
    )
    p.add_argument("--tokenizer", help="tokenizer.json for exact prompt lengths (default: the model's)")
    p.add_argument("--num-requests", type=int, help="requests per run (scenario default otherwise)")
    p.add_argument(
        "--request-rate", type=float, help="static-vs-continuous: fixed rate instead of 0.9 x saturation"
    )
    p.add_argument(
        "--decode-tokens", type=int, default=384, help="stall: output tokens of each decoding stream"
    )
    p.add_argument("--long-prompt-tokens", type=int, default=4000, help="stall: length of the long prompt")
    p.add_argument(
        "--long-prompt-at", type=float, default=2.0, help="stall: when the long prompt arrives (s)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temperature", type=float, help="sample every request at this temperature (default: greedy)"
    )
    p.add_argument("--top-p", type=float, help="and this top_p (DeepSeek's advice: 0.6 and 0.95)")
    args = p.parse_args(argv)
    args.seekserve_model = args.seekserve_model or f"{args.anchors_dir}/models/gemma3-270m-bf16"
    return args


def _apply_overrides(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    servers = {s.name: s for s in scenario.servers}
    for item in args.server:
        name, sep, command = item.partition("=")
        if not sep or name not in servers:
            raise SystemExit(f"--server {item!r}: write NAME=COMMAND with NAME one of {', '.join(servers)}")
        servers[name] = ServerSpec(name, command, servers[name].ready_timeout_s, servers[name].env)
    for name in args.drop:
        if servers.pop(name, None) is None:
            known = ", ".join(s.name for s in scenario.servers)
            raise SystemExit(f"--drop {name!r}: no such server in {scenario.name} ({known})")
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p)) if v is not None}
    workloads = tuple(dataclasses.replace(w, options={**w.options, **sampling}) for w in scenario.workloads)
    return Scenario(scenario.name, scenario.description, tuple(servers.values()), workloads, scenario.metrics)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        scenario = _apply_overrides(SCENARIOS[args.scenario](args), args)
        values = {
            "seekserve_model": args.seekserve_model,
            "seekserve_args": args.seekserve_args,
            "anchors": args.anchors,
            "anchors_dir": args.anchors_dir,
        }
        print(f"{scenario.name}: {scenario.description}")
        result = run_scenario(scenario, args.out, values, repeats=args.repeats, isolate=not args.all_up)
    except SeekserveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    table = markdown_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{scenario.name}.md").write_text(f"# {scenario.name}\n\n{scenario.description}\n\n{table}")
    (args.out / f"{scenario.name}.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    print(table)
    print(f"written: {args.out / (scenario.name + '.md')}, {args.out / (scenario.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
