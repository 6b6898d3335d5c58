from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from factories import subprocess_env
from seekserve.bench.servers import ManagedServer, ServerSpec
from seekserve.errors import BenchError, ConfigError

FAKE = "{python} -m seekserve.bench.fake_server --port {port} --model {name}"


@pytest.fixture(autouse=True)
def child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])


def test_a_server_starts_reports_its_model_and_stops(tmp_path: Path) -> None:
    server = ManagedServer(ServerSpec("fake", FAKE), tmp_path, {"name": "tiny"})
    with server:
        assert server.model == "tiny"
        with urllib.request.urlopen(server.base_url + "/health", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        process = server._process
        assert process is not None and process.poll() is None
        first_log = server.log_path
    assert process.poll() is not None, "stopped"
    server.start()  # again, on a new port with a new log
    try:
        assert server.model == "tiny" and server.log_path != first_log and first_log.exists()
    finally:
        server.stop()


def test_a_server_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = ServerSpec("broken", "{python} -c \"print('no model here'); raise SystemExit(3)\" {port}")
    with pytest.raises(BenchError, match=r"(?s)exited with code 3 before it was ready.*no model here"):
        ManagedServer(spec, tmp_path).start()


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    spec = ServerSpec("silent", '{python} -c "import time; time.sleep(60)" {port}', ready_timeout_s=1.0)
    server = ManagedServer(spec, tmp_path)
    with pytest.raises(BenchError, match="was not ready within 1 s"):
        server.start()
    assert server._process is None


def test_specs_are_checked_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no \{port\}"):
        ServerSpec("a", "serve --port 8000")
    with pytest.raises(ConfigError, match="name 'a b' is invalid"):
        ServerSpec("a b", "serve {port}")
    with pytest.raises(ConfigError, match=r"unknown placeholder 'model' \(known: port, python, x\)"):
        ManagedServer(ServerSpec("a", "serve {model} {port}"), tmp_path, {"x": "1"})
