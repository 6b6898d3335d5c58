"""The SHA-256 of a folder's files, remembered by (size, mtime) so each file is hashed once.

Kept in `<folder>/.seekserve/checksums.json`: a pull records every file it verified, so a mirror
serving a pulled folder hashes nothing; a mirror records what it hashed, so a restart hashes
nothing either. A file whose size or modification time changed is hashed again.

    {"model-00001-of-00002.safetensors": {"size": 4984, "mtime_ns": 17000, "sha256": "ab12..."}}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from filelock import FileLock

from seekserve.weights.manifest import FileEntry, hash_file, model_files

__all__ = ["STATE_DIR", "ChecksumCache"]

log = logging.getLogger(__name__)

STATE_DIR = ".seekserve"
"""A model folder's own bookkeeping (checksums, locks); hidden, so never served or listed."""
_FILE = "checksums.json"


class ChecksumCache:
    """Checksums of one folder's files. Not thread-safe: one user at a time (the mirror holds a lock
    per folder while it computes a manifest; a pull records from its event loop)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._path = folder / STATE_DIR / _FILE
        self._entries: dict[str, dict[str, int | str]] = self._read()
        self._changed = False

    def _read(self) -> dict[str, dict[str, int | str]]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning(
                "ignoring the unreadable checksum record %s (%s): files are hashed again", self._path, e
            )
            return {}
        return data if isinstance(data, dict) else {}

    def reload(self) -> None:
        """Take in what another process recorded meanwhile (a pull into the folder)."""
        self._entries.update(self._read())

    def lookup(self, rel: str) -> str | None:
        """The recorded SHA-256 of `rel` if the file still has the size and mtime it had then."""
        entry = self._entries.get(rel)
        if not isinstance(entry, dict):
            return None
        stat = (self.folder / rel).stat()
        if entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            return None
        sha256 = entry.get("sha256")
        return sha256 if isinstance(sha256, str) else None

    def record(self, rel: str, sha256: str) -> None:
        stat = (self.folder / rel).stat()
        self._entries[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
        self._changed = True

    def sha256(self, rel: str) -> str:
        """The file's SHA-256: recorded, or hashed now (and recorded)."""
        known = self.lookup(rel)
        if known is None:
            log.info("hashing %s", self.folder / rel)
            known = hash_file(self.folder / rel).sha256
            self.record(rel, known)
        return known

    def manifest(self) -> list[FileEntry]:
        """Every file of the folder with its size and SHA-256 (hashing only new or changed files)."""
        entries = [
            FileEntry(rel, (self.folder / rel).stat().st_size, self.sha256(rel))
            for rel in model_files(self.folder)
        ]
        self.save()
        return entries

    def save(self) -> None:
        """Write the record (merged with what another process wrote meanwhile) if anything changed.
        A folder that cannot be written (read-only) keeps the record in memory only, with one log line."""
        if not self._changed:
            return
        try:
            self._path.parent.mkdir(exist_ok=True)
            with FileLock(str(self._path) + ".lock"):
                merged = {**self._read(), **self._entries}
                partial = self._path.with_name(f"{_FILE}.{os.getpid()}.tmp")
                partial.write_text(json.dumps(merged, indent=1, sort_keys=True))
                os.replace(partial, self._path)
        except OSError as e:
            log.info(
                "cannot record checksums in %s (%s): they are hashed again after a restart", self._path, e
            )
            return
        self._entries, self._changed = merged, False
