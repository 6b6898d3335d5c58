"""The whole engine without the CPU kernels (turned off, or a build that fails): the torch path
serves the same greedy tokens as the kernels."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import WarningRecords, gemma3_config, greedy, make_model_dir, random_prompts
from seekserve import LLM
from seekserve.layers import cpu_kernels as cpu_kernels_module
from seekserve.layers.cpu_kernels import KernelSet, cpu_kernels, kernel_status
from seekserve.layers.kernel_build import find_compiler

PROMPTS = random_prompts(3, lengths=[9, 23, 4], seed=3)
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("gemma3"), gemma3_config())


@pytest.fixture
def reload_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """`cpu_kernels()` is loaded anew after each setting the test makes, and once more after it."""
    cpu_kernels.cache_clear()
    try:
        yield monkeypatch
    finally:
        monkeypatch.undo()
        cpu_kernels.cache_clear()


def generate(model_dir: Path) -> list[list[int]]:
    cpu_kernels.cache_clear()
    llm = LLM(str(model_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128)
    return [out.outputs[0].token_ids for out in llm.generate(PROMPTS, greedy(MAX_TOKENS))]


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler: the kernel path cannot be built")
@pytest.mark.parametrize("model", ["llama", "gemma3"])
def test_turned_off_the_engine_gives_the_kernel_paths_tokens(
    reload_kernels: pytest.MonkeyPatch, model: str, request: pytest.FixtureRequest
) -> None:
    model_dir = request.getfixturevalue(f"{model}_dir")
    reload_kernels.setenv("SEEKSERVE_CPU_KERNELS", "1")
    with_kernels = generate(model_dir)
    assert kernel_status().kernel_set != KernelSet.OFF
    reload_kernels.setenv("SEEKSERVE_CPU_KERNELS", "0")
    without = generate(model_dir)
    assert cpu_kernels() is None
    assert without == with_kernels
    assert all(len(tokens) == MAX_TOKENS for tokens in without)


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler: the kernel path cannot be built")
def test_a_failing_build_serves_the_same_tokens_after_one_warning(
    reload_kernels: pytest.MonkeyPatch, llama_dir: Path, tmp_path: Path
) -> None:
    with_kernels = generate(llama_dir)
    broken = tmp_path / "broken-c++"
    broken.write_text("#!/bin/sh\necho 'internal compiler error' >&2\nexit 1\n")
    broken.chmod(0o755)
    reload_kernels.setenv("CXX", str(broken))
    reload_kernels.setenv("SEEKSERVE_HOME", str(tmp_path / "home"))  # no library built there yet
    handler = WarningRecords()
    logger = logging.getLogger(cpu_kernels_module.__name__)
    logger.addHandler(handler)
    try:
        assert generate(llama_dir) == with_kernels
    finally:
        logger.removeHandler(handler)
    assert kernel_status().kernel_set == KernelSet.OFF
    assert [r.getMessage().split(";")[0] for r in handler.records] == [
        f"CPU kernels: building them with {broken} failed (exit status 1)"
    ]
