"""The `seekserve pull` command against a mirror on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from factories import subprocess_env
from seekserve.cli import cli
from seekserve.weights.mirror import create_mirror_app
from weights.servers import Faults, FaultyApp, make_folder, serving

FILES = {"org/m/config.json": b"{}", "org/m/model.safetensors": b"\0" * 4096}


def test_pull_prints_where_the_model_is_and_how_to_serve_it(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "root", FILES)
    dest = tmp_path / "dest"
    with serving(create_mirror_app(root)) as url:
        result = CliRunner().invoke(cli, ["pull", "org/m", "--mirror", url, "--dest", str(dest), "-q"])
        assert result.exit_code == 0, result.output
        assert f"org/m: 2 files, 0.00 GB in {dest} (2 fetched, 0.00 GB from mirror {url} in" in result.stdout
        assert f"serve it with: seekserve serve --model {dest}" in result.stdout
        assert (dest / "model.safetensors").read_bytes() == b"\0" * 4096
        missing = CliRunner().invoke(cli, ["pull", "org/x", "--mirror", url, "--dest", str(dest)])
    assert missing.exit_code == 1
    assert f"Error: mirror {url} has no model 'org/x'" in missing.output


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pull", "org/m", "--connections", "0"])
    assert result.exit_code == 2
    assert "connections=0 must be at least 1" in result.output
    bad_url = CliRunner().invoke(cli, ["pull", "org/m", "--mirror", "mirror:8080"])
    assert bad_url.exit_code == 1
    assert "--mirror 'mirror:8080' is not an http:// or https:// URL" in bad_url.output


def test_ctrl_c_keeps_the_ranges_done_and_the_next_pull_resumes(tmp_path: Path) -> None:
    big = bytes(range(256)) * (128 << 10)  # 32 MiB
    root = make_folder(tmp_path / "root", {"org/m/config.json": b"{}", "org/m/w.safetensors": big})
    dest = tmp_path / "dest"
    record = dest / "w.safetensors.part.json"
    faults = Faults(delay_s=0.1)  # 1 MiB every 100 ms: the record is written after a second
    with serving(FaultyApp(create_mirror_app(root), faults)) as url:
        command = [sys.executable, "-m", "seekserve", "pull", "org/m", "--mirror", url, "--dest", str(dest)]
        process = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (record.is_file() and json.loads(record.read_text())["done"]):
            assert time.monotonic() < deadline and process.poll() is None, "no range was recorded"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130
        assert "interrupted: run the same command again to resume where it stopped" in err
        [[start, done]] = json.loads(record.read_text())["done"]
        assert start == 0 and 0 < done < len(big)
        faults.log.clear()
        result = CliRunner().invoke(cli, ["pull", "org/m", "--mirror", url, "--dest", str(dest), "-q"])
    assert result.exit_code == 0, result.output
    assert (dest / "w.safetensors").read_bytes() == big
    [resumed] = faults.served("/org/m/w.safetensors")
    assert resumed.range is not None and int(resumed.range.split("=")[1].split("-")[0]) >= done
