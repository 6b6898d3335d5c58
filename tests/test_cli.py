from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from factories import subprocess_env
from seekserve import LLM, SamplingParams


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seekserve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )


def test_generate_prints_the_greedy_completion(llama_dir: Path) -> None:
    result = run_cli(
        "generate",
        "--model",
        str(llama_dir),
        "--max-tokens",
        "8",
        "--dtype",
        "float32",
        "--max-model-len",
        "128",
        "The capital of France is",
    )
    assert result.returncode == 0, result.stderr
    expected = (
        LLM(str(llama_dir), dtype="float32", max_model_len=128)
        .generate("The capital of France is", SamplingParams(temperature=0.0, max_tokens=8))[0]
        .outputs[0]
        .text
    )
    assert result.stdout == expected + "\n"


def test_generate_reports_bad_options_without_a_traceback(llama_dir: Path, tmp_path: Path) -> None:
    missing = run_cli("generate", "--model", str(tmp_path / "none"), "hi")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli("generate", "--model", str(llama_dir), "--block-size", "3", "hi")
    assert bad.returncode == 1 and "block_size=3 is invalid" in bad.stderr
    unknown = run_cli("generate", "--model", str(llama_dir), "--no-such-flag", "hi")
    assert unknown.returncode == 2 and "No such option" in unknown.stderr


def test_help_lists_engine_options() -> None:
    result = run_cli("generate", "--help")
    assert result.returncode == 0
    for flag in ("--max-num-seqs", "--enable-prefix-caching", "--scheduling [continuous|static]"):
        assert flag in result.stdout


def test_the_cli_does_not_import_http_clients_or_search_at_start() -> None:
    # aiohttp (the gateway's and web search's client, the load generator's) costs ~160 ms to import:
    # every `seekserve` command would pay it. Only the commands that use it import it, when they run.
    code = (
        "import sys; import seekserve.cli, seekserve.cli.serve, seekserve.metrics; "
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'; "
        "assert 'seekserve.search.service' not in sys.modules, 'web search imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr
