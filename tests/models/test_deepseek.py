"""DeepSeek-V2/V3: seekserve's greedy tokens and logits equal transformers' in float32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from factories import (
    deepseek_v2_config,
    deepseek_v3_config,
    greedy,
    hf_greedy,
    hf_logits,
    make_model_dir,
    make_request,
    make_tokenizer,
    prefill_logits,
    random_prompts,
    rewrite_weights,
)
from seekserve import LLM
from seekserve.engine.detokenizer import IncrementalDetokenizer
from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.models.deepseek import DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, is_moe_layer
from seekserve.models.moe import DeepseekMoE

PROMPTS = random_prompts(4, lengths=[3, 17, 40, 9])
MAX_TOKENS = 12
_SHARED = random_prompts(1, lengths=[24], seed=7)[0]
PREFIXED = [_SHARED + p for p in random_prompts(3, lengths=[5, 11, 2], seed=8)]
"""Prompts sharing a 24-token prefix, for the prefix cache."""


@pytest.fixture(scope="module", params=["v3", "v2"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    name = "deepseek_v3_dir" if request.param == "v3" else "deepseek_v2_dir"
    path: Path = request.getfixturevalue(name)
    return path


@pytest.fixture(scope="module")
def expected(model_dir: Path) -> list[list[int]]:
    return hf_greedy(model_dir, PROMPTS + PREFIXED, MAX_TOKENS)


def generate(model_dir: Path, prompts: list[list[int]], **options: Any) -> tuple[LLM, list[list[int]]]:
    options = {"dtype": "float32", "num_kv_blocks": 64, "block_size": 4, "max_model_len": 128, **options}
    llm = LLM(str(model_dir), **options)
    outs = llm.generate(prompts, greedy(MAX_TOKENS))
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_kv_blocks, "blocks leaked"
    return llm, [o.outputs[0].token_ids for o in outs]


def test_batch_of_different_lengths_matches_transformers(model_dir: Path, expected: list[list[int]]) -> None:
    _, tokens = generate(model_dir, PROMPTS, enable_prefix_caching=False)
    assert tokens == expected[: len(PROMPTS)]


def test_prefix_cache_hits_match_transformers(model_dir: Path, expected: list[list[int]]) -> None:
    first_round = [*PROMPTS, PREFIXED[0]]
    llm, first = generate(model_dir, first_round)
    rest = llm.generate(PREFIXED[1:], greedy(MAX_TOKENS))
    assert first + [o.outputs[0].token_ids for o in rest] == expected
    assert llm.engine.block_manager.prefix_cache_hits == 2 * 24
    assert all(o.metrics is not None and o.metrics.num_cached_tokens == 24 for o in rest)


def test_chunked_prefill_matches_transformers(model_dir: Path, expected: list[list[int]]) -> None:
    _, tokens = generate(model_dir, PROMPTS + PREFIXED, max_num_batched_tokens=6, max_num_seqs=4)
    assert tokens == expected


def test_preemption_matches_transformers(model_dir: Path, expected: list[list[int]]) -> None:
    # 16 blocks of 4 hold 64 tokens: one sequence of max_model_len, far from all seven at once.
    llm, tokens = generate(model_dir, PROMPTS + PREFIXED, num_kv_blocks=16, max_model_len=64)
    assert llm.engine.scheduler.num_preemptions > 0
    assert tokens == expected


def test_prefill_logits_match_transformers(model_dir: Path) -> None:
    ids = PROMPTS[2]
    torch.testing.assert_close(prefill_logits(model_dir, ids), hf_logits(model_dir, ids), rtol=0, atol=1e-4)


def test_bfloat16_logits_match_transformers_bfloat16(deepseek_v3_dir: Path) -> None:
    # Routers and their bias stay float32 as in transformers, so the same experts are chosen.
    ids = PROMPTS[2]
    reference = hf_logits(deepseek_v3_dir, ids, torch.bfloat16)
    torch.testing.assert_close(prefill_logits(deepseek_v3_dir, ids, "bfloat16"), reference, rtol=0, atol=0.02)


def test_kv_cache_holds_only_the_latent_row(deepseek_v3_dir: Path) -> None:
    cfg = deepseek_v3_config()
    llm = LLM(str(deepseek_v3_dir), dtype="float32", num_kv_blocks=32, block_size=4, max_model_len=64)
    engine = llm.engine
    per_token = (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * cfg.num_hidden_layers * 4
    assert engine.kv_bytes_per_token == per_token
    caches = engine.runner.kv_caches
    allocated = sum(t.numel() * t.element_size() for layer in caches for t in layer)
    assert allocated == per_token * engine.kv_cache_tokens
    assert [tuple(t.shape) for t in caches[0]] == [(32 * 4, cfg.kv_lora_rank + cfg.qk_rope_head_dim)]


@pytest.mark.parametrize(
    "config",
    [
        deepseek_v3_config(
            rope_interleave=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            n_group=1,
            topk_group=1,
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            first_k_dense_replace=2,
        ),
        deepseek_v2_config(
            q_lora_rank=24,
            topk_method="group_limited_greedy",
            n_group=3,
            topk_group=2,
            attention_bias=True,
            first_k_dense_replace=0,
            routed_scaling_factor=2.0,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "original_max_position_embeddings": 64,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
            },
        ),
    ],
    ids=["v3-halves-rope-ungrouped", "v2-group-limited-bias-yarn"],
)
def test_variants_match_transformers(tmp_path: Path, config: Any) -> None:
    model_dir = make_model_dir(tmp_path, config)
    _, tokens = generate(model_dir, PROMPTS)
    assert tokens == hf_greedy(model_dir, PROMPTS, MAX_TOKENS)


def _add_mtp_layer(model_dir: Path, num_layers: int) -> None:
    """Append an MTP layer as DeepSeek-V3 ships it: a decoder layer numbered num_layers, plus its heads."""

    def add(tensors: dict[str, torch.Tensor]) -> None:
        last = f"model.layers.{num_layers - 1}."
        for name in [n for n in tensors if n.startswith(last)]:
            tensors[name.replace(last, f"model.layers.{num_layers}.")] = tensors[name].clone()
        hidden = tensors["model.norm.weight"].shape[0]
        mtp = f"model.layers.{num_layers}."
        tensors[mtp + "eh_proj.weight"] = torch.randn(hidden, 2 * hidden)
        for norm in ("enorm", "hnorm", "shared_head.norm"):
            tensors[mtp + norm + ".weight"] = torch.ones(hidden)
        tensors[mtp + "embed_tokens.weight"] = tensors["model.embed_tokens.weight"].clone()
        tensors[mtp + "shared_head.head.weight"] = tensors["lm_head.weight"].clone()

    rewrite_weights(model_dir, add)


def test_mtp_layer_is_skipped_not_taken_for_a_decoder_layer(deepseek_v3_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "with-mtp"
    shutil.copytree(deepseek_v3_dir, model_dir)
    num_layers = deepseek_v3_config().num_hidden_layers
    _add_mtp_layer(model_dir, num_layers)
    ids = PROMPTS[1]
    torch.testing.assert_close(prefill_logits(model_dir, ids), prefill_logits(deepseek_v3_dir, ids))

    config = json.loads((model_dir / "config.json").read_text())
    config["num_nextn_predict_layers"] = 0
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=rf"model\.layers\.{num_layers}\."):
        prefill_logits(model_dir, ids)


def test_missing_expert_weights_are_named(deepseek_v2_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "no-expert"
    shutil.copytree(deepseek_v2_dir, model_dir)
    rewrite_weights(model_dir, lambda t: t.pop("model.layers.1.mlp.experts.3.up_proj.weight"))
    with pytest.raises(ModelLoadError, match=r"model\.layers\.1\.mlp\.experts\.gate_up_proj"):
        prefill_logits(model_dir, [1, 2, 3])


def test_expert_beyond_the_config_is_an_error(deepseek_v2_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "extra-expert"
    shutil.copytree(deepseek_v2_dir, model_dir)

    def add_expert(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.layers.1.mlp.experts.6.down_proj.weight"] = torch.zeros(64, 24)

    rewrite_weights(model_dir, add_expert)
    with pytest.raises(ModelLoadError, match="expert 6 is outside the config's n_routed_experts=6"):
        prefill_logits(model_dir, [1, 2, 3])


def test_moe_layer_placement_follows_first_k_dense_and_frequency() -> None:
    config = deepseek_v3_config(num_hidden_layers=6, first_k_dense_replace=1, moe_layer_freq=2)
    model = DeepseekV3ForCausalLM(config, torch.float32, 64)
    moe = [isinstance(layer.mlp, DeepseekMoE) for layer in model.model.layers]
    assert moe == [False, False, True, False, True, False]
    assert moe == [is_moe_layer(config, i) for i in range(6)]


def test_unsupported_config_values_are_clear_errors() -> None:
    with pytest.raises(UnsupportedModelError, match="hidden_act='gelu'"):
        DeepseekV2ForCausalLM(deepseek_v2_config(hidden_act="gelu"), torch.float32, 64)
    with pytest.raises(ModelLoadError, match="n_group=4 for n_routed_experts=6"):
        DeepseekV2ForCausalLM(
            deepseek_v2_config(topk_method="group_limited_greedy", n_group=4, topk_group=2), torch.float32, 64
        )


def test_r1_thinking_text_reaches_the_output_unchanged(tmp_path: Path) -> None:
    # R1's tokenizer.json declares <think> and </think> as added tokens that are not special, so
    # skip_special_tokens (on by default) keeps them; splitting reasoning from answer is the server's.
    from transformers import AutoTokenizer

    make_tokenizer(tmp_path)
    file = tmp_path / "tokenizer.json"
    spec = json.loads(file.read_text())
    for token in spec["added_tokens"]:
        if token["content"] in ("<think>", "</think>"):
            token["special"] = False
    file.write_text(json.dumps(spec))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "<think>\nThe capital of France is Paris.\n</think>\n\nParis."
    detok = IncrementalDetokenizer(tokenizer, make_request(prompt=tokenizer.encode("Hello")))
    detok.add_tokens(tokenizer.encode(text))
    assert detok.text == text


def test_config_json_as_released_reads_the_same(deepseek_v3_dir: Path, tmp_path: Path) -> None:
    # DeepSeek's own config.json files use the older rope_scaling/"type" keys, name scoring_func and
    # topk_method, and carry remote-code and training fields; they must give the same model.
    model_dir = tmp_path / "released-format"
    shutil.copytree(deepseek_v3_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    config.update(
        scoring_func="sigmoid",
        topk_method="noaux_tc",
        moe_layer_freq=1,
        aux_loss_alpha=0.001,
        seq_aux=True,
        ep_size=1,
        auto_map={"AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
    )
    (model_dir / "config.json").write_text(json.dumps(config))
    ids = PROMPTS[2]
    torch.testing.assert_close(prefill_logits(model_dir, ids), prefill_logits(deepseek_v3_dir, ids))
