"""Weight quantization on a real model: memory, decode speed, batch throughput, perplexity, agreement.

    python benchmarks/quantization.py     # Gemma 3 270M (the default model); writes docs/quantization.md
    python benchmarks/quantization.py --model DIR --modes none,int8 --windows 2 --window 64 \\
        --decode-tokens 8 --batch 2 --batch-prompt 16 --batch-output 4 --docs /tmp/q.md   # smoke run

Modes (--modes): none, fp8, int8, int4, and variants int4:g64 / int4:g128 (group size), int8:act
(int8 with per-token activation quantization above the kernel rows), fp8:channel (per-channel
scales). Each runs in a fresh process, one after another, and measures:

  weights     bytes the engine holds (LLMEngine.weight_bytes), and the load peak: the most anonymous
              memory building and filling the model added (sampled every 0.5 ms; memory-mapped
              checkpoint pages and the tokenizer excluded)
  decode      single stream: a 32-token prompt, then --decode-tokens greedy tokens; tokens/s from
              the first to the last generated token (prefill excluded)
  batch       --batch requests of --batch-prompt random tokens submitted together, --batch-output
              tokens each (the anchors' batch16 shape by default); output tokens/s over the wall time
  perplexity  on Python's own documentation, `pydoc_data.topics` (shipped with every CPython; its
              text differs between Python versions, so the version and the text's SHA-256 are
              recorded): --windows windows of --window tokens, each starting with BOS, all positions
              scored (20 × 511 = 10,220 by default)
  agreement   share of those positions whose top-1 token equals the unquantized ("none") run's

The reference is the model as loaded without quantization in --dtype (bfloat16): for the default
model that is its Q4_K_M GGUF dequantized to bf16. Timings need a quiet machine: run it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from common import REPO, machine, print_table, write_json
from quantization_doc import render
from seekserve import LLM, SamplingParams
from seekserve.engine import model_loader as loader
from seekserve.layers.attention import AttentionMetadata, PrefillChunk
from seekserve.memory import PeakMemory
from seekserve.quant.apply import param_bytes

VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "fp8": {"quantization": "fp8"},
    "fp8:channel": {"quantization": "fp8", "quantization_group_size": 0},
    "int8": {"quantization": "int8"},
    "int8:act": {"quantization": "int8", "quantize_activations": True},
    "int4": {"quantization": "int4"},
    "int4:g64": {"quantization": "int4", "quantization_group_size": 64},
    "int4:g128": {"quantization": "int4", "quantization_group_size": 128},
}
DEFAULT_MODES = "none,fp8,int8,int4,int4:g64,int4:g128,int8:act"
LOGIT_ROWS = 64
"""Positions turned into logits at a time (a 262k vocabulary makes 67 MB of float32 per 64)."""


def corpus_ids(tokenizer: Any, windows: int, window: int) -> tuple[list[list[int]], dict[str, str]]:
    """`windows` windows of BOS + window - 1 tokens of pydoc_data.topics, and where the text came from."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    ids = tokenizer.encode(text, add_special_tokens=False)
    need = windows * (window - 1)
    if len(ids) < need:
        sys.exit(
            f"pydoc_data.topics has {len(ids)} tokens here; --windows × (--window - 1) = {need} is too many"
        )
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else ids[0]
    chunks = [[bos, *ids[i * (window - 1) : (i + 1) * (window - 1)]] for i in range(windows)]
    source = {
        "text": "pydoc_data.topics (CPython's documentation topics, keys sorted, joined by blank lines)",
        "python": platform.python_version(),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return chunks, source


@torch.inference_mode()
def score(llm: LLM, windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-1 token, negative log-likelihood of the actual next token) at every scored position."""
    engine = llm.engine
    model, caches, block_size = engine.model, engine.runner.kv_caches, engine.config.cache.block_size
    tops, nlls = [], []
    for ids in windows:
        n = len(ids)
        meta = AttentionMetadata(
            slot_mapping=torch.arange(n),
            num_decodes=0,
            decode_seq_lens=[],
            decode_block_tables=torch.zeros(0, 0, dtype=torch.int64),
            prefills=[PrefillChunk(0, n, 0, torch.arange(-(-n // block_size)))],
            block_size=block_size,
        )
        hidden = model(torch.tensor(ids), torch.arange(n), caches, meta)
        targets = torch.tensor(ids[1:])
        for start in range(0, n - 1, LOGIT_ROWS):
            logits = model.compute_logits(hidden[start : min(start + LOGIT_ROWS, n - 1)]).float()
            rows = targets[start : start + logits.shape[0]]
            nlls.append(torch.logsumexp(logits, -1) - logits.gather(1, rows[:, None]).squeeze(1))
            tops.append(logits.argmax(-1))
    return torch.cat(tops), torch.cat(nlls).double()


def random_prompt(rng: random.Random, length: int, vocab: int) -> list[int]:
    """Token ids uniform in [1000, 20000) as the anchors' workloads draw them (narrower for tiny
    vocabularies)."""
    low, high = min(1000, vocab // 4), min(20000, vocab)
    return [rng.randrange(low, high) for _ in range(length)]


def decode_speed(llm: LLM, tokens: int) -> float:
    vocab = llm.engine.model.config.vocab_size
    prompt = random_prompt(random.Random(0), 32, vocab)
    llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True))  # warm-up
    out = llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True))[0]
    first, last = out.metrics.first_token_time, out.metrics.last_token_time
    assert first is not None and last is not None, "a finished request has token times"
    return (tokens - 1) / (last - first)


def batch_throughput(llm: LLM, batch: int, prompt_len: int, output_len: int) -> float:
    vocab = llm.engine.model.config.vocab_size
    rng = random.Random(1)
    prompts = [random_prompt(rng, prompt_len, vocab) for _ in range(batch)]
    params = SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)
    llm.generate(prompts[:1], SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True))
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    wall = time.perf_counter() - start
    return sum(len(o.outputs[0].token_ids) for o in outs) / wall


@contextlib.contextmanager
def weights_peak() -> Iterator[PeakMemory]:
    """Peak memory of building and filling the model only: the tokenizer (a 262k-entry GGUF vocabulary
    takes more transient memory than the weights) is built afterwards, outside the measurement."""
    peak = PeakMemory()
    build = loader._build

    def measured(*args: Any, **kwargs: Any) -> Any:
        with peak:
            return build(*args, **kwargs)

    loader._build = measured
    try:
        yield peak
    finally:
        loader._build = build


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one mode in this process; the "none" run saves the reference top-1 tokens."""
    longest = max(args.window, args.batch_prompt + args.batch_output, 32 + args.decode_tokens)
    options = dict(VARIANTS[args.worker], dtype=args.dtype, max_model_len=longest)
    if args.model:
        options["model"] = args.model
    start = time.perf_counter()
    with weights_peak() as peak:
        llm = LLM(**options)
    result: dict[str, Any] = {
        "mode": args.worker,
        "options": VARIANTS[args.worker],
        "load_s": time.perf_counter() - start,
    }
    engine = llm.engine
    report = engine.quantization
    result |= {
        "weight_bytes": engine.weight_bytes,
        "packed_copy_bytes": engine.packed_copy_bytes,
        "load_peak_bytes": peak.peak_bytes,
        "load_transient_bytes": peak.peak_bytes - peak.final_bytes,
        "num_params": sum(p.numel() for p in engine.model.parameters()),
        "dense_weight_bytes": report.dense_weight_bytes if report else engine.weight_bytes,
        "fp8_kept": bool(report and report.fp8_kept),
        "lm_head": report.lm_head if report else "none",
        "lm_head_bytes": param_bytes(engine.model.lm_head),
    }
    windows, result["corpus"] = corpus_ids(engine.tokenizer, args.windows, args.window)
    top, nll = score(llm, windows)
    result |= {"positions": len(top), "perplexity": float(nll.mean().exp())}
    reference = Path(args.reference)
    if args.worker == "none":
        torch.save(top, reference)
    if reference.is_file():
        result["top1_agreement"] = float((top == torch.load(reference)).float().mean())
    if not args.skip_speed:
        result["decode_tok_s"] = decode_speed(llm, args.decode_tokens)
        result["batch_tok_s"] = batch_throughput(llm, args.batch, args.batch_prompt, args.batch_output)
    return result


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in VARIANTS]
    if unknown or modes[0] != "none":
        sys.exit(f"--modes must start with none and name only {', '.join(VARIANTS)} (got {args.modes})")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = str(Path(tmp) / "reference_top1.pt")
        for mode in modes:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", mode, "--reference", reference]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"mode {mode} failed:\n{done.stderr[-4000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{mode}: {results[-1]}", flush=True)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", default=None, help="model directory, GGUF file or hub id (default: Gemma 3 270M)")
    add("--modes", default=DEFAULT_MODES, help=f"comma-separated, none first (default {DEFAULT_MODES})")
    add("--dtype", default="bfloat16", help="compute dtype of every mode (the reference's)")
    add("--windows", type=int, default=20, help="perplexity windows")
    add("--window", type=int, default=512, help="tokens per window, BOS included")
    add("--decode-tokens", type=int, default=128, help="tokens generated in the single stream")
    add("--batch", type=int, default=16, help="requests in the batch run")
    add("--batch-prompt", type=int, default=256, help="prompt tokens per batch request")
    add("--batch-output", type=int, default=128, help="output tokens per batch request")
    add("--skip-speed", action="store_true", help="memory and accuracy only (no timings)")
    results = REPO / "benchmarks" / "results"
    add("--kernels-json", type=Path, default=results / "quant_kernels.json", help="quant_kernels.py's output")
    add("--json", type=Path, default=results / "quantization.json", help="where to write the results")
    add("--docs", type=Path, default=REPO / "docs" / "quantization.md", help="markdown report to write")
    add("--from-json", type=Path, help="only rewrite --docs from the results file of an earlier run")
    add("--worker", help=argparse.SUPPRESS)
    add("--reference", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    kernels = json.loads(args.kernels_json.read_text()) if args.kernels_json.is_file() else None
    if args.from_json:
        args.docs.write_text(render(json.loads(args.from_json.read_text()), kernels))
        print(f"wrote {args.docs}")
        return
    results = run_all(args)
    header = ["mode", "weights MB", "load peak MB", "decode tok/s", "batch tok/s", "perplexity", "top-1"]
    rows = [
        [
            r["mode"],
            r["weight_bytes"] / 1e6,
            r["load_peak_bytes"] / 1e6,
            r.get("decode_tok_s", "-"),
            r.get("batch_tok_s", "-"),
            r["perplexity"],
            r.get("top1_agreement", "-"),
        ]
        for r in results
    ]
    print_table("weight quantization", header, rows)
    payload = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    write_json(args.json, payload)
    args.docs.write_text(render(payload, kernels))
    print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
