from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from factories import deepseek_v2_config, deepseek_v3_config, llama_config, make_model_dir, qwen2_config

FAMILIES: dict[str, Callable[..., Any]] = {
    "llama": llama_config,
    "qwen2": qwen2_config,
    "deepseek_v3": deepseek_v3_config,
    "deepseek_v2": deepseek_v2_config,
}

MODES = ("fp8", "int8", "int4")


@pytest.fixture(scope="session")
def realistic_dirs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """family -> a tiny random model initialised like released models (std 0.02, untied head), made
    once per session. Its predictions have margins like a trained model's, unlike the std-0.15
    fixtures whose near-uniform logits flip under any perturbation (bfloat16 alone changes 5 %)."""
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            config = FAMILIES[family](tie_word_embeddings=False)
            made[family] = make_model_dir(tmp_path_factory.mktemp(f"real-{family}"), config, init_std=0.02)
        return made[family]

    return get


@pytest.fixture(scope="session")
def family_dirs(
    llama_dir: Path, qwen2_dir: Path, deepseek_v3_dir: Path, deepseek_v2_dir: Path
) -> dict[str, Path]:
    """The suite's std-0.15 tiny models by family (Qwen2 ties its embeddings)."""
    return {
        "llama": llama_dir,
        "qwen2": qwen2_dir,
        "deepseek_v3": deepseek_v3_dir,
        "deepseek_v2": deepseek_v2_dir,
    }
