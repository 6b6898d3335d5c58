"""Helpers shared by the benchmark scripts: anchor workloads, random models, tables and JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ANCHORS = REPO.parent / "shared" / "anchors"
CACHE = Path(os.environ.get("SEEKSERVE_BENCH_CACHE", "/tmp/seekserve-bench"))

QWEN2_0_5B_SHAPE = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rms_norm_eps=1e-6,
)


def load_workloads(anchors: Path) -> Any:
    """The anchors' `workloads` module (fixed token-id workloads shared with the peer engines)."""
    path = anchors / "workloads.py"
    if not path.is_file():
        sys.exit(f"no workloads.py in {anchors}: pass --anchors DIR (the shared anchors folder)")
    spec = importlib.util.spec_from_file_location("workloads", path)
    assert spec and spec.loader, "cannot import workloads.py"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_model_dir(name: str, config_cls: str, shape: dict[str, Any], dtype: str = "bfloat16") -> Path:
    """A random model of the given shape saved once under the bench cache, with a tokenizer."""
    path = CACHE / name
    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        return path
    import torch
    import transformers

    sys.path.insert(0, str(REPO / "tests"))
    from factories import make_tokenizer

    config = getattr(transformers, config_cls)(**shape)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    make_tokenizer(path)
    return path


def parse_engine_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE engine options; values are read as JSON where they parse (numbers, true/false)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            sys.exit(f"--engine {pair!r}: write KEY=VALUE, e.g. --engine max_num_seqs=128")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    import torch

    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def read_bandwidth_gbs(megabytes: int = 512, rounds: int = 5) -> float:
    """Memory read speed of one thread (median GB/s of summing a large array): a single-stream
    decode is bound by it, and on a shared host it moves with the neighbours' load."""
    import numpy as np

    a = np.ones(megabytes * 2**20 // 8)
    a.sum()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        a.sum()
        times.append(time.perf_counter() - t)
    return a.nbytes / 1e9 / median(times)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(str(h), justify="right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    Console().print(table)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
