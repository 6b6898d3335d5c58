"""`seekserve mirror serve`: manifests, ranges and what is never served, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from factories import subprocess_env
from seekserve.weights import checksums
from seekserve.weights.mirror import create_mirror_app
from weights.servers import make_folder, random_bytes, serving

WEIGHTS = random_bytes(300_000)
FILES = {
    "org/model/config.json": b'{"model_type": "llama"}',
    "org/model/model.safetensors": WEIGHTS,
    "org/model/sub/tokenizer.json": b"{}",
    "org/model/model-2.safetensors.part": b"partial",  # a pull in progress
    "org/model/model-2.safetensors.part.json": b"{}",
    "org/model/.seekserve/origin.json": b"{}",
    "solo/m.gguf": b"GGUF" + bytes(10),
    "notes/readme.txt": b"not a model",
}


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    root = make_folder(tmp_path / "root", FILES)
    with serving(create_mirror_app(root)) as url, httpx.Client(base_url=url) as client:
        yield client, root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_manifest_lists_the_files_with_sha256(mirror: tuple[httpx.Client, Path]) -> None:
    client, _ = mirror
    response = client.get("/org/model/manifest.json")
    assert response.status_code == 200
    assert response.json() == [
        {"path": "config.json", "size": 23, "sha256": _sha(FILES["org/model/config.json"])},
        {"path": "model.safetensors", "size": 300_000, "sha256": _sha(WEIGHTS)},
        {"path": "sub/tokenizer.json", "size": 2, "sha256": _sha(b"{}")},
    ]


def test_manifest_hashes_each_file_once_and_again_when_it_changes(
    mirror: tuple[httpx.Client, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, root = mirror
    hashed: list[str] = []
    real = checksums.hash_file
    monkeypatch.setattr(checksums, "hash_file", lambda p: hashed.append(p.name) or real(p))
    client.get("/org/model/manifest.json")
    assert sorted(hashed) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (root / "org/model/.seekserve/checksums.json").is_file(), "recorded for the next start"
    hashed.clear()
    client.get("/org/model/manifest.json")
    assert hashed == []
    (root / "org/model/config.json").write_bytes(b'{"model_type": "qwen2"}')
    os.utime(root / "org/model/config.json", ns=(1, 1))
    changed = client.get("/org/model/manifest.json").json()
    assert hashed == ["config.json"]
    assert changed[0] == {"path": "config.json", "size": 23, "sha256": _sha(b'{"model_type": "qwen2"}')}


def test_a_restarted_mirror_reads_the_recorded_checksums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "root", FILES)
    with serving(create_mirror_app(root)) as url:
        httpx.get(f"{url}/org/model/manifest.json")
    monkeypatch.setattr(checksums, "hash_file", lambda p: pytest.fail(f"{p} hashed again"))
    with serving(create_mirror_app(root)) as url:
        assert httpx.get(f"{url}/org/model/manifest.json").json()[1]["sha256"] == _sha(WEIGHTS)


@pytest.mark.parametrize(
    ("header", "content_range", "body"),
    [
        ("bytes=0-0", "bytes 0-0/300000", WEIGHTS[:1]),
        ("bytes=1000-1999", "bytes 1000-1999/300000", WEIGHTS[1000:2000]),
        ("bytes=299990-", "bytes 299990-299999/300000", WEIGHTS[-10:]),
        ("bytes=-5", "bytes 299995-299999/300000", WEIGHTS[-5:]),
        ("bytes=299999-400000", "bytes 299999-299999/300000", WEIGHTS[-1:]),
    ],
)
def test_ranges(mirror: tuple[httpx.Client, Path], header: str, content_range: str, body: bytes) -> None:
    client, _ = mirror
    response = client.get("/org/model/model.safetensors", headers={"Range": header})
    assert (response.status_code, response.headers["content-range"]) == (206, content_range)
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))


def test_a_range_past_the_end_is_416_with_the_size(mirror: tuple[httpx.Client, Path]) -> None:
    client, _ = mirror
    response = client.get("/org/model/model.safetensors", headers={"Range": "bytes=300000-"})
    assert (response.status_code, response.headers["content-range"]) == (416, "bytes */300000")


def test_whole_file_and_head(mirror: tuple[httpx.Client, Path]) -> None:
    client, _ = mirror
    whole = client.get("/org/model/model.safetensors")
    assert (whole.status_code, whole.headers["accept-ranges"], whole.content) == (200, "bytes", WEIGHTS)
    head = client.head("/org/model/model.safetensors")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "300000", b"")


@pytest.mark.parametrize(
    "path",
    [
        "/org/model/model-2.safetensors.part",
        "/org/model/model-2.safetensors.part.json",
        "/org/model/.seekserve/origin.json",
        "/org/model/%2e%2e/model/config.json",
        "/org/model/%2E%2E%2F%2E%2E%2Fsecret",
        "/org//model/config.json",
        "/org/missing/manifest.json",
        "/org/model",
    ],
)
def test_never_served(mirror: tuple[httpx.Client, Path], path: str) -> None:
    client, root = mirror
    (root.parent / "secret").write_text("outside the root")
    response = client.get(path)
    assert response.status_code == 404
    assert "GET / lists the models served" in response.json()["error"]


def test_index_lists_model_folders(mirror: tuple[httpx.Client, Path]) -> None:
    client, _ = mirror
    assert client.get("/").json() == {
        "models": [
            {"model": "org/model", "num_files": 3, "num_bytes": 300_025},
            {"model": "solo", "num_files": 1, "num_bytes": 14},
        ]
    }


def test_the_command_serves_a_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "root", FILES)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "seekserve", "mirror", "serve", str(root), "--port", str(port)]
    process = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/solo/manifest.json")
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline, "the mirror did not start"
                time.sleep(0.2)
        assert response.json() == [{"path": "m.gguf", "size": 14, "sha256": _sha(FILES["solo/m.gguf"])}]
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert f"serving the model folders under {root} on http://127.0.0.1:{port}/" in err
