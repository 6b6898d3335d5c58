"""`seekserve doctor`: once on this machine for real, and over fake trees through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import subprocess_env
from host.fake_host import GIB_KB, make_tree, meminfo
from seekserve.cli import cli
from seekserve.host import CHECKS, Host, Status, run_checks

_STATUSES = {s.value for s in Status}
_UNTUNED = {
    "proc/meminfo": meminfo(swap_kb=4 * GIB_KB),
    "proc/sys/vm/swappiness": "60\n",
    "proc/sys/net/core/somaxconn": "128\n",
}


def test_every_check_has_a_result_on_this_machine() -> None:
    """The real host, whatever it has (no GPU, no EDAC in a container): nothing raises, every check
    gives a status, a value and the sentence on why it matters."""
    results = run_checks(Host())
    assert [r.name for r in results] == [c.name for c in CHECKS]
    assert len({c.name for c in CHECKS}) == len(CHECKS) == 23
    for r in results:
        assert r.status.value in _STATUSES, r
        assert r.value and r.why.endswith("."), r
        assert r.status is Status.OK or r.fix or r.status is Status.SKIP, (
            f"{r.name} is {r.status} without a fix"
        )


def test_json_output_of_the_real_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "seekserve", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    rows = json.loads(done.stdout)
    assert done.returncode == (1 if any(r["status"] == "fail" for r in rows) else 0), done.stderr
    assert [r["name"] for r in rows] == [c.name for c in CHECKS]
    for row in rows:
        assert set(row) == {"name", "status", "value", "why", "fix"}
        assert row["status"] in _STATUSES


def _doctor(*args: str, input: str | None = None) -> tuple[int, str]:
    """(exit code, stdout and stderr as a terminal shows them)."""
    result = CliRunner().invoke(cli, ["doctor", *args], input=input)
    return result.exit_code, result.output


def _doctor_json(*args: str, input: str | None = None) -> tuple[int, dict[str, dict[str, str]]]:
    """(exit code, the rows of stdout's JSON by name)."""
    result = CliRunner().invoke(cli, ["doctor", "--json", *args], input=input)
    return result.exit_code, {r["name"]: r for r in json.loads(result.stdout)}


def test_json_over_a_fake_tree(tmp_path: Path) -> None:
    code, rows = _doctor_json("--root", str(make_tree(tmp_path, _UNTUNED)))
    assert rows["memory.swap"] == {
        "name": "memory.swap",
        "status": "warn",
        "value": "4.0 GiB swap, 0 B used, swappiness 60",
        "why": rows["memory.swap"]["why"],
        "fix": "sudo sysctl -w vm.swappiness=1",
    }
    assert rows["net.somaxconn"]["status"] == "warn"
    assert rows["net.congestion"]["status"] == rows["memory.thp"]["status"] == "ok"
    assert code == 0


def test_the_table_names_each_fix(tmp_path: Path) -> None:
    code, out = _doctor("--root", str(make_tree(tmp_path, _UNTUNED)))
    assert code == 0
    assert "memory.swap" in out and "swappiness 60" in out
    assert "fix: sudo sysctl -w net.core.somaxconn=4096" in out
    assert "sudo seekserve doctor --fix applies" in out


def test_fix_without_root_refuses_saying_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path, _UNTUNED)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out = _doctor("--fix", "--yes", "--root", str(root))
    assert code == 1
    assert "which only root may change, and this process runs as user id 1000" in out
    assert "sudo seekserve doctor --fix" in out
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"


def test_fix_asks_first_and_applies_on_yes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path, _UNTUNED)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    code, out = _doctor("--fix", "--root", str(root), input="n\n")
    assert (code, (root / "proc/sys/vm/swappiness").read_text()) == (0, "60\n")
    assert "/proc/sys/vm/swappiness <- 1   (vm.swappiness, also persisted)" in out
    assert "nothing written" in out
    code, rows = _doctor_json("--fix", "--root", str(root), input="y\n")
    assert code == 0
    assert (root / "proc/sys/vm/swappiness").read_text() == "1\n"
    assert (root / "proc/sys/net/core/somaxconn").read_text() == "4096\n"
    assert rows["memory.swap"]["status"] == rows["net.somaxconn"]["status"] == "ok", "checks ran again"
