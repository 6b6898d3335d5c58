"""`seekserve gateway` refuses bad invocations and bad config files before serving, naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from seekserve.cli import cli

BACKEND = '{name: a, url: "http://127.0.0.1:1/v1"}'
UNSET = "SEEKSERVE_TEST_GATEWAY_UNSET_VAR"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["gateway", *args], env={UNSET: None})


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "args",
    [(), ("--upstream", "http://127.0.0.1:1/v1", "--config", "{config}")],
    ids=["neither", "both"],
)
def test_upstream_xor_config(args: tuple[str, ...], tmp_path: Path) -> None:
    path = config_file(tmp_path, f"backends: [{BACKEND}]\n")
    result = invoke(*(a.format(config=path) for a in args))
    assert result.exit_code == 2
    assert "Error: give either --upstream URL (one or more) or --config FILE" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"backends: [{BACKEND}]\nretry: {{atempts: 3}}\n",
            "{path}: retry.atempts: Extra inputs are not permitted",
        ),
        (
            f"backends: [{BACKEND}]\ncahce: {{backend: memory}}\n",
            "{path}: cahce: Extra inputs are not permitted",
        ),
        (
            f'backends: [{BACKEND}, {{name: a, url: "http://127.0.0.1:2/v1"}}]\n',
            "{path}: (top): backend names must be unique: a appear more than once",
        ),
        (
            f'backends: [{{name: a, url: "http://127.0.0.1:1/v1", api_key: "${{{UNSET}}}"}}]\n',
            f"${{{UNSET}}} is used in the gateway config but {UNSET} is not set: "
            f"export it or write ${{{UNSET}:-default}}",
        ),
        (
            'backends: [{name: a, url: "127.0.0.1:8000"}]\n',
            "{path}: backends.0.url: url '127.0.0.1:8000' is not an http(s) URL: "
            "give the OpenAI base URL, http://host:port/v1",
        ),
        ("backends: []\n", "{path}: backends: Tuple should have at least 1 item after validation, not 0"),
        ("- just a list\n", "{path}: the top level must be a mapping (listen:, backends:, ...)"),
    ],
    ids=[
        "unknown-nested-key",
        "unknown-section",
        "duplicate-backend",
        "unset-var",
        "bad-url",
        "no-backends",
        "list",
    ],
)
def test_bad_config_file_exits_with_the_problem(text: str, message: str, tmp_path: Path) -> None:
    path = config_file(tmp_path, text)
    result = invoke("--config", path)
    assert result.exit_code == 1
    assert result.output == "Error: " + message.replace("{path}", path) + "\n"


def test_a_non_http_upstream_is_refused() -> None:
    result = invoke("--upstream", "ftp://10.0.0.1/v1")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --upstream: backends.0.url: url 'ftp://10.0.0.1/v1' is not an http(s) URL: "
        "give the OpenAI base URL, http://host:port/v1\n"
    )


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("--config", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 2
    assert "Invalid value for '--config': File" in result.output
    assert "absent.yaml' does not exist." in result.output


def test_the_installed_command_exits_non_zero_on_a_bad_file(tmp_path: Path) -> None:
    """The real entry point (`python -m seekserve`), as a process: exit code and stderr."""
    path = config_file(tmp_path, f"backends: [{BACKEND}]\nbogus: 1\n")
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "seekserve", "gateway", "--config", path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"Error: {path}: bogus: Extra inputs are not permitted\n"
