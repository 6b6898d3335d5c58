"""Linear weights prepacked for oneDNN on CPU: same results, tied heads copied, memory reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factories import greedy, random_prompts
from seekserve import LLM
from seekserve.layers.modules import Linear, packed_rows


def test_prepacked_linear_computes_what_the_plain_one_does() -> None:
    layer = Linear(64, [48, 16], bias=True, dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    layer.weight.data.copy_(torch.randn(64, 64, generator=gen))
    layer.bias.data.copy_(torch.randn(64, generator=gen))  # type: ignore[union-attr]
    x = torch.randn(5, 64, generator=gen).to(torch.bfloat16)
    plain = layer(x)
    weight = layer.weight.detach().clone()
    if not layer.prepack():
        pytest.skip("this torch build has no oneDNN bfloat16 matmul")
    assert layer.weight.layout != torch.strided
    torch.testing.assert_close(layer(x), plain, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(layer.dense_weight(), weight, atol=0, rtol=0)
    assert not layer.prepack()  # already packed


def test_float32_weights_stay_plain() -> None:
    layer = Linear(8, [8], bias=False, dtype=torch.float32)
    assert not layer.prepack()


def test_engine_with_prepacked_weights_generates_the_same_tokens(qwen2_dir: Path) -> None:
    prompts = random_prompts(3, seed=5)
    options = {"dtype": "bfloat16", "num_kv_blocks": 64, "max_model_len": 128}
    plain = LLM(str(qwen2_dir), cpu_prepack_weights=False, **options)
    packed = LLM(str(qwen2_dir), cpu_prepack_weights=True, **options)
    tokens = [[o.outputs[0].token_ids for o in llm.generate(prompts, greedy(12))] for llm in (plain, packed)]
    assert tokens[0] == tokens[1]
    # Qwen2's head is tied to the embedding, which keeps its plain copy: the packed model holds more.
    vocab, hidden = 384, 64
    assert packed.engine.weight_bytes - plain.engine.weight_bytes == vocab * hidden * 2
    head = packed.engine.runner.greedy_head  # its int8 copy and scales, held on both engines
    greedy_head = head.nbytes if head else 0
    assert greedy_head >= vocab * hidden + 4 * vocab
    assert packed.engine.packed_copy_bytes == vocab * hidden * 2 + greedy_head
    assert plain.engine.packed_copy_bytes == greedy_head


def test_prepacked_matmuls_run_on_few_row_counts() -> None:
    assert [packed_rows(n) for n in (1, 7, 16, 17, 31, 32, 33, 500, 512)] == [
        1,
        7,
        16,
        32,
        32,
        32,
        48,
        512,
        512,
    ]


@pytest.mark.parametrize("rows", [3, 17, 40, 129])
def test_a_padded_prepacked_matmul_gives_each_row_what_the_plain_one_does(rows: int) -> None:
    layer = Linear(64, [96], bias=True, dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(rows)
    layer.weight.data.copy_(torch.randn(96, 64, generator=gen))
    layer.bias.data.copy_(torch.randn(96, generator=gen))  # type: ignore[union-attr]
    x = torch.randn(rows, 64, generator=gen).to(torch.bfloat16)
    plain = layer(x)
    if not layer.prepack():
        pytest.skip("this torch build has no oneDNN bfloat16 matmul")
    packed = layer(x)
    assert packed.shape == (rows, 96) and packed.is_contiguous()
    torch.testing.assert_close(packed, plain, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(layer(x[:1]), packed[:1], atol=0, rtol=0)  # a row does not depend on the rest
