from __future__ import annotations

from pathlib import Path

import pytest

from host.fake_host import make_host, make_tree
from seekserve.host import Status, storage
from seekserve.host.storage import free, measure_read, model_bytes, model_paths, read_speed


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model-00001.safetensors").write_bytes(bytes(3 << 20))
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer.json").write_bytes(bytes(1000))
    (folder / "model-00002.safetensors.part").write_bytes(bytes(100))  # a pull in progress
    (folder / "model-00002.safetensors.part.json").write_text("{}")
    (folder / ".seekserve").mkdir()
    (folder / ".seekserve" / "checksums.json").write_text("{}")
    return folder


def test_model_paths_leave_out_hidden_and_partial_files(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    assert [p.relative_to(folder).as_posix() for p in model_paths(folder)] == [
        "config.json",
        "model-00001.safetensors",
        "sub/tokenizer.json",
    ]
    assert model_bytes(folder) == 2 + (3 << 20) + 1000
    assert model_bytes(tmp_path / "absent") == 0


def test_measure_read_stops_at_max_bytes_largest_file_first(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    speed = measure_read(model_paths(folder), max_bytes=1 << 20)
    assert speed.num_bytes == 3 << 20  # the largest file in one chunk, then the limit stops it
    whole = measure_read(model_paths(folder))
    assert whole.num_bytes == model_bytes(folder)
    assert whole.bytes_per_s > 0


def test_read_speed_of_a_small_folder_is_ok(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    result = read_speed.run(make_host(make_tree(tmp_path / "root"), model_path=folder))
    assert result.status is Status.OK
    assert f"(3.0 MiB read from {folder}); the folder's 3.0 MiB in about" in result.value


def test_read_speed_warns_when_the_folder_would_take_over_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model(tmp_path / "m")
    monkeypatch.setattr(storage, "MAX_LOAD_READ_S", 0.0)
    result = read_speed.run(make_host(make_tree(tmp_path / "root"), model_path=folder))
    assert result.status is Status.WARN
    assert result.fix is not None and "seekserve pull MODEL --dest /nvme/models/MODEL" in result.fix


def test_read_speed_without_a_model_is_skipped(tmp_path: Path) -> None:
    result = read_speed.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (
        Status.SKIP,
        "no model folder: name one with seekserve doctor --model DIR",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_speed.run(make_host(tmp_path, model_path=empty)).value == f"{empty} holds no files"


def test_free_space_of_a_home_not_created_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "not" / "yet"
    result = free.run(make_host(tmp_path, home=home))
    assert result.value.endswith(f"free for {home} (SEEKSERVE_HOME)")
    monkeypatch.setattr(storage, "MIN_FREE_BYTES", 1 << 60)
    low = free.run(make_host(tmp_path, home=home))
    assert low.status is Status.WARN
    assert low.fix is not None and "SEEKSERVE_HOME=" in low.fix
