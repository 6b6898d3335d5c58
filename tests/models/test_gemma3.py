"""Gemma 3: seekserve's greedy tokens equal transformers' in float32, across both attention kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import gemma3_config, greedy, hf_greedy, make_model_dir, random_prompts
from seekserve import LLM
from seekserve.errors import UnsupportedModelError

# Window 8: every prompt but the first is longer than it, so sliding layers drop keys.
PROMPTS = random_prompts(4, lengths=[5, 19, 40, 27], seed=3)


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("gemma3"), gemma3_config())


@pytest.fixture(scope="module")
def expected(gemma3_dir: Path) -> list[list[int]]:
    return hf_greedy(gemma3_dir, PROMPTS, 14)


def run(model_dir: Path, prompts: list[list[int]], **options: object) -> list[list[int]]:
    llm = LLM(str(model_dir), dtype="float32", num_kv_blocks=160, block_size=4, **options)
    outs = llm.generate(prompts, greedy(14))
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_kv_blocks
    return [o.outputs[0].token_ids for o in outs]


def test_matches_transformers(gemma3_dir: Path, expected: list[list[int]]) -> None:
    assert run(gemma3_dir, PROMPTS) == expected


def test_chunked_prefill(gemma3_dir: Path, expected: list[list[int]]) -> None:
    # 6-token steps: prompts are prefilled in chunks that straddle the window and the blocks.
    assert run(gemma3_dir, PROMPTS, max_num_seqs=4, max_num_batched_tokens=6) == expected


def test_prefix_cache_hits_reproduce_tokens(gemma3_dir: Path, expected: list[list[int]]) -> None:
    llm = LLM(str(gemma3_dir), dtype="float32", num_kv_blocks=160, block_size=4, max_num_seqs=2)
    first = [o.outputs[0].token_ids for o in llm.generate(PROMPTS, greedy(14))]
    again = [o.outputs[0].token_ids for o in llm.generate(PROMPTS[::-1], greedy(14))]
    assert first == expected
    assert again == expected[::-1]
    assert llm.engine.stats().prefix_cache_hits > 0


def test_unsupported_variant_is_rejected(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path, gemma3_config(num_hidden_layers=2, use_bidirectional_attention=True))
    with pytest.raises(UnsupportedModelError, match="bidirectional"):
        LLM(str(model_dir), dtype="float32", num_kv_blocks=64)
