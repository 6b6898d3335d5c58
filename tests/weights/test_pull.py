"""`seekserve pull` from a real mirror on loopback: verified, resumed, re-fetched, shared between pulls."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from factories import subprocess_env
from seekserve.errors import ChecksumError, PullError
from seekserve.weights import download
from seekserve.weights.config import PullConfig
from seekserve.weights.mirror import create_mirror_app
from seekserve.weights.pull import PullRequest, pull
from weights.servers import Faults, FaultyApp, make_folder, random_bytes, serving

MIB = 1 << 20
BIG = random_bytes(24 * MIB, seed=1)
SMALL = random_bytes(5000, seed=2)
FILES = {
    "org/m/config.json": b'{"model_type": "llama"}',
    "org/m/model-00001.safetensors": BIG,
    "org/m/model-00002.safetensors": SMALL,
    "org/m/tokenizer.json": b"{}",
    "org/m/merges.txt": b"",  # an empty file: no range to fetch, still verified and renamed
    "org/m/README.md": b"not fetched by default",
}
BIG_URL = "/org/m/model-00001.safetensors"
# Small ranges and instant retries, so the tests exercise splitting and resuming in little time.
FAST = PullConfig(connections=4, range_bytes=4 * MIB, retry_base_s=0.01, timeout_s=10)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "root", FILES)


def _assert_pulled(dest: Path) -> None:
    assert sorted(
        p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and ".seekserve" not in p.parts
    ) == [
        "config.json",
        "merges.txt",
        "model-00001.safetensors",
        "model-00002.safetensors",
        "tokenizer.json",
    ]
    assert (dest / "merges.txt").read_bytes() == b""
    assert (dest / "model-00001.safetensors").read_bytes() == BIG
    assert (dest / "model-00002.safetensors").read_bytes() == SMALL


def test_pull_from_a_mirror(root: Path, tmp_path: Path) -> None:
    faults = Faults()
    with serving(FaultyApp(create_mirror_app(root), faults)) as url:
        result = pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST)
    _assert_pulled(tmp_path / "dest")
    assert (result.num_files, result.total_bytes, result.fetched_bytes) == (
        5,
        25 + len(BIG) + len(SMALL),
        result.total_bytes,
    )
    big = faults.served(BIG_URL)
    starts = sorted(int(s.range.split("=")[1].split("-")[0]) for s in big)  # type: ignore[union-attr]
    assert starts == [i * 4 * MIB for i in range(6)], "six ranges of 4 MiB"
    origin = json.loads((tmp_path / "dest/.seekserve/origin.json").read_text())
    assert (origin["model"], origin["source"], len(origin["files"])) == ("org/m", f"mirror {url}", 5)


def test_a_second_pull_fetches_nothing_and_hashes_nothing(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(create_mirror_app(root)) as url:
        pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST)
        monkeypatch.setattr(download, "hash_file", lambda p, *_: pytest.fail(f"{p} hashed again"))
        again = pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST)
    assert (again.fetched_files, again.fetched_bytes) == ((), 0)


def test_the_default_env_puts_models_under_seekserve_home(root: Path, seekserve_home: Path) -> None:
    with serving(create_mirror_app(root)) as url:
        result = pull(PullRequest("org/m", mirror=url), config=FAST)
    assert result.dest == seekserve_home / "models" / "org" / "m"
    _assert_pulled(result.dest)


def test_a_dropped_connection_resumes_the_range_where_it_stopped(root: Path, tmp_path: Path) -> None:
    faults = Faults(drop_after={BIG_URL: [8 * MIB]})
    config = PullConfig(connections=1, retry_base_s=0.01)
    with serving(FaultyApp(create_mirror_app(root), faults)) as url:
        pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=config)
    _assert_pulled(tmp_path / "dest")
    first, second = faults.served(BIG_URL)
    assert (first.range, first.num_bytes) == (f"bytes=0-{len(BIG) - 1}", 8 * MIB)
    resumed_at = int(second.range.removeprefix("bytes=").split("-")[0])  # type: ignore[union-attr]
    assert 0 < resumed_at <= 8 * MIB, "the retry asks for the rest, not the whole file"
    assert second.num_bytes == len(BIG) - resumed_at


def test_an_interrupted_pull_resumes_from_its_part_file(root: Path, tmp_path: Path) -> None:
    faults = Faults(drop_after={BIG_URL: [10 * MIB]})
    dest = tmp_path / "dest"
    with serving(FaultyApp(create_mirror_app(root), faults)) as url:
        with pytest.raises(
            PullError,
            match=r"; 1 try without progress at byte \d+ from mirror .*; run the same pull again to resume",
        ):
            pull(
                PullRequest("org/m", mirror=url, dest=dest), config=PullConfig(connections=1, max_attempts=1)
            )
        record = json.loads((dest / "model-00001.safetensors.part.json").read_text())
        assert not (dest / "model-00001.safetensors").exists(), "nothing half-written has the real name"
        [[start, done]] = record["done"]
        assert start == 0 and 0 < done <= 10 * MIB
        faults.log.clear()
        result = pull(PullRequest("org/m", mirror=url, dest=dest), config=PullConfig(connections=1))
    _assert_pulled(dest)
    [resumed] = faults.served(BIG_URL)
    assert (resumed.range, resumed.num_bytes) == (f"bytes={done}-{len(BIG) - 1}", len(BIG) - done)
    assert not (dest / "model-00001.safetensors.part").exists()
    assert not (dest / "model-00001.safetensors.part.json").exists()
    assert "model-00001.safetensors" in result.fetched_files


def test_a_full_disk_is_a_clear_error_leaves_nothing_under_a_real_name_and_the_pull_resumes(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    pwrite, room = os.pwrite, [10 * MIB]

    def full_disk(fd: int, data: bytes | memoryview, offset: int) -> int:
        if len(data) > room[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        room[0] -= len(data)
        return pwrite(fd, data, offset)

    with serving(FaultyApp(create_mirror_app(root), Faults())) as url:
        monkeypatch.setattr(os, "pwrite", full_disk)
        with pytest.raises(PullError, match=r"cannot write the files into .*No space left on device"):
            pull(PullRequest("org/m", mirror=url, dest=dest), config=FAST)
        assert not (dest / "model-00001.safetensors").exists(), "nothing half-written has the real name"
        monkeypatch.setattr(os, "pwrite", pwrite)  # space again
        result = pull(PullRequest("org/m", mirror=url, dest=dest), config=FAST)
    _assert_pulled(dest)
    assert "model-00001.safetensors" in result.fetched_files


def test_a_corrupted_byte_is_refused_and_fetched_again(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = Faults(corrupt={BIG_URL: [7 * MIB + 3]})
    with serving(FaultyApp(create_mirror_app(root), faults)) as url, caplog.at_level(logging.WARNING):
        pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST)
    _assert_pulled(tmp_path / "dest")
    assert (
        "model-00001.safetensors from mirror" in caplog.text
        and "fails its checksum; fetching it again" in caplog.text
    )
    assert sum(s.num_bytes for s in faults.served(BIG_URL)) == 2 * len(BIG)
    assert faults.corrupt[BIG_URL] == [], "the byte was flipped in the first copy"


def test_a_file_corrupted_every_time_is_refused(root: Path, tmp_path: Path) -> None:
    faults = Faults(corrupt={"/org/m/model-00002.safetensors": [100, 100, 100]})
    dest = tmp_path / "dest"
    with (
        serving(FaultyApp(create_mirror_app(root), faults)) as url,
        pytest.raises(ChecksumError, match=r"model-00002.safetensors from mirror .* failed its checksum"),
    ):
        pull(PullRequest("org/m", mirror=url, dest=dest), config=FAST)
    assert not (dest / "model-00002.safetensors").exists()
    assert not (dest / "model-00002.safetensors.part").exists()


def test_a_file_that_changes_on_the_mirror_during_the_pull_is_an_error(root: Path, tmp_path: Path) -> None:
    class GrowTheFile(download.NullProgress):
        def begin(self, total_bytes: int, num_files: int) -> None:
            with (root / "org/m/model-00002.safetensors").open("ab") as f:
                f.write(b"more")

    changed = pytest.raises(PullError, match=r"of a 5000-byte file: it changed on the source")
    with serving(create_mirror_app(root)) as url, changed:
        pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST, progress=GrowTheFile())


def test_concurrent_pulls_of_one_folder_fetch_each_file_once(root: Path, tmp_path: Path) -> None:
    faults = Faults()
    # The big file is held back until both pulls have asked for the manifest: they overlap.
    faults.hold[BIG_URL] = lambda: len(faults.served("/org/m/manifest.json")) == 2
    dest = tmp_path / "dest"
    with serving(FaultyApp(create_mirror_app(root), faults)) as url:
        command = [
            sys.executable,
            "-m",
            "seekserve",
            "pull",
            "org/m",
            "--mirror",
            url,
            "--dest",
            str(dest),
            "-q",
        ]
        processes = [
            subprocess.Popen(
                command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    _assert_pulled(dest)
    served = sum(s.num_bytes for s in faults.log if s.path.endswith(".safetensors"))
    assert served == len(BIG) + len(SMALL), "each file crossed the network once"
    first, second = sorted(s.started for s in faults.served("/org/m/manifest.json"))
    [big] = faults.served(BIG_URL)
    assert first < big.started and second < big.ended, "the second pull started while the first was fetching"
    fetched = [int(re.search(r"\((\d+) fetched", out)[1]) for out, _ in outputs]  # type: ignore[index]
    assert sum(fetched) == 5, f"the two pulls shared the five files between them: {fetched}"


def test_unknown_model_on_the_mirror(root: Path, tmp_path: Path) -> None:
    with (
        serving(create_mirror_app(root)) as url,
        pytest.raises(PullError, match=rf"mirror {url} has no model 'org/nope' .*: 404\); GET {url}/ lists"),
    ):
        pull(PullRequest("org/nope", mirror=url, dest=tmp_path / "d"))


def test_unreachable_mirror() -> None:
    with pytest.raises(PullError, match=r"cannot reach http://127.0.0.1:9/org/m/manifest.json"):
        pull(PullRequest("org/m", mirror="http://127.0.0.1:9"), config=PullConfig(timeout_s=2))


def test_sha256_of_the_pulled_files_are_recorded_for_a_mirror(root: Path, tmp_path: Path) -> None:
    with serving(create_mirror_app(root)) as url:
        pull(PullRequest("org/m", mirror=url, dest=tmp_path / "dest"), config=FAST)
    recorded = json.loads((tmp_path / "dest/.seekserve/checksums.json").read_text())
    assert recorded["model-00001.safetensors"]["sha256"] == hashlib.sha256(BIG).hexdigest()
