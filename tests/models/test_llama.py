"""Llama and Qwen2: seekserve's greedy tokens equal transformers' in float32."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import greedy, hf_greedy, llama_config, make_model_dir, qwen2_config, random_prompts
from seekserve import LLM

PROMPTS = random_prompts(4, lengths=[3, 17, 40, 9])


def assert_matches_transformers(model_dir: Path, max_tokens: int = 12, **options: object) -> None:
    llm = LLM(str(model_dir), dtype="float32", num_kv_blocks=64, **options)
    outs = llm.generate(PROMPTS, greedy(max_tokens))
    expected = hf_greedy(model_dir, PROMPTS, max_tokens)
    assert [o.outputs[0].token_ids for o in outs] == expected
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_kv_blocks


def test_llama_gqa_untied(llama_dir: Path) -> None:
    assert_matches_transformers(llama_dir)


def test_qwen2_bias_tied(qwen2_dir: Path) -> None:
    assert_matches_transformers(qwen2_dir)


@pytest.mark.parametrize(
    "config",
    [
        llama_config(tie_word_embeddings=True, num_key_value_heads=4, attention_bias=True),
        llama_config(
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            num_key_value_heads=1,
        ),
        qwen2_config(tie_word_embeddings=False, num_key_value_heads=1, head_dim=32),
    ],
    ids=["llama-mha-tied-bias", "llama3-rope-mqa", "qwen2-untied-headdim"],
)
def test_variants(tmp_path: Path, config: object) -> None:
    assert_matches_transformers(make_model_dir(tmp_path, config))
