"""`seekserve stack up` as a user runs it: Redis, two engines on the tiny random Llama, the gateway
and Prometheus start, a request goes through the gateway (the second, identical one is answered
from Redis), Prometheus scrapes all three with the shipped rules loaded, and SIGTERM leaves no
process behind. A stack whose engine cannot start stops what it started and says why."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

import seekserve
from factories import subprocess_env

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "256", "--num-kv-blocks", "64", "--num-threads", "1",
               "--log-level", "warning"]  # fmt: skip
READY = re.compile(r"seekserve stack: ready: gateway (http://\S+)/v1")


def stack_config(tmp_path: Path, **settings: object) -> Path:
    config = {
        "num_engines": 2, "engine_args": ENGINE_ARGS, "gateway_port": 0, "engine_port": 0, "redis": "on",
        "redis_port": 0, "prometheus": "on", "prometheus_port": 0, "scrape_interval_s": 0.5,
        "rule_files": [str(RULES / f) for f in ("recording_rules.yml", "alert_rules.yml")],
         "ready_timeout_s": 120, "run_dir": str(tmp_path / "run"),
        **settings,
    }  # fmt: skip
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**subprocess_env(), "SEEKSERVE_CPU_KERNELS": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(seekserve.__file__).parents[1]), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "seekserve", "stack", "up", "--config", str(config), *args]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def wait_ready(process: subprocess.Popen[str], timeout_s: float = 120.0) -> str:
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in process.stderr:
        lines.append(line)
        match = READY.search(line)
        if match:
            return match.group(1)
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"the stack exited with {process.wait()} before it was ready:\n{''.join(lines)}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stack_up(llama_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    for binary in ("redis-server", "prometheus"):
        if shutil.which(binary) is None:
            pytest.skip(f"no {binary} on PATH: apt-get install {binary}")
    process = launch(stack_config(tmp_path), "--model", str(llama_dir), "--served-model-name", "tiny")
    try:
        yield process, wait_ready(process), tmp_path / "run"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_a_request_goes_through_the_stack_and_sigterm_stops_everything(
    stack_up: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, gateway, run_dir = stack_up
    state = json.loads((run_dir / "stack.json").read_text())["processes"]
    assert [p["name"] for p in state] == ["redis", "engine0", "engine1", "gateway", "prometheus"]
    body = {"model": "tiny", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    body["ignore_eos"] = True
    first = httpx.post(f"{gateway}/v1/completions", json=body, timeout=30)
    assert first.status_code == 200, first.text
    assert first.headers["x-seekserve-backend"] in {"engine0", "engine1"}
    assert first.json()["usage"]["completion_tokens"] == 8
    again = httpx.post(f"{gateway}/v1/completions", json=body, timeout=30)
    assert again.headers["x-seekserve-cache"] == "hit"  # from Redis
    assert again.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]

    prometheus = next(p["url"] for p in state if p["name"] == "prometheus")
    deadline = time.monotonic() + 20
    while True:
        up = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up == 1"}).json()["data"]["result"]
        if len(up) == 3:
            break
        assert time.monotonic() < deadline, up
        time.sleep(0.2)
    assert sorted(s["metric"]["job"] for s in up) == ["seekserve", "seekserve", "seekserve-gateway"]
    groups = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    assert {g["name"] for g in groups} == {"seekserve.recording", "seekserve.alerts"}

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert [p["name"] for p in state if alive(p["pid"])] == []


def test_a_stack_whose_engine_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    config = stack_config(tmp_path, num_engines=1, redis="off", prometheus="off")
    process = launch(config, "--model", str(tmp_path / "no-such-model"))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert re.search(r"engine0 exited with code 1; the end of .*engine0\.log", err), err
    assert "no-such-model" in err
