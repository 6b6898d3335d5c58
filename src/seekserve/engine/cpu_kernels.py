"""Hand-written CPU kernels (kernels/*.cpp), built with the system's C++ compiler on first use.

The library is compiled once per source, compiler and CPU into `$SEEKSERVE_HOME/kernels/<hash>/`
(about a second: it includes no torch headers) and loaded with ctypes; its functions take raw
pointers and release the GIL while they run. Without a compiler, or with SEEKSERVE_CPU_KERNELS=0,
`cpu_kernels()` returns None and callers use their torch path; the reason is logged once.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from seekserve.env import Environment

__all__ = ["CpuKernels", "cpu_kernels"]

log = logging.getLogger(__name__)

_SOURCES = ("paged_attention.cpp", "argmax.cpp")
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
_I64, _F32, _P = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
_DECODE_ARGS: list[type] = [_P, _I64, _P, _P, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _F32, _P]
_ARGMAX_ARGS: list[type] = [_P, _I64, _I64, _P]


class CpuKernels:
    """The loaded kernel library."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._decode = {torch.float32: lib.paged_decode_f32, torch.bfloat16: lib.paged_decode_bf16}
        self._argmax = {torch.float32: lib.argmax_f32, torch.bfloat16: lib.argmax_bf16}
        for table, args in ((self._decode, _DECODE_ARGS), (self._argmax, _ARGMAX_ARGS)):
            for fn in table.values():
                fn.argtypes = args
                fn.restype = None

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self._decode

    def argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Row-wise argmax of [num_rows, vocab] logits (first maximum wins), as torch.argmax(-1).

        One vectorised pass in the logits' own dtype: bfloat16 logits need no float32 copy.
        """
        if logits.dtype not in self._argmax or logits.device.type != "cpu":
            return logits.argmax(dim=-1)
        logits = logits.contiguous()
        out = torch.empty(logits.shape[0], dtype=torch.int64)
        self._argmax[logits.dtype](logits.data_ptr(), logits.shape[0], logits.shape[1], out.data_ptr())
        return out

    def paged_decode(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_tables: torch.Tensor,
        seq_lens: torch.Tensor,
        block_size: int,
        window: int | None,
        scale: float,
    ) -> torch.Tensor:
        """Attention of one new token per sequence over its cached keys; see paged_attention.cpp.

        q: [num_seqs, num_heads, head_dim] (rows may be strided, heads contiguous); caches:
        [num_slots, num_kv_heads, head_dim] contiguous; block_tables [num_seqs, max_blocks] and
        seq_lens [num_seqs] int64 contiguous. Returns [num_seqs, num_heads, head_dim].
        """
        num_seqs, num_heads, head_dim = q.shape
        assert q.stride(2) == 1 and q.stride(1) == head_dim, "q heads must be contiguous"
        assert k_cache.is_contiguous() and v_cache.is_contiguous(), "caches must be contiguous"
        assert block_tables.dtype == seq_lens.dtype == torch.int64, "tables and lengths are int64"
        out = torch.empty((num_seqs, num_heads, head_dim), dtype=q.dtype)
        self._decode[q.dtype](
            q.data_ptr(), q.stride(0), k_cache.data_ptr(), v_cache.data_ptr(),
            block_tables.data_ptr(), block_tables.shape[1], seq_lens.data_ptr(),
            num_seqs, num_heads, k_cache.shape[1], head_dim, block_size, window or 0, scale,
            out.data_ptr(),
        )  # fmt: skip
        return out


@functools.cache
def cpu_kernels() -> CpuKernels | None:
    """The kernel library, built on first use; None where it cannot be built or is turned off."""
    env = Environment.read()
    if not env.cpu_kernels:
        log.info("CPU kernels turned off (SEEKSERVE_CPU_KERNELS=0): using torch attention")
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if compiler is None:
        log.warning("no C++ compiler found (g++ or $CXX): using torch attention, slower on CPU")
        return None
    try:
        return CpuKernels(ctypes.CDLL(str(_build(compiler, env.kernels_dir))))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or e
        log.warning("building the CPU kernels failed, using torch attention: %s", detail)
        return None


def _build(compiler: str, kernels_dir: Path) -> Path:
    here = Path(__file__).parent / "kernels"
    sources = [here / name for name in _SOURCES]
    key = hashlib.sha256()
    for part in (compiler, *_FLAGS, platform.machine(), _cpu_flags()):
        key.update(part.encode())
    for src in sources:
        key.update(src.read_bytes())
    target_dir = kernels_dir / key.hexdigest()[:16]
    target = target_dir / "libseekserve_cpu.so"
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        partial = Path(tmp) / target.name
        cmd = [compiler, *_FLAGS, *map(str, sources), "-o", str(partial)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
        partial.replace(target)  # atomic: a concurrent start sees all of the library or none
    log.info("built CPU kernels into %s", target)
    return target


def _cpu_flags() -> str:
    """The CPU's feature flags (-march=native depends on them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()
