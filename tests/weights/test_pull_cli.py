"""The `seekserve pull` command against a mirror on loopback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from seekserve.cli import cli
from seekserve.weights.mirror import create_mirror_app
from weights.servers import make_folder, serving

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
