"""Run as a script: load a model with a quantization mode and print the peak anonymous memory the
load added (sampled every half millisecond), as JSON. Used by test_memory.py in a fresh process."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

import torch

from seekserve.engine.config import ModelConfig
from seekserve.models.loader import load_model

PAGE = os.sysconf("SC_PAGE_SIZE")


def anonymous_bytes() -> int:
    """Resident memory not backed by files (memory-mapped checkpoint pages are excluded)."""
    with open("/proc/self/statm") as f:
        _, resident, shared = (int(v) for v in f.read().split()[:3])
    return (resident - shared) * PAGE


def main(model_dir: str, warmup_dir: str, mode: str) -> None:
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    load_model(ModelConfig(model=warmup_dir, dtype="float32", quantization=mode), cpu)  # imports, caches
    gc.collect()
    base = anonymous_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], anonymous_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    loaded = load_model(ModelConfig(model=model_dir, dtype="float32", quantization=mode), cpu)
    done.set()
    sampler.join()
    peak[0] = max(peak[0], anonymous_bytes())
    print(json.dumps({"peak_bytes": peak[0] - base, "weight_bytes": loaded.weight_bytes}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
