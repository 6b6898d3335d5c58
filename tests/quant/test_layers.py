"""QuantizedLinear, QuantizedExperts and QuantizedEmbedding against their float counterparts."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from factories import relative_error
from seekserve.models.moe import FusedExperts, Routing
from seekserve.quant.apply import Quantizer
from seekserve.quant.base import StackShape
from seekserve.quant.config import QuantConfig
from seekserve.quant.experts import QuantizedExperts
from seekserve.quant.linear import QuantizedEmbedding, QuantizedLinear

BOUND = {"int8": 0.015, "fp8": 0.035, "int4": 0.12}
CPU = torch.device("cpu")


def quantizer(mode: str) -> Quantizer:
    return Quantizer(QuantConfig(mode=mode, max_kernel_rows=4, fp8_storage="fp8"), CPU)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["int8", "int4", "fp8"])
def test_fused_parts_load_in_any_order_and_finish_with_the_last(mode: str) -> None:
    sizes = (64, 32, 32)  # q, k, v
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, 48, generator=gen) for n in sizes]
    bias = [torch.randn(n, generator=gen) for n in sizes]
    layer = QuantizedLinear(
        quantizer(mode).weight(mode, torch.float32, StackShape((), 128, 48, sizes)),
        sizes,
        True,
        torch.float32,
    )
    for i in (2, 0, 1):
        assert not layer.is_loaded
        layer.load_part(i, parts[i])
        layer.load_part(i, bias[i], is_bias=True)
    assert layer.is_loaded
    w, b = torch.cat(parts), torch.cat(bias)
    x = torch.randn(2, 3, 48, generator=gen)
    y = layer(x)
    assert y.shape == (2, 3, 128)
    assert relative_error(y, F.linear(x, w, b)) < BOUND[mode]
    torch.testing.assert_close(y, F.linear(x, layer.dense_weight(), b), rtol=1e-5, atol=1e-5)
    assert [t.shape[-1] for t in layer.split(y)] == list(sizes)


def test_a_part_of_the_wrong_shape_is_refused() -> None:
    layer = QuantizedLinear(
        quantizer("int8").weight("int8", torch.float32, StackShape((), 96, 48, (64, 32))),
        (64, 32),
        False,
        torch.float32,
    )
    with pytest.raises(ValueError, match=r"shape \(32, 40\) does not fit \(32, 48\)"):
        layer.load_part(1, torch.zeros(32, 40))


@pytest.mark.parametrize("mode", ["int8", "int4", "fp8"])
def test_quantized_experts_route_like_the_float_experts_on_their_weights(mode: str) -> None:
    num_experts, hidden, inter = 4, 64, 32
    gen = torch.Generator().manual_seed(1)
    dense = FusedExperts(num_experts, hidden, inter, torch.float32)
    quantized = QuantizedExperts(dense, partial(quantizer(mode).weight, mode, torch.float32))
    weights = {
        (e, p): torch.randn(
            hidden if p == "down_proj" else inter, inter if p == "down_proj" else hidden, generator=gen
        )
        for e in range(num_experts)
        for p in ("gate_proj", "up_proj", "down_proj")
    }
    for (e, p), w in reversed(list(weights.items())):
        assert quantized.load_expert(e, p, w) == dense.load_expert(e, p, w)
    routing = Routing(torch.rand(10, 2, generator=gen), torch.randint(0, num_experts, (10, 2), generator=gen))
    x = torch.randn(10, hidden, generator=gen)
    assert relative_error(quantized(x, routing), dense(x, routing)) < 2 * BOUND[mode]
    for e in range(num_experts):
        dense.gate_up_proj.data[e] = quantized.gate_up_proj.dequantize((e,))
        dense.down_proj.data[e] = quantized.down_proj.dequantize((e,))
    torch.testing.assert_close(quantized(x, routing), dense(x, routing), rtol=1e-4, atol=1e-4)
    assert quantized.checkpoint_params() == dense.checkpoint_params()


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_a_tied_embedding_reads_its_rows_from_the_quantized_head(mode: str) -> None:
    table = torch.randn(300, 32)
    head = QuantizedLinear(
        quantizer(mode).weight(mode, torch.bfloat16, StackShape((), 300, 32, (300,))),
        (300,),
        False,
        torch.bfloat16,
    )
    head.load_dense(table)
    embedding = QuantizedEmbedding(head.qweight)
    ids = torch.tensor([[0, 299, 5], [5, 17, 1]])
    rows = embedding(ids)
    assert rows.shape == (2, 3, 32) and rows.dtype == torch.bfloat16
    assert torch.equal(rows.view(6, 32), head.dense_weight()[ids.flatten()])
    assert relative_error(rows.view(6, 32), table[ids.flatten()]) < BOUND[mode]
