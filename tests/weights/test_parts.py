from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seekserve.weights.manifest import FileEntry
from seekserve.weights.parts import PartFile, merge, missing, split

MIB = 1 << 20


def test_merge_joins_overlapping_and_touching_ranges() -> None:
    assert merge([(10, 20), (0, 5), (5, 8), (15, 30), (40, 40)]) == [(0, 8), (10, 30)]


def test_missing_is_the_complement() -> None:
    assert missing(100, []) == [(0, 100)]
    assert missing(100, [(0, 10), (50, 60)]) == [(10, 50), (60, 100)]
    assert missing(100, [(0, 100)]) == []
    assert missing(0, []) == []


def test_split_cuts_large_gaps_into_ranges_of_at_least_min_bytes() -> None:
    assert split([(0, 64 * MIB)], 8, 4 * MIB) == [(i * 8 * MIB, (i + 1) * 8 * MIB) for i in range(8)]
    assert split([(0, 10 * MIB)], 8, 4 * MIB) == [(0, 5 * MIB), (5 * MIB, 10 * MIB)]
    assert split([(0, 1000)], 8, 4 * MIB) == [(0, 1000)]
    # Two gaps left by an interrupted pull: each gets its share of the connections.
    assert split([(0, 8 * MIB), (24 * MIB, 32 * MIB)], 4, MIB) == [
        (0, 4 * MIB),
        (4 * MIB, 8 * MIB),
        (24 * MIB, 28 * MIB),
        (28 * MIB, 32 * MIB),
    ]
    assert split([], 8, MIB) == []


def _entry(data: bytes, path: str = "w.bin") -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest())


def test_a_part_resumes_from_its_record(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    part = PartFile(tmp_path / "w.bin", _entry(data))
    assert part.open() == 0
    assert (tmp_path / "w.bin.part").stat().st_size == len(data), "allocated whole (sparse) at once"
    part.write(0, data[:1000])
    part.mark(0, 1000)
    part.write(5000, data[5000:6000])
    part.mark(5000, 6000)
    part.close()
    assert json.loads((tmp_path / "w.bin.part.json").read_text())["done"] == [[0, 1000], [5000, 6000]]
    again = PartFile(tmp_path / "w.bin", _entry(data))
    assert again.open() == 2000
    assert again.missing() == [(1000, 5000), (6000, len(data))]
    for start, end in again.missing():
        again.write(start, data[start:end])
        again.mark(start, end)
    again.finish()
    assert (tmp_path / "w.bin").read_bytes() == data
    assert not (tmp_path / "w.bin.part").exists() and not (tmp_path / "w.bin.part.json").exists()


def test_a_part_of_another_version_starts_over(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "w.bin", _entry(b"a" * 100))
    part.open()
    part.write(0, b"a" * 50)
    part.mark(0, 50)
    part.close()
    other = PartFile(tmp_path / "w.bin", _entry(b"b" * 100))
    assert other.open() == 0
    assert other.missing() == [(0, 100)]


def test_a_record_without_its_part_starts_over(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "w.bin", _entry(b"a" * 100))
    part.open()
    part.mark(0, 100)
    part.close()
    (tmp_path / "w.bin.part").unlink()
    assert PartFile(tmp_path / "w.bin", _entry(b"a" * 100)).open() == 0
