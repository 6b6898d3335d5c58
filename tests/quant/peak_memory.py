"""Run as a script: load a model with a quantization mode and print, as JSON, the peak anonymous
memory the load added. Used by test_memory.py, one fresh process per load."""

from __future__ import annotations

import gc
import json
import sys

import torch

from seekserve.engine.config import ModelConfig
from seekserve.engine.model_loader import load_model
from seekserve.memory import PeakMemory


def main(model_dir: str, warmup_dir: str, mode: str) -> None:
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    load_model(ModelConfig(model=warmup_dir, dtype="float32", quantization=mode), cpu)  # imports, caches
    gc.collect()
    with PeakMemory() as peak:
        loaded = load_model(ModelConfig(model=model_dir, dtype="float32", quantization=mode), cpu)
    print(json.dumps({"peak_bytes": peak.peak_bytes, "weight_bytes": loaded.weight_bytes}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
