"""Compiling kernels/*.cpp into one shared library with the system's C++ compiler.

The library lands in `<kernels_dir>/<hash>/libseekserve_cpu.so`, the hash taken over the sources,
the compiler, the flags and the CPU's feature flags (-march=native depends on them), so a changed
source, CPU or setting builds a new folder and a build is reused otherwise. `cpu_kernels.py`
decides whether to build and what to do when it fails.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

__all__ = ["KERNEL_SOURCES", "build_library", "find_compiler"]

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).parent / "kernels"
KERNEL_SOURCES = (
    "paged_attention.cpp",
    "argmax.cpp",
    "layer_ops.cpp",
    "greedy_head.cpp",
    "int4_matmul.cpp",
    "int4_dequantize.cpp",
    "decode_layer.cpp",
    "sampling.cpp",
)
KERNEL_HEADERS = ("simd.h", "kernels.h", "greedy_head_vnni.h")
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++17")


def find_compiler() -> str | None:
    """The C++ compiler to build with: $CXX (default g++), else c++; None when neither is on PATH."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def build_flags(portable: bool) -> tuple[str, ...]:
    """The compiler flags. Portable: the code CPUs without AVX-512 run (x86 only; elsewhere the
    native build has no AVX-512 anyway)."""
    if portable and platform.machine().lower() in ("x86_64", "amd64"):
        return (*_FLAGS, "-mno-avx512f")  # turns off every AVX-512 extension with it
    return _FLAGS


def build_library(compiler: str, kernels_dir: Path, portable: bool, timeout_s: float) -> Path:
    """The built library's path, compiling it unless this hash's folder has it already.

    Raises subprocess.CalledProcessError when the compiler fails, subprocess.TimeoutExpired when it
    runs longer than timeout_s (the compiler and its children are killed), OSError when it cannot
    be started or the folder cannot be written.
    """
    flags = build_flags(portable)
    sources = [KERNEL_DIR / name for name in KERNEL_SOURCES]
    key = hashlib.sha256()
    for part in (compiler, *flags, platform.machine(), _cpu_flags()):
        key.update(part.encode())
    for src in [*sources, *(KERNEL_DIR / name for name in KERNEL_HEADERS)]:
        key.update(src.read_bytes())
    target_dir = kernels_dir / key.hexdigest()[:16]
    target = target_dir / "libseekserve_cpu.so"
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        partial = Path(tmp) / target.name
        _compile([compiler, *flags, *map(str, sources), "-o", str(partial)], timeout_s)
        partial.replace(target)  # atomic: a concurrent start sees all of the library or none
    log.info("built CPU kernels into %s", target)
    return target


def _compile(cmd: list[str], timeout_s: float) -> None:
    # Its own process group: on a timeout the compiler's children (cc1plus) are killed with it.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, output=out, stderr=err)


def _cpu_flags() -> str:
    """The CPU's feature flags (-march=native depends on them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()
