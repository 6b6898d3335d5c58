"""Storage checks: how fast the model folder reads, and the space left where models are pulled."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from seekserve.env import Environment
from seekserve.host.checks import Finding, Host, Status, check, format_bytes
from seekserve.weights.manifest import model_files

__all__ = ["CHECKS", "ReadSpeed", "measure_read", "model_bytes", "model_paths"]

MAX_LOAD_READ_S = 60.0
"""A tuned host reads even a 671B checkpoint in about 45 s; slower than this is worth fixing."""
MIN_FREE_BYTES = 20 << 30
"""Room for one 7B model in BF16 (15 GB) and its partial files."""
SAMPLE_BYTES = 1 << 30
SAMPLE_S = 3.0
_CHUNK_BYTES = 8 << 20


def model_paths(path: Path) -> list[Path]:
    """A model's files: the file itself, or every file of the folder (not hidden, not partial)."""
    return [path] if path.is_file() else [path / rel for rel in model_files(path)]


def model_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in model_paths(path)) if path.exists() else 0


@dataclass(frozen=True)
class ReadSpeed:
    num_bytes: int
    seconds: float

    @property
    def bytes_per_s(self) -> float:
        return self.num_bytes / max(self.seconds, 1e-9)


def measure_read(files: list[Path], max_bytes: int = SAMPLE_BYTES, max_s: float = SAMPLE_S) -> ReadSpeed:
    """Read the largest files first, up to max_bytes or max_s, after asking the kernel to drop their
    cached pages (posix_fadvise DONTNEED: a cold read, as a restart would see; pages another process
    maps stay cached)."""
    buffer = bytearray(_CHUNK_BYTES)
    num_bytes, start = 0, time.perf_counter()
    for path in sorted(files, key=lambda p: p.stat().st_size, reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while num_bytes < max_bytes and time.perf_counter() - start < max_s:
                n = os.readv(fd, [buffer])
                if n == 0:
                    break
                num_bytes += n
        finally:
            os.close(fd)
        if num_bytes >= max_bytes or time.perf_counter() - start >= max_s:
            break
    return ReadSpeed(num_bytes, time.perf_counter() - start)


@check(
    "storage.read_speed",
    why="Every start reads the whole checkpoint; a slow or network disk turns a 45 s load into minutes "
    "while the replica serves nothing.",
)
def read_speed(host: Host) -> Finding:
    if host.model_path is None:
        return Finding(Status.SKIP, "no model folder: name one with seekserve doctor --model DIR")
    files = model_paths(host.model_path) if host.model_path.exists() else []
    if not files:
        return Finding(Status.SKIP, f"{host.model_path} holds no files")
    total = sum(p.stat().st_size for p in files)
    speed = measure_read(files)
    if speed.num_bytes == 0:
        return Finding(Status.SKIP, f"{host.model_path}: only empty files")
    load_s = total / speed.bytes_per_s
    load = f"{load_s:.{0 if load_s >= 10 else 1}f}"
    value = (
        f"{format_bytes(speed.bytes_per_s)}/s cold ({format_bytes(speed.num_bytes)} read from "
        f"{host.model_path}); the folder's {format_bytes(total)} in about {load} s"
    )
    if load_s <= MAX_LOAD_READ_S:
        return Finding(Status.OK, value)
    return Finding(
        Status.WARN,
        value,
        f"copy the weights to a local NVMe disk (e.g. seekserve pull MODEL --dest /nvme/models/MODEL "
        f"--mirror URL) so they read in under {MAX_LOAD_READ_S:.0f} s",
    )


@check(
    "storage.free",
    why="A pull needs room for the whole checkpoint and its partial files; a full disk fails it hours in.",
)
def free(host: Host) -> Finding:
    home = host.home or Environment.read().home
    existing = next(p for p in (home, *home.parents) if p.exists())
    free_bytes = shutil.disk_usage(existing).free
    value = f"{format_bytes(free_bytes)} free for {home} (SEEKSERVE_HOME)"
    if free_bytes >= MIN_FREE_BYTES:
        return Finding(Status.OK, value)
    return Finding(
        Status.WARN,
        value,
        "free space there, or move the cache to a larger disk: export SEEKSERVE_HOME=/nvme/seekserve",
    )


CHECKS = (read_speed, free)
