from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from factories import (
    deepseek_v2_config,
    deepseek_v3_config,
    llama_config,
    make_model_dir,
    qwen2_config,
    rewrite_weights,
)
from server.live import LiveServer, engine_loader, start_server

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def seekserve_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private SEEKSERVE_HOME for the test session: caches never touch the user's."""
    home = tmp_path_factory.mktemp("seekserve-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEEKSERVE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random Llama: GQA (4 heads, 2 KV heads), untied embeddings."""
    return make_model_dir(tmp_path_factory.mktemp("llama"), llama_config())


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random Qwen2: attention bias, GQA, tied embeddings."""
    return make_model_dir(tmp_path_factory.mktemp("qwen2"), qwen2_config())


@pytest.fixture(scope="session")
def deepseek_v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random DeepSeek-V3 (see factories.deepseek_v3_config) with a non-zero routing bias."""
    path = make_model_dir(tmp_path_factory.mktemp("deepseek_v3"), deepseek_v3_config())
    gen = torch.Generator().manual_seed(1)

    def randomise_bias(tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            if name.endswith("e_score_correction_bias"):
                t.normal_(0.0, 0.3, generator=gen)

    rewrite_weights(path, randomise_bias)
    return path


@pytest.fixture(scope="session")
def deepseek_v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random DeepSeek-V2-Lite (see factories.deepseek_v2_config)."""
    return make_model_dir(tmp_path_factory.mktemp("deepseek_v2"), deepseek_v2_config())


@pytest.fixture(scope="session")
def fuzz_server(llama_dir: Path) -> Iterator[LiveServer]:
    """The tiny Llama behind a server with a short context and a small batch, so every request a schema
    fuzzer generates is cheap (tests/server/test_fuzz.py, tests/gateway/test_openapi.py)."""
    live = start_server(engine_loader(llama_dir, max_model_len=24, max_num_seqs=8))
    yield live
    live.stop()
