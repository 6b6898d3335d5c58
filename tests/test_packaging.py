"""What ships: the sdist and the wheel carry the CPU kernels' sources, and an installed wheel builds
and loads them (a wheel without them would silently run the slower torch path); they carry the
built-in model configs of `seekserve plan` too, which the installed wheel reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import seekserve
from seekserve.layers.kernel_build import KERNEL_HEADERS, KERNEL_SOURCES, find_compiler

ROOT = Path(seekserve.__file__).resolve().parents[2]
KERNEL_FILES = {f"seekserve/layers/kernels/{name}" for name in (*KERNEL_SOURCES, *KERNEL_HEADERS)}
PLAN_CONFIGS = {
    f"seekserve/plan/configs/{path.name}"
    for path in (ROOT / "src" / "seekserve" / "plan" / "configs").glob("*.json")
}
WEB_STATIC = ROOT / "src" / "seekserve" / "chat" / "static"
WEB_FILES = {p.relative_to(ROOT / "src").as_posix() for p in WEB_STATIC.rglob("*") if p.is_file()}
"""The chat page: served from the installed package, so a wheel without it has no /chat."""
# Run in the installed wheel's venv from an empty folder: where seekserve comes from, and the kernels.
SNIPPET = """
import json, torch, seekserve
from seekserve.layers.cpu_kernels import cpu_kernels, kernel_status
kernels = cpu_kernels()
argmax = None if kernels is None else kernels.argmax(torch.tensor([[1.0, 3.0, 2.0]])).tolist()
from seekserve.plan.catalog import load_model
layers = load_model("DeepSeek-V3").size.num_layers
status = str(kernel_status())
print(json.dumps({"file": seekserve.__file__, "status": status, "argmax": argmax, "layers": layers}))
"""


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_installed_wheel_builds_and_loads_the_kernels(tmp_path: Path) -> None:
    # A copy of the project, so building writes no build/ or egg-info into the checkout.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src" / "seekserve",
        project / "src" / "seekserve",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = tmp_path / "dist"
    build_sdist = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    sdist = dist / run(sys.executable, "-c", build_sdist, cwd=project).strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/src/", 1)[-1] for name in tar.getnames()}
    assert in_sdist >= KERNEL_FILES | PLAN_CONFIGS, f"missing: {(KERNEL_FILES | PLAN_CONFIGS) - in_sdist}"

    # The wheel built from the sdist, as pip builds it for an install from source.
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, sdist, cwd=tmp_path)
    (wheel,) = dist.glob("seekserve-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert in_wheel >= KERNEL_FILES | PLAN_CONFIGS, f"missing: {(KERNEL_FILES | PLAN_CONFIGS) - in_wheel}"
    assert in_wheel >= WEB_FILES, f"missing from the wheel: {WEB_FILES - in_wheel}"

    # A venv outside the checkout with this interpreter's packages (torch, ...) behind its own.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_outer_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CXX", "SEEKSERVE_CPU_KERNELS")}
    env["SEEKSERVE_HOME"] = str(tmp_path / "home")
    got = json.loads(run(python, "-c", SNIPPET, cwd=cwd, env=env).strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(site), f"seekserve imported from {got['file']}, not the venv"
    assert got["layers"] == 61, "the installed wheel did not read the built-in DeepSeek-V3 config"
    if find_compiler() is None:
        assert got["status"].startswith("off (no C++ compiler") and got["argmax"] is None
        return
    assert got["argmax"] == [1], f"the kernels did not load: {got['status']}"
    assert got["status"].startswith(("avx512 (", "portable ("))
    assert len(list((tmp_path / "home" / "kernels").glob("*/libseekserve_cpu.so"))) == 1
