from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factories import llama_config, make_model_dir, qwen2_config

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random Llama: GQA (4 heads, 2 KV heads), untied embeddings."""
    return make_model_dir(tmp_path_factory.mktemp("llama"), llama_config())


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random Qwen2: attention bias, GQA, tied embeddings."""
    return make_model_dir(tmp_path_factory.mktemp("qwen2"), qwen2_config())
