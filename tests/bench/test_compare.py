from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from factories import subprocess_env
from seekserve.bench.compare import Metric, Scenario, ScenarioResult, Workload, markdown_table
from seekserve.bench.servers import ServerSpec

COMPARE = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
FAKE = "{python} -m seekserve.bench.fake_server --port {port} --itl-s 0.002"


def scenario() -> Scenario:
    return Scenario(
        "demo",
        "two servers",
        (ServerSpec("a", "x {port}"), ServerSpec("b", "x {port}")),
        (Workload("w", {}),),
        (Metric("latency (ms)", lambda run: None), Metric("tok/s", lambda run: None, higher_is_better=True)),
    )


def test_medians_over_repeats_and_ratios_to_the_first_server() -> None:
    result = ScenarioResult(scenario())
    for server, latencies, rates in (
        ("a", [10.0, 30.0, 20.0], [5.0, 4.0, 6.0]),
        ("b", [5.0, 9.0, 1.0], [9.0, 7.0, 8.0]),
    ):
        for repeat, (latency, rate) in enumerate(zip(latencies, rates, strict=True)):
            figures = {"latency (ms)": latency, "tok/s": rate}
            result.runs.append({"server": server, "workload": "w", "repeat": repeat, "figures": figures})
    assert result.medians() == {"w": {"latency (ms)": {"a": 20.0, "b": 5.0}, "tok/s": {"a": 5.0, "b": 8.0}}}
    data = result.to_json()
    assert data["ratios"]["w"]["latency (ms)"] == {"a": 1.0, "b": 0.25}
    assert markdown_table(result).splitlines() == [
        "| workload | metric | a | b | b / a |",
        "|---|---|---|---|---|",
        "| w | latency (ms) | 20 | 5 | 0.25x (-75 %, better) |",
        "| w | tok/s | 5 | 8 | 1.60x (+60 %, better) |",
    ]


def test_missing_figures_leave_gaps_instead_of_ratios() -> None:
    result = ScenarioResult(scenario())
    result.runs.append(
        {"server": "b", "workload": "w", "repeat": 0, "figures": {"latency (ms)": 3.0, "tok/s": None}}
    )
    assert "| w | latency (ms) | - | 3 | - |" in markdown_table(result)


def compare(tmp_path: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            str(COMPARE),
            *args,
            "--out",
            str(tmp_path),
            "--seekserve-model",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((tmp_path / f"{args[0]}.json").read_text())


def test_the_stall_scenario_runs_interleaved_and_tabulates(tmp_path: Path) -> None:
    data = compare(
        tmp_path, "stall", "--repeats", "2", "--decode-tokens", "30", "--long-prompt-tokens", "200",
        "--long-prompt-at", "0.05",
        "--server", f"unchunked={FAKE} --stall-at-token 15 --stall-s 0.5",
        "--server", f"chunked={FAKE} --stall-at-token 15 --stall-s 0.02",
    )  # fmt: skip
    assert [(r["server"], r["repeat"]) for r in data["runs"]] == [
        ("unchunked", 0), ("chunked", 0), ("unchunked", 1), ("chunked", 1)
    ]  # fmt: skip
    worst = data["medians"]["8 decoding + 1 long prompt"]["longest gap, worst stream (ms)"]
    assert worst["unchunked"] >= 500 and 20 <= worst["chunked"] < 250
    assert data["ratios"]["8 decoding + 1 long prompt"]["longest gap, worst stream (ms)"]["chunked"] < 0.5
    trace = [json.loads(line) for line in (tmp_path / "stall-trace.jsonl").read_text().splitlines()]
    assert [t["arrival_s"] for t in trace] == [0.0] * 8 + [0.05]
    assert len(trace[-1]["prompt"].split()) == 200 and trace[0]["output_len"] == 30
    for run in data["runs"]:
        assert run["result"]["summary"]["num_completed"] == 9
    table = (tmp_path / "stall.md").read_text()
    assert "| 8 decoding + 1 long prompt | longest gap, worst stream (ms) |" in table


def test_static_vs_continuous_calibrates_the_rate_on_the_continuous_server(tmp_path: Path) -> None:
    data = compare(
        tmp_path, "static-vs-continuous", "--repeats", "1", "--num-requests", "8",
        "--server", f"static={FAKE}", "--server", f"continuous={FAKE}",
    )  # fmt: skip
    [(workload, rate)] = data["calibrated_rates"].items()
    assert workload == "poisson 0.9x saturation" and rate > 0
    for run in data["runs"]:
        config = run["result"]["config"]
        assert config["request_rate"] == rate and config["num_requests"] == 8
        assert config["output_len"] == "uniform:16,256"


def test_peers_with_all_servers_up_and_one_dropped(tmp_path: Path) -> None:
    data = compare(
        tmp_path, "peers", "--repeats", "1", "--num-requests", "4", "--all-up", "--drop", "llamacpp",
        "--server", f"seekserve={FAKE}", "--server", f"vllm={FAKE}",
    )  # fmt: skip
    assert [s["name"] for s in data["servers"]] == ["seekserve", "vllm"]
    assert [(r["workload"], r["server"]) for r in data["runs"]] == [
        (f"concurrency {c}", s) for c in (1, 8, 32) for s in ("seekserve", "vllm")
    ]
    assert all(
        r["result"]["config"]["max_concurrency"] == int(r["workload"].split()[-1]) for r in data["runs"]
    )
    assert data["medians"]["concurrency 8"]["output tok/s"]["vllm"] > 0


def test_a_sampled_comparison_sends_every_server_the_same_parameters(tmp_path: Path) -> None:
    data = compare(
        tmp_path, "peers", "--repeats", "1", "--num-requests", "2", "--all-up", "--drop", "llamacpp",
        "--server", f"seekserve={FAKE}", "--server", f"vllm={FAKE}",
        "--temperature", "0.6", "--top-p", "0.95",
    )  # fmt: skip
    configs = [r["result"]["config"] for r in data["runs"]]
    assert len(configs) == 6 and all((c["temperature"], c["top_p"]) == (0.6, 0.95) for c in configs)
