"""A file being pulled: `<name>.part` with the bytes so far, `<name>.part.json` with which ranges.

    part = PartFile(target, entry)
    part.open()                       # resumes from the record, or starts an empty (sparse) file
    for start, end in pieces(part.missing(), 32 << 20): ...   # in file order
        part.write(offset, data); part.mark(offset, offset + len(data))
    part.finish()                     # renamed into place: nothing half-written ever has the real name

`prefix_bytes` (the bytes done from the start without a gap) grows as pieces complete in order;
`prefix_grew` is set each time it does, for the hashing that follows it.

The record names the file it is for (size and checksum), so a part left by a pull of another
version is started over. A range is recorded only after its bytes are written; after a crash of
the machine the record may claim bytes the disk lost, which the checksum then refuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from seekserve.weights.manifest import FileEntry

__all__ = ["Interval", "PartFile", "merge", "missing", "pieces"]

Interval = tuple[int, int]
"""[start, end) in bytes."""
CHECKPOINT_S = 1.0
"""The record is rewritten at most this often while bytes arrive (and always when the pull stops)."""


def merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, with overlapping and touching intervals joined."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing(size: int, done: list[Interval]) -> list[Interval]:
    """The parts of [0, size) that `done` (merged) does not cover."""
    gaps, cursor = [], 0
    for start, end in done:
        if start > cursor:
            gaps.append((cursor, min(start, size)))
        cursor = max(cursor, end)
    if cursor < size:
        gaps.append((cursor, size))
    return [g for g in gaps if g[1] > g[0]]


def pieces(gaps: list[Interval], piece_bytes: int) -> list[Interval]:
    """The gaps cut into ranges of at most `piece_bytes`, in file order: fetched by several
    connections at once they complete roughly in order, so the done prefix grows steadily."""
    return [(s, min(s + piece_bytes, end)) for start, end in gaps for s in range(start, end, piece_bytes)]


class PartFile:
    def __init__(self, target: Path, entry: FileEntry) -> None:
        self.target = target
        self.entry = entry
        self.path = target.with_name(target.name + ".part")
        self.record_path = target.with_name(target.name + ".part.json")
        self._done: list[Interval] = []
        self._fd: int | None = None
        self._saved_at = 0.0
        self.prefix_grew = asyncio.Event()

    @property
    def done_bytes(self) -> int:
        return sum(end - start for start, end in self._done)

    def missing(self) -> list[Interval]:
        return missing(self.entry.size, self._done)

    @property
    def prefix_bytes(self) -> int:
        """The bytes done from the start of the file without a gap."""
        return self._done[0][1] if self._done and self._done[0][0] == 0 else 0

    @property
    def fd(self) -> int:
        assert self._fd is not None, "the part is not open"
        return self._fd

    def open(self) -> int:
        """Open the part, resuming from its record where it is for this file; the bytes already done."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._done = self._recorded()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not self._done:
            os.ftruncate(self._fd, self.entry.size)  # sparse: takes no disk until written
        self.checkpoint()
        return self.done_bytes

    def _recorded(self) -> list[Interval]:
        try:
            record = json.loads(self.record_path.read_text())
            if not self.path.is_file() or self.path.stat().st_size != self.entry.size:
                return []
        except (OSError, ValueError):
            return []
        if not isinstance(record, dict) or record.get("file") != self._identity():
            return []
        ranges = record.get("done", [])
        return merge([(int(s), min(int(e), self.entry.size)) for s, e in ranges])

    def _identity(self) -> dict[str, object]:
        return {"size": self.entry.size, "sha256": self.entry.sha256, "git_sha1": self.entry.git_sha1}

    def write(self, offset: int, data: bytes | memoryview) -> None:
        assert self._fd is not None, "write() before open()"
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def mark(self, start: int, end: int) -> None:
        """Record [start, end) as written; the record file follows at most every CHECKPOINT_S."""
        before = self.prefix_bytes
        self._done = merge([*self._done, (start, end)])
        if self.prefix_bytes > before:
            self.prefix_grew.set()
        if time.monotonic() - self._saved_at >= CHECKPOINT_S:
            self.checkpoint()

    def checkpoint(self) -> None:
        partial = self.record_path.with_name(self.record_path.name + f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"file": self._identity(), "done": self._done}))
        os.replace(partial, self.record_path)
        self._saved_at = time.monotonic()

    def close(self) -> None:
        """Stop, keeping the part and its record for the next pull."""
        if self._fd is not None:
            self.checkpoint()
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """Rename the complete part to its real name (atomic) and drop the record."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.replace(self.path, self.target)
        self.record_path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drop the part and its record (its content failed the checksum)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)
        self._done = []
