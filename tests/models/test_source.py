"""Resolving `model`: local directories and GGUF files, hub ids (offline: the cache, or a clear error)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import subprocess_env
from seekserve import LLM, SamplingParams
from seekserve.env import Environment
from seekserve.errors import ModelLoadError
from seekserve.models import hub
from seekserve.models.source import SourceKind, resolve


def test_directory_with_config_is_a_hugging_face_dir(llama_dir: Path) -> None:
    source = resolve(str(llama_dir))
    assert (source.kind, source.path, source.name) == (SourceKind.HF_DIR, llama_dir, str(llama_dir))


def test_directory_with_one_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "model-q4.gguf").write_bytes(b"GGUF")
    assert resolve(str(tmp_path)).path == tmp_path / "model-q4.gguf"
    (tmp_path / "model-q8.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"holds 2 GGUF files \(model-q4.gguf, model-q8.gguf\)"):
        resolve(str(tmp_path))


def test_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json and no \.gguf file"):
        resolve(str(tmp_path))


def test_missing_path_that_is_not_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist as a local directory or file"):
        resolve(str(tmp_path / "a" / "b"))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", True),
        ("unsloth/gemma-3-270m-it-GGUF:Q4_K_M", True),
        ("org/name:model.Q8_0.gguf", True),
        ("/abs/path", False),
        ("a/b/c", False),
        ("just-a-name", False),
    ],
)
def test_hub_id_shape(model: str, expected: bool) -> None:
    assert hub.is_hub_id(model) is expected


def test_gguf_selection_in_a_hub_repository() -> None:
    files = ["README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-Q4_K_S.gguf"]
    assert hub._select("o/m", "q8_0", files) == (["m-Q8_0.gguf"], "m-Q8_0.gguf")
    with pytest.raises(ModelLoadError, match=r"2 GGUF files match 'Q4_K'.*pick one with o/m:NAME"):
        hub._select("o/m", "Q4_K", files)
    with pytest.raises(ModelLoadError, match="o/m holds 3 GGUF files"):
        hub._select("o/m", "", files)
    assert hub._select("o/m", "", ["config.json", "model.safetensors", "x.gguf"]) == (
        hub.HF_DIR_PATTERNS,
        None,
    )


def fake_hub_cache(home: Path, repo_id: str, model_dir: Path) -> Path:
    """A snapshot in huggingface_hub's cache layout, as a finished download leaves it."""
    repo = Environment(home=home).hub_dir / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_offline_uses_the_cached_snapshot(
    llama_dir: Path, seekserve_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    snapshot = fake_hub_cache(seekserve_home, "seekserve-test/cached-llama", llama_dir)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = resolve("seekserve-test/cached-llama")
    assert (source.kind, source.path) == (SourceKind.HF_DIR, snapshot)
    llm = LLM("seekserve-test/cached-llama", dtype="float32", max_model_len=128)
    out = llm.generate([[5, 6, 7]], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    assert len(out[0].outputs[0].token_ids) == 3
    assert llm.engine.model_name == "seekserve-test/cached-llama"


def test_offline_uncached_model_says_how_to_get_it(tmp_path: Path) -> None:
    env = subprocess_env()
    env.update(HF_HUB_OFFLINE="1", SEEKSERVE_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "seekserve", "generate", "--model", "seekserve-test/no-such-model", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "'seekserve-test/no-such-model' is not in the local cache" in result.stderr
    assert "downloads are off (HF_HUB_OFFLINE=1)" in result.stderr
    assert f"hf download seekserve-test/no-such-model --cache-dir {tmp_path / 'hub'}" in result.stderr
