"""Building the CPU kernels: the setting, the build folder, and the fallback to the torch path (one
warning naming the cause and the fix) when the compiler is missing, fails or hangs."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import WarningRecords
from seekserve.env import Environment
from seekserve.layers import cpu_kernels as cpu_kernels_module
from seekserve.layers import kernel_build
from seekserve.layers.cpu_kernels import KernelSet, KernelStatus, cpu_kernels, kernel_status
from seekserve.layers.kernel_build import build_library

FIX = "install a C++ compiler (e.g. g++) or set SEEKSERVE_CPU_KERNELS=0 to skip the kernels"


@pytest.fixture
def warnings_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """`cpu_kernels()` loads anew into an empty SEEKSERVE_HOME; yields the loader's warnings."""
    monkeypatch.setenv("SEEKSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEEKSERVE_CPU_KERNELS", "1")
    handler = WarningRecords()
    logger = logging.getLogger(cpu_kernels_module.__name__)
    logger.addHandler(handler)
    cpu_kernels.cache_clear()
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        cpu_kernels.cache_clear()


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_the_setting_is_read_strictly() -> None:
    def read(value: str) -> tuple[bool, bool]:
        env = Environment.read({"SEEKSERVE_CPU_KERNELS": value, "SEEKSERVE_HOME": "/h"})
        return env.cpu_kernels, env.portable_kernels

    assert read("1") == read("native") == read(" ON ") == (True, False)
    assert read("0") == read("off") == (False, False)
    assert read("portable") == (True, True)
    assert Environment.read({}).cpu_kernels and not Environment.read({}).portable_kernels
    with pytest.raises(ValueError, match=r"SEEKSERVE_CPU_KERNELS='avx2' is not a setting: use 1 .*portable"):
        Environment.read({"SEEKSERVE_CPU_KERNELS": "avx2"})


def test_the_portable_build_has_its_own_folder_and_a_build_is_reused(tmp_path: Path) -> None:
    """A stand-in compiler that records its flags and writes an empty library."""
    log = tmp_path / "calls"
    fake = script(
        tmp_path / "fake-c++",
        f'echo "$*" >> {log}\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done\n',
    )
    native = build_library(fake, tmp_path / "kernels", portable=False, timeout_s=10)
    portable = build_library(fake, tmp_path / "kernels", portable=True, timeout_s=10)
    assert build_library(fake, tmp_path / "kernels", portable=True, timeout_s=10) == portable
    calls = log.read_text().splitlines()
    assert len(calls) == 2, "the third call reuses the portable library"
    assert "-march=native" in calls[0].split() and "-march=native" in calls[1].split()
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert native.parent != portable.parent
        assert "-mno-avx512f" not in calls[0].split() and "-mno-avx512f" in calls[1].split()
    assert native.is_file() and portable.is_file()


def test_turned_off_gives_none_and_no_warning(
    warnings_logged: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEKSERVE_CPU_KERNELS", "0")
    assert cpu_kernels() is None
    assert kernel_status() == KernelStatus(KernelSet.OFF, "SEEKSERVE_CPU_KERNELS=0")
    assert str(kernel_status()) == "off (SEEKSERVE_CPU_KERNELS=0)"
    assert warnings_logged == []


def test_without_a_compiler_one_warning_and_the_torch_path(
    warnings_logged: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_build.shutil, "which", lambda name: None)
    assert cpu_kernels() is None
    assert cpu_kernels() is None and kernel_status().kernel_set == KernelSet.OFF  # no second warning
    assert str(kernel_status()) == "off (no C++ compiler: install g++, or SEEKSERVE_CPU_KERNELS=0)"
    assert len(warnings_logged) == 1
    message = warnings_logged[0].getMessage()
    assert "no C++ compiler found" in message and "slower torch path" in message and FIX in message


def test_a_failing_compiler_gives_one_warning_with_its_error(
    warnings_logged: list[logging.LogRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = script(tmp_path / "broken-c++", 'echo "cc1plus: fatal error: out of memory" >&2\nexit 1\n')
    monkeypatch.setenv("CXX", broken)
    assert cpu_kernels() is None
    assert kernel_status() == KernelStatus(KernelSet.OFF, f"the build failed: {broken} exit status 1")
    assert len(warnings_logged) == 1
    message = warnings_logged[0].getMessage()
    assert f"building them with {broken} failed (exit status 1)" in message
    assert "cc1plus: fatal error: out of memory" in message and FIX in message
    assert not list((tmp_path / "home" / "kernels").glob("*/libseekserve_cpu.so"))


def test_a_hanging_compiler_is_killed_at_the_timeout_with_one_warning(
    warnings_logged: list[logging.LogRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiler's own children (cc1plus for g++) are killed with it: here a background sleep."""
    child_pid = tmp_path / "child.pid"
    hanging = script(tmp_path / "hanging-c++", f"sleep 60 &\necho $! > {child_pid}\nwait\n")
    monkeypatch.setenv("CXX", hanging)
    monkeypatch.setattr(cpu_kernels_module, "_BUILD_TIMEOUT_S", 1.0)
    start = time.monotonic()
    assert cpu_kernels() is None
    assert time.monotonic() - start < 10
    assert kernel_status() == KernelStatus(KernelSet.OFF, "the build timed out after 1 s")
    assert len(warnings_logged) == 1
    message = warnings_logged[0].getMessage()
    assert f"building them with {hanging} did not finish in 1 s" in message and FIX in message
    assert not _running(int(child_pid.read_text()))


def _running(pid: int, wait_s: float = 5.0) -> bool:
    """Whether the process still runs after up to wait_s (a zombie awaiting its reaper does not)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True
