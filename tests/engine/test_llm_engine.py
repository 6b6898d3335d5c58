"""End-to-end engine behaviour on a tiny random Llama: every schedule gives transformers' tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from factories import greedy, hf_greedy, random_prompts, subprocess_env
from seekserve import LLM, SamplingParams
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.model_runner import ONEDNN_CACHE_ENTRIES
from seekserve.errors import ConfigError, InvalidRequestError, PromptTooLongError

PROMPTS = random_prompts(5, lengths=[30, 7, 41, 19, 33], seed=1)
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def expected(llama_dir: Path) -> list[list[int]]:
    return hf_greedy(llama_dir, PROMPTS, MAX_TOKENS)


def generate(
    model_dir: Path, prompts: list[list[int]] = PROMPTS, **options: Any
) -> tuple[LLM, list[list[int]]]:
    options = {"dtype": "float32", "num_kv_blocks": 64, "block_size": 4, "max_model_len": 128, **options}
    llm = LLM(str(model_dir), **options)
    outs = llm.generate(prompts, greedy(MAX_TOKENS))
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_kv_blocks, "blocks leaked"
    assert not llm.engine.has_unfinished_requests()
    return llm, [o.outputs[0].token_ids for o in outs]


@pytest.mark.parametrize("scheduling", ["continuous", "static"])
@pytest.mark.parametrize("prefix_caching", [True, False])
def test_scheduling_modes_match_transformers(
    llama_dir: Path, expected: list[list[int]], scheduling: str, prefix_caching: bool
) -> None:
    _, tokens = generate(llama_dir, scheduling=scheduling, enable_prefix_caching=prefix_caching)
    assert tokens == expected


def test_chunked_prefill_with_budget_smaller_than_prompts(llama_dir: Path, expected: list[list[int]]) -> None:
    _, tokens = generate(llama_dir, max_num_batched_tokens=6, max_num_seqs=4)
    assert tokens == expected


def test_unchunked_prefill_matches(llama_dir: Path, expected: list[list[int]]) -> None:
    _, tokens = generate(llama_dir, enable_chunked_prefill=False, max_num_batched_tokens=8, max_num_seqs=8)
    assert tokens == expected


def test_preemption_under_a_tiny_cache(llama_dir: Path, expected: list[list[int]]) -> None:
    # 16 blocks of 4 hold 64 tokens: one sequence of max_model_len, far from all five at once.
    llm, tokens = generate(llama_dir, num_kv_blocks=16, max_model_len=64)
    assert llm.engine.scheduler.num_preemptions > 0
    assert tokens == expected


def test_prefix_cache_hits_on_shared_prefixes(llama_dir: Path) -> None:
    shared = random_prompts(1, lengths=[24], seed=7)[0]
    prompts = [[*shared, 11, 12, 13], [*shared, 21, 22], [*shared, 31]]
    reference = hf_greedy(llama_dir, prompts, MAX_TOKENS)
    llm = LLM(str(llama_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128)
    first = llm.generate(prompts[:1], greedy(MAX_TOKENS))
    rest = llm.generate(prompts[1:], greedy(MAX_TOKENS))
    bm = llm.engine.block_manager
    assert bm.prefix_cache_hits == 2 * 24
    assert [o.outputs[0].token_ids for o in first + rest] == reference
    assert rest[0].metrics is not None and rest[0].metrics.num_cached_tokens == 24


def test_abort_mid_generation_frees_blocks_at_once(llama_dir: Path) -> None:
    engine = LLMEngine.from_options(
        model=str(llama_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128
    )
    engine.add_request("a", PROMPTS[0], greedy(100))
    engine.add_request("b", PROMPTS[1], greedy(100))
    for _ in range(3):
        engine.step()
    assert engine.block_manager.num_free_blocks < 64
    out = engine.abort("a")
    assert out is not None and out.finished and out.outputs[0].finish_reason == "abort"
    assert len(out.outputs[0].token_ids) == 3  # one token from the prefill step, one per decode
    engine.abort("b")
    assert engine.block_manager.num_free_blocks == 64
    assert not engine.has_unfinished_requests()
    assert engine.abort("unknown") is None


@pytest.mark.parametrize(
    ("prompt", "params", "error", "needle"),
    [
        ([], greedy(4), InvalidRequestError, "empty"),
        (list(range(10, 200)), greedy(4), PromptTooLongError, "190 tokens"),
        ([1, 2, 999999], greedy(4), InvalidRequestError, "outside the vocabulary"),
    ],
)
def test_bad_prompts_fail_clearly_and_others_keep_running(
    llama_dir: Path,
    expected: list[list[int]],
    prompt: list[int],
    params: SamplingParams,
    error: type,
    needle: str,
) -> None:
    engine = LLMEngine.from_options(
        model=str(llama_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128
    )
    engine.add_request("good", PROMPTS[0], greedy(MAX_TOKENS))
    engine.step()
    with pytest.raises(error, match=needle):
        engine.add_request("bad", prompt, params)
    outputs = []
    while engine.has_unfinished_requests():
        outputs += engine.step()
    assert outputs[-1].outputs[0].token_ids == expected[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens=0 is invalid"),
        ({"temperature": -0.5}, "temperature=-0.5 is invalid"),
        ({"top_p": 0.0}, r"top_p=0.0 is invalid: it must be in \(0, 1\]"),
        ({"top_p": 1.5}, "top_p=1.5 is invalid"),
        ({"logprobs": 21}, "logprobs=21 is invalid"),
    ],
)
def test_bad_sampling_params_are_clear_errors(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle):
        SamplingParams(**kwargs)


def test_duplicate_request_id_is_refused(llama_dir: Path) -> None:
    engine = LLMEngine.from_options(model=str(llama_dir), dtype="float32", num_kv_blocks=64)
    engine.add_request("x", [1, 2, 3], greedy(2))
    with pytest.raises(InvalidRequestError, match="already in use"):
        engine.add_request("x", [1, 2, 3], greedy(2))


def test_cache_too_small_for_one_sequence_is_refused(llama_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds 32 tokens .* max_model_len=512"):
        LLM(str(llama_dir), num_kv_blocks=2, block_size=16)


def test_unknown_engine_option_is_refused(llama_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown engine option.*max_batch"):
        LLM(str(llama_dir), max_batch=4)


def test_max_tokens_and_context_limit_finish_with_length(llama_dir: Path) -> None:
    llm = LLM(str(llama_dir), dtype="float32", num_kv_blocks=64, max_model_len=40)
    out = llm.generate([PROMPTS[0], PROMPTS[1]], greedy(20))
    assert [len(o.outputs[0].token_ids) for o in out] == [10, 20]  # 30-token prompt stops at 40 in all
    assert [o.outputs[0].finish_reason for o in out] == ["length", "length"]


def test_n_completions_share_the_prompt(llama_dir: Path, expected: list[list[int]]) -> None:
    llm = LLM(str(llama_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128)
    out = llm.generate(
        PROMPTS[0], SamplingParams(n=3, temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    )
    assert [c.index for c in out[0].outputs] == [0, 1, 2]
    assert all(c.token_ids == expected[0] for c in out[0].outputs)
    assert llm.engine.block_manager.num_free_blocks == 64


def test_a_cpu_engine_bounds_the_onednn_caches_unless_the_environment_sets_them(llama_dir: Path) -> None:
    """oneDNN reads both capacities once, when it first runs: the engine sets them before its model loads."""
    code = (
        "import os, sys; from seekserve import LLM; LLM(sys.argv[1], num_kv_blocks=32); "
        "print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
    )
    names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    env = {k: v for k, v in subprocess_env().items() if k not in names}
    env["SEEKSERVE_CPU_KERNELS"] = "0"
    argv = [sys.executable, "-c", code, str(llama_dir)]
    default = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert default.stdout.split() == [str(ONEDNN_CACHE_ENTRIES)] * 2, default.stderr[-2000:]
    chosen = subprocess.run(argv, env={**env, "LRU_CACHE_CAPACITY": "512"}, capture_output=True, text=True)
    assert chosen.stdout.split() == [str(ONEDNN_CACHE_ENTRIES), "512"], chosen.stderr[-2000:]
