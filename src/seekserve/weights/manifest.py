"""A model's file list with sizes and checksums, the files a model folder holds, and their hashes.

A manifest is what a mirror serves at `GET /{model}/manifest.json` and what `seekserve pull`
checks every file against:

    [{"path": "config.json", "size": 1234, "sha256": "9f86d0..."}, ...]

The hub publishes SHA-256 only for its LFS files (weights); for small files it gives the git blob
id (SHA-1 of "blob {size}\\0" + content), which a `FileEntry` carries instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seekserve.errors import PullError

__all__ = [
    "PARTIAL_SUFFIXES",
    "Digests",
    "FileEntry",
    "RunningDigest",
    "check_relative_path",
    "hash_file",
    "model_files",
    "parse_manifest",
]

PARTIAL_SUFFIXES = (".part", ".part.json")
"""A pull's files in progress: never served, never listed, never loaded."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HASH_CHUNK_BYTES = 8 << 20


def check_relative_path(path: str) -> str:
    """`path` when it is a plain relative path inside a folder ('a/b.json'); ValueError otherwise:
    empty, absolute, with '.', '..' or hidden parts, backslashes, or a partial file's suffix."""
    parts = path.split("/")
    bad = not path or "\\" in path or "\x00" in path or any(not p or p.startswith(".") for p in parts)
    if bad or path.endswith(PARTIAL_SUFFIXES):
        raise ValueError(f"{path!r} is not a plain relative file path (no '..', hidden or partial files)")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One file of a model: where it goes, how long it is, and the hash it must have."""

    path: str
    """Relative to the model folder, with '/' separators."""
    size: int
    sha256: str | None
    """Hex SHA-256 of the content; None where the source gives only `git_sha1`."""
    git_sha1: str | None = None
    """Hex git blob id (the hub's `oid` of a small file), used where `sha256` is None."""

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if self.size < 0:
            raise ValueError(f"{self.path}: size {self.size} is negative")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"{self.path}: sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if self.git_sha1 is not None and not _HEX40.fullmatch(self.git_sha1):
            raise ValueError(f"{self.path}: git_sha1 {self.git_sha1!r} is not 40 lowercase hex digits")
        if self.sha256 is None and self.git_sha1 is None:
            raise ValueError(f"{self.path}: no checksum (sha256 or git_sha1) to verify it against")

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    def matches(self, digests: Digests) -> bool:
        if self.sha256 is not None:
            return digests.sha256 == self.sha256
        return digests.git_sha1 == self.git_sha1


def parse_manifest(data: Any, source: str) -> list[FileEntry]:
    """The entries of a manifest's JSON; PullError naming `source` and the fault where it is malformed."""
    if not isinstance(data, list):
        raise PullError(f"the manifest of {source} is not a JSON list of {{path, size, sha256}}")
    entries = []
    for i, item in enumerate(data):
        try:
            if not isinstance(item, dict) or not isinstance(item.get("size"), int):
                raise ValueError("not an object with an integer size")
            entries.append(FileEntry(str(item.get("path")), item["size"], item.get("sha256")))
        except ValueError as e:
            raise PullError(f"entry {i} of the manifest of {source} is malformed: {e}") from e
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise PullError(f"the manifest of {source} lists a path twice")
    return entries


@dataclass(frozen=True)
class Digests:
    sha256: str
    git_sha1: str | None
    """None unless asked for."""


class RunningDigest:
    """The hashes of a file of `size` bytes, fed in order from a file descriptor as its bytes become
    final: a pull hashes a file's complete prefix while the rest is still arriving."""

    def __init__(self, size: int, git_blob: bool = False) -> None:
        self.size = size
        self.position = 0
        """Bytes hashed so far, from the start."""
        self._sha256 = hashlib.sha256()
        self._git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False) if git_blob else None

    def update_from(self, fd: int, end: int) -> None:
        """Hash the bytes [position, end) of the file open at fd (pread: the offset is not moved)."""
        while self.position < end:
            chunk = os.pread(fd, min(_HASH_CHUNK_BYTES, end - self.position), self.position)
            if not chunk:
                raise OSError(f"the file ended at byte {self.position} of {end} while being hashed")
            self._sha256.update(chunk)
            if self._git is not None:
                self._git.update(chunk)
            self.position += len(chunk)

    def digests(self) -> Digests:
        assert self.position == self.size, f"hashed {self.position} of {self.size} bytes"
        return Digests(self._sha256.hexdigest(), self._git.hexdigest() if self._git is not None else None)


def hash_file(path: Path, git_blob: bool = False) -> Digests:
    """The SHA-256 of a file, and with `git_blob` its git blob id too, in one read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = RunningDigest(os.fstat(fd).st_size, git_blob)
        digest.update_from(fd, digest.size)
    finally:
        os.close(fd)
    return digest.digests()


def model_files(folder: Path) -> list[str]:
    """The relative paths of a folder's files, sorted: hidden parts (.seekserve/) and partial files
    left out. A file itself gives [its name]."""
    if folder.is_file():
        return [folder.name]
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if p.is_file() and not hidden and not rel.endswith(PARTIAL_SUFFIXES):
            found.append(rel)
    return sorted(found)
