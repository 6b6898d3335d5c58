from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from seekserve.errors import PullError
from seekserve.weights.manifest import FileEntry, check_relative_path, hash_file, model_files, parse_manifest
from seekserve.weights.pull import select_files

SHA = hashlib.sha256(b"x").hexdigest()


def test_hash_file_gives_sha256_and_the_git_blob_id(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello\n")
    digests = hash_file(tmp_path / "f", git_blob=True)
    assert digests.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert digests.git_sha1 == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    assert hash_file(tmp_path / "f").git_sha1 is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "a/../b",
        "./a",
        "a//b",
        ".hidden",
        "a/.seekserve/x",
        "a\\b",
        "w.part",
        "w.part.json",
    ],
)
def test_paths_that_are_not_plain_relative_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="is not a plain relative file path"):
        check_relative_path(path)


def test_file_entries_validate_their_checksums() -> None:
    with pytest.raises(ValueError, match="is not 64 lowercase hex digits"):
        FileEntry("a", 1, "ABC")
    with pytest.raises(ValueError, match="no checksum"):
        FileEntry("a", 1, None)
    with pytest.raises(ValueError, match="size -1 is negative"):
        FileEntry("a", -1, SHA)
    assert FileEntry("a", 1, None, "0" * 40).to_json() == {"path": "a", "size": 1, "sha256": None}


def test_parse_manifest_names_the_bad_entry() -> None:
    good = [{"path": "a.json", "size": 1, "sha256": SHA}]
    assert parse_manifest(good, "m") == [FileEntry("a.json", 1, SHA)]
    with pytest.raises(PullError, match="the manifest of m on mirror x is not a JSON list"):
        parse_manifest({"files": good}, "m on mirror x")
    with pytest.raises(PullError, match=r"entry 1 of the manifest of m is malformed: '../x' is not a plain"):
        parse_manifest([*good, {"path": "../x", "size": 1, "sha256": SHA}], "m")
    with pytest.raises(PullError, match=r"entry 0 .* not an object with an integer size"):
        parse_manifest([{"path": "a", "size": "1", "sha256": SHA}], "m")
    with pytest.raises(PullError, match="lists a path twice"):
        parse_manifest(good * 2, "m")


def test_model_files_leave_out_hidden_and_partial_files(tmp_path: Path) -> None:
    for rel in [
        "config.json",
        "sub/t.json",
        ".seekserve/checksums.json",
        "w.safetensors.part",
        "w.part.json",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert model_files(tmp_path) == ["config.json", "sub/t.json"]
    assert model_files(tmp_path / "config.json") == ["config.json"]


def _entries(*paths: str) -> list[FileEntry]:
    return [FileEntry(p, 1, SHA) for p in paths]


def test_select_files_defaults_to_what_seekserve_loads() -> None:
    entries = _entries(
        "config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.model", "README.md"
    )
    assert [e.path for e in select_files(entries, (), "m")] == [
        "config.json",
        "model.safetensors",
        "tokenizer.model",
    ]
    assert [e.path for e in select_files(entries, ("*.bin",), "m")] == ["pytorch_model.bin"]
    assert [e.path for e in select_files(_entries("one.gguf", "README.md"), (), "m")] == [
        "one.gguf",
        "README.md",
    ]
    with pytest.raises(PullError, match=r"no file of m matches \*.pt; it has config.json"):
        select_files(entries, ("*.pt",), "m")
