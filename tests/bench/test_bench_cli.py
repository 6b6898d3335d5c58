from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from factories import subprocess_env
from seekserve.bench.servers import free_port
from seekserve.cli.bench import bench


def bench_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seekserve", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )


def test_a_short_run_prints_the_table_and_writes_json_and_a_figure(served: Any, tmp_path: Path) -> None:
    out, fig = tmp_path / "result.json", tmp_path / "plot.png"
    result = bench_cli(
        "--base-url", served.base_url, "--model", served.model, "--num-requests", "16",
        "--max-concurrency", "4", "--input-len", "16", "--output-len", "8", "--slo", "ttft=1",
        "--slo", "itl=20ms", "--result-json", str(out), "--plot", str(fig), "--detailed", "--label", "e2e",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "16 completed, 0 failed" in result.stdout and "Latency (ms)" in result.stdout
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.read_text())
    assert data["label"] == "e2e" and data["config"]["max_concurrency"] == 4
    assert data["config"]["request_rate"] == "inf"
    summary, requests = data["summary"], data["requests"]
    assert summary["num_completed"] == 16 and len(requests) == 16
    assert all(r["output_tokens"] == 8 and len(r["token_times_s"]) >= 1 for r in requests)
    # the summary agrees with the per-request figures
    good = sum(r["ttft_s"] <= 1 and (r["max_gap_s"] or 0) <= 0.02 for r in requests)
    assert summary["goodput"]["num_good"] == good
    threshold = summary["stalls"]["threshold_s"]
    assert summary["stalls"]["num_stalled"] == sum((r["max_gap_s"] or 0) > threshold for r in requests)
    assert summary["ttft"]["max"] == max(r["ttft_s"] for r in requests)


def test_bad_input_is_reported_without_a_traceback(tmp_path: Path) -> None:
    refused = bench_cli("--base-url", f"http://127.0.0.1:{free_port()}", "--model", "m")
    assert (
        refused.returncode == 1 and "warm-up request" in refused.stderr and "(connection)" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    slo = bench_cli("--base-url", "http://x", "--model", "m", "--slo", "ttft")
    assert slo.returncode == 1 and "SLO 'ttft' is invalid" in slo.stderr
    body = bench_cli("--base-url", "http://x", "--model", "m", "--extra-body", "[1]")
    assert body.returncode == 1 and "--extra-body must be a JSON object" in body.stderr
    rate = bench_cli("--base-url", "http://x", "--model", "m", "--arrival", "gamma")
    assert rate.returncode == 1 and "needs a finite request_rate" in rate.stderr
    unknown = bench_cli("--base-url", "http://x", "--model", "m", "--no-such-flag")
    assert unknown.returncode == 2 and "No such option" in unknown.stderr


def test_help_lists_the_options() -> None:
    result = bench_cli("--help")
    assert result.returncode == 0
    for flag in ("--request-rate", "--burstiness", "--slo METRIC=SECONDS", "--stall-threshold", "--plot"):
        assert flag in result.stdout


def test_the_bench_does_not_import_torch() -> None:
    code = (
        "import sys; import seekserve.cli, seekserve.cli.bench, seekserve.bench.runner, "
        "seekserve.bench.report, seekserve.bench.plot, seekserve.bench.compare; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr


def test_without_aiohttp_the_bench_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # `import aiohttp` raises ImportError
    result = CliRunner().invoke(bench, ["--base-url", "http://127.0.0.1:1", "--model", "m"])
    assert result.exit_code == 1
    assert result.output == "Error: seekserve bench needs aiohttp: pip install 'seekserve[bench]'\n"
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not an ImportError
