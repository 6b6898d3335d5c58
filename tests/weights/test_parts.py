from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seekserve.weights.manifest import FileEntry
from seekserve.weights.parts import PartFile, merge, missing, pieces

MIB = 1 << 20


def test_merge_joins_overlapping_and_touching_ranges() -> None:
    assert merge([(10, 20), (0, 5), (5, 8), (15, 30), (40, 40)]) == [(0, 8), (10, 30)]


def test_missing_is_the_complement() -> None:
    assert missing(100, []) == [(0, 100)]
    assert missing(100, [(0, 10), (50, 60)]) == [(10, 50), (60, 100)]
    assert missing(100, [(0, 100)]) == []
    assert missing(0, []) == []


def test_pieces_cut_the_gaps_in_file_order() -> None:
    assert pieces([(0, 10 * MIB)], 4 * MIB) == [(0, 4 * MIB), (4 * MIB, 8 * MIB), (8 * MIB, 10 * MIB)]
    assert pieces([(0, 1000)], 4 * MIB) == [(0, 1000)]
    # The gaps an interrupted pull left, each cut on its own.
    assert pieces([(MIB, 3 * MIB), (24 * MIB, 25 * MIB)], 2 * MIB) == [(MIB, 3 * MIB), (24 * MIB, 25 * MIB)]
    assert pieces([], MIB) == []


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


def test_the_done_prefix_grows_only_without_a_gap(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "w.bin", _entry(bytes(300)))
    part.open()
    part.mark(100, 200)
    assert (part.prefix_bytes, part.prefix_grew.is_set()) == (0, False)
    part.mark(0, 50)
    assert (part.prefix_bytes, part.prefix_grew.is_set()) == (50, True)
    part.prefix_grew.clear()
    part.mark(50, 100)
    assert part.prefix_bytes == 200, "joined with the range done before"
    part.close()
