"""`seekserve plan` and `seekserve plan fleet` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from factories import subprocess_env
from seekserve.cli import cli
from seekserve.models.sizing import model_size
from seekserve.plan.catalog import load_model


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["plan", *args], terminal_width=200)
    return result.exit_code, result.output


def test_plan_json_for_deepseek_v3() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "seekserve", "plan", "--model", "deepseek-ai/DeepSeek-V3", "--gpus",
         "8xH100,8xH200,2x8xH100", "--json"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    size = model_size(load_model("DeepSeek-V3").config)
    assert data["weights_bytes"] == size.weight_bytes("fp8") == 673_150_582_112
    assert data["mtp_weights_bytes"] == size.weight_bytes("fp8", True) - size.weight_bytes("fp8")
    assert data["num_mtp_params"] == size.num_mtp_params
    assert data["kv_bytes_per_token"] == 70_272
    rows = {(r["gpus"], r["parallelism"]): r for r in data["layouts"]}
    assert list(rows) == [
        ("8xH100", "TP8"),
        ("8xH100", "DP8 attention + EP8"),
        ("8xH200", "TP8"),
        ("8xH200", "DP8 attention + EP8"),
        ("2x8xH100", "DP2 x TP8"),
        ("2x8xH100", "TP8 x PP2"),
        ("2x8xH100", "TP16"),
        ("2x8xH100", "DP16 attention + EP16"),
    ]
    assert rows["8xH100", "TP8"]["fits"] is False and rows["8xH100", "TP8"]["commands"] is None
    h200 = rows["8xH200", "TP8"]
    assert h200["fits"] is True and h200["max_concurrent_tokens"] == 674_188
    assert h200["num_gpus"] == 8 and h200["per_gpu"]["kv_bytes_per_token"] == 70_272
    assert h200["commands"]["vllm"][0].startswith(
        "vllm serve deepseek-ai/DeepSeek-V3 --tensor-parallel-size 8"
    )
    assert rows["2x8xH100", "TP8 x PP2"]["max_concurrent_tokens"] == 841_403


def test_plan_text() -> None:
    code, out = invoke(
        "--model", "DeepSeek-R1-Distill-Qwen-7B", "--gpus", "8xH100", "--max-model-len", "32768"
    )
    assert code == 0, out
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B: 7.6B parameters" in out
    assert "8xH100 TP8 does not fit: TP8 does not divide the 28 attention heads" in out
    assert "vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --data-parallel-size 8" in out


def test_planning_does_not_import_torch() -> None:
    code = (
        "import sys; import seekserve.cli, seekserve.plan.layouts, seekserve.plan.report, "
        "seekserve.plan.fleet, seekserve.plan.fleet_report; from seekserve.plan.catalog import load_model; "
        "load_model('DeepSeek-V3'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert done.returncode == 0, done.stderr


def test_plan_errors() -> None:
    code, out = invoke("--model", "gpt-5")
    assert code == 1 and "--model 'gpt-5' is neither a config.json" in out
    code, out = invoke("--model", "DeepSeek-V3", "--gpus", "12xH100")
    assert code == 1 and "12 GPUs do not make whole nodes of 8" in out
    code, out = invoke("--model", "DeepSeek-V3", "--gpus", ",")
    assert code == 1 and "--gpus ',' names no cluster" in out
    code, out = invoke("--gpus", "8xH100")
    assert code == 2 and "give --model CONFIG|DIR|NAME" in out
    code, out = invoke("--model", "DeepSeek-V3", "--quantization", "fp4")
    assert code == 2 and "'fp4' is not one of" in out
    code, out = invoke("--model", "DeepSeek-V3", "fleet", "--traffic", "1/s", "--slo-p99", "1s")
    assert code == 2 and "belong to `seekserve plan`, not `plan fleet`" in out


FLEET = ("fleet", "--traffic", "2M/day", "--slo-p99", "2s", "--window-requests", "2000")


def test_fleet_json() -> None:
    code, out = invoke(*FLEET, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["feasible"] is True
    assert data["traffic"]["requests_per_day"] == 2e6
    assert data["profile"]["name"] == "r1-8xh200-short" and data["profile"]["gpus_per_replica"] == 8
    assert [h["hour"] for h in data["hours"]] == list(range(24))
    assert all(h["needed"] >= 1 and h["p99_s"] > h["p50_s"] for h in data["hours"])
    assert data["gpu_hours"]["autoscaled"] > 0 and data["breaks_first"]
    assert data["peak_bound_by"] == "throughput"  # one 8xH200 replica: p99 well under 2 s at 95% load
    assert data["method"]["window_requests"] == 2000 and data["method"]["num_windows"] > 0


def test_fleet_text_with_bench_profiles(tmp_path: Path) -> None:
    paths = []
    for concurrency, median, p99 in ((1, 0.1, 0.2), (8, 0.3, 0.7)):
        path = tmp_path / f"c{concurrency}.json"
        path.write_text(json.dumps({
            "config": {"max_concurrency": concurrency},
            "summary": {"e2e": {"median": median, "p99": p99}},
        }))  # fmt: skip
        paths += ["--profile", str(path)]
    code, out = invoke(*FLEET, *paths)
    assert code == 1 and "--gpus-per-replica N" in out
    code, out = invoke(
        *FLEET, *paths, "--gpus-per-replica", "1", "--routing", "prefix", "--prefix-groups", "16"
    )
    assert code == 0, out
    assert "replica (1 GPUs): e2e of" in out and "Per hour" in out and "breaks first:" in out
    code, out = invoke(*FLEET, "--routing", "prefix")
    assert code == 1 and "prefix routing needs prefix groups" in out
