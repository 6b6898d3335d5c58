"""The CUDA matmuls of quantized weights against their dequantized weights. Skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factories import fill_weight, greedy, random_prompts, relative_error
from seekserve import LLM
from seekserve.quant import cuda
from seekserve.quant.base import StackShape
from seekserve.quant.fp8 import Fp8Weight
from seekserve.quant.int4 import Int4Weight
from seekserve.quant.int8 import Int8Weight

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

BOUND = {"int8": 0.015, "fp8": 0.035, "int4": 0.12}


def weights(device: torch.device) -> dict[str, object]:
    n, k = 256, 384
    with torch.device(device):
        return {
            "int8": Int8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 4),
            "int8-dynamic": Int8Weight(
                StackShape((), n, k, (n,)), torch.bfloat16, 4, dynamic_activations=True
            ),
            "int4": Int4Weight(StackShape((), n, k, (n,)), torch.bfloat16, 4, group=32),
            "fp8-block": Fp8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0, block=128, keep_fp8=True),
            "fp8-channel": Fp8Weight(StackShape((), n, k, (n,)), torch.bfloat16, 0, block=0, keep_fp8=True),
        }


@pytest.mark.parametrize("rows", [1, 4, 32])
def test_cuda_matmuls_match_the_dequantized_weights(rows: int) -> None:
    device = torch.device("cuda")
    w = torch.randn(256, 384, device=device)
    x = torch.randn(rows, 384, device=device, dtype=torch.bfloat16)
    for name, q in weights(device).items():
        fill_weight(q, w)
        y = q.matmul(x)  # type: ignore[attr-defined]
        assert y.device.type == "cuda" and y.dtype == torch.bfloat16, name
        mode = name.split("-")[0]
        assert relative_error(y, x.float() @ w.t()) < BOUND[mode] + 0.02, name  # activations in FP8/int8 too
        ref = x.float() @ q.dequantize().float().t()  # type: ignore[attr-defined]
        assert relative_error(y, ref) < (0.05 if mode == "fp8" or "dynamic" in name else 0.01), name


def test_per_channel_fp8_runs_on_scaled_mm_where_the_gpu_has_fp8() -> None:
    device = torch.device("cuda")
    if not cuda.has_fp8_matmul(device):
        pytest.skip("FP8 matmuls need compute capability 8.9 or later")
    with torch.device(device):
        q = fill_weight(
            Fp8Weight(StackShape((), 256, 384, (256,)), torch.bfloat16, 0, block=0, keep_fp8=True),
            torch.randn(256, 384),
        )
    x = torch.randn(8, 384, device=device, dtype=torch.bfloat16)
    y = cuda.fp8_matmul(x, q.values, q.scale_inv, 1)
    assert y is not None, "torch._scaled_mm with row-wise scales failed its check on this GPU"
    assert relative_error(y, x.float() @ q.dequantize().float().t()) < 0.05


@pytest.mark.parametrize("mode", ["fp8", "int8", "int4"])
def test_a_quantized_model_generates_on_cuda(llama_dir: Path, mode: str) -> None:
    prompts = random_prompts(2, seed=7)
    llm = LLM(
        str(llama_dir),
        device="cuda",
        dtype="bfloat16",
        quantization=mode,
        num_kv_blocks=32,
        max_model_len=128,
    )
    outs = llm.generate(prompts, greedy(8))
    assert all(len(o.outputs[0].token_ids) == 8 for o in outs)
    assert llm.engine.weight_bytes_saved > 0
