"""GGUF dequantization: seekserve's torch kernels give exactly gguf's reference values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize as reference
from gguf.quants import quantize

from seekserve.errors import ModelLoadError
from seekserve.models.gguf.dequant import SUPPORTED_TYPES, dequantize

Q = GGMLQuantizationType
CPU = torch.device("cpu")


def random_blocks(qtype: GGMLQuantizationType, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random bytes in `qtype`'s block layout, with finite float16 scales: [rows, row_bytes] uint8."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // block_size, type_size), dtype=np.uint8)
    scale_offsets = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,), Q.Q4_1: (0, 2), Q.Q2_K: (80, 82)}
    for offset in scale_offsets.get(qtype, (0,)):
        scales = rng.uniform(-0.02, 0.02, size=len(blocks)).astype(np.float16)
        blocks[:, offset : offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0, Q.Q5_0, Q.Q4_K, Q.Q5_K, Q.Q6_K])
def test_kernels_are_bit_exact(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, rows=6, cols=512)
    got = dequantize(raw.reshape(-1), qtype, (6, 512), torch.float32, CPU)
    expected = torch.from_numpy(reference(raw, qtype))
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("qtype", "atol"), [(Q.Q8_0, 0.002), (Q.Q4_0, 0.04), (Q.Q5_0, 0.02)])
def test_quantized_weights_round_trip(qtype: GGMLQuantizationType, atol: float) -> None:
    weights = np.random.default_rng(1).normal(0, 0.1, size=(8, 64)).astype(np.float32)
    raw = quantize(weights, qtype)
    got = dequantize(raw.reshape(-1), qtype, (8, 64), torch.float32, CPU)
    assert torch.equal(got, torch.from_numpy(reference(raw, qtype)))
    assert torch.allclose(got, torch.from_numpy(weights), atol=atol)


@pytest.mark.parametrize(
    ("qtype", "dtype"), [(Q.F32, torch.float32), (Q.F16, torch.float16), (Q.BF16, torch.bfloat16)]
)
def test_float_types_cast_to_model_dtype(qtype: GGMLQuantizationType, dtype: torch.dtype) -> None:
    values = torch.randn(3, 5).to(dtype)
    raw = values.view(torch.uint8).numpy().reshape(-1)
    got = dequantize(raw, qtype, (3, 5), torch.bfloat16, CPU)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, values.to(torch.bfloat16))


def test_other_types_use_gguf_reference() -> None:
    assert Q.Q4_1 not in SUPPORTED_TYPES
    raw = random_blocks(Q.Q4_1, rows=2, cols=64)
    got = dequantize(raw.reshape(-1), Q.Q4_1, (2, 64), torch.float32, CPU)
    assert torch.equal(got, torch.from_numpy(reference(raw, Q.Q4_1)))


def test_type_without_dequantizer_is_a_clear_error() -> None:
    raw = np.zeros(GGML_QUANT_SIZES[Q.Q8_1][1], dtype=np.uint8)
    with pytest.raises(ModelLoadError, match="Q8_1 cannot be dequantized"):
        dequantize(raw, Q.Q8_1, (32,), torch.float32, CPU)
