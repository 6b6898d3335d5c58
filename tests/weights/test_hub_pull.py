"""Pulls from the hub's HTTP API, against a fake hub on loopback reached through HF_ENDPOINT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from seekserve.errors import ConfigError, PullError
from seekserve.weights import pull as pull_module
from seekserve.weights.config import PullConfig
from seekserve.weights.pull import PullRequest, pull
from weights.servers import COMMIT, FakeHub, make_folder, random_bytes, serving

WEIGHTS = random_bytes(3 << 20, seed=3)
FILES = {
    "config.json": b'{"model_type": "qwen2"}',
    "model.safetensors": WEIGHTS,
    "tokenizer.json": b'{"version": "1.0"}',
    "original/consolidated.pth": b"not what seekserve loads",
    "README.md": b"# model card",
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub({"org/model": make_folder(tmp_path / "repo", FILES)}, lfs={"model.safetensors"})
    with serving(fake.app()) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(pull_module, "hub_token", lambda: None)
        yield fake


def test_pull_from_the_hub_verifies_lfs_and_small_files(hub: FakeHub, tmp_path: Path) -> None:
    result = pull(PullRequest("org/model", dest=tmp_path / "dest"), config=PullConfig(range_bytes=1 << 20))
    dest = tmp_path / "dest"
    assert sorted(p.name for p in dest.iterdir() if p.is_file()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert result.revision == COMMIT
    origin = json.loads((dest / ".seekserve/origin.json").read_text())
    assert origin["revision"] == COMMIT and origin["source"].startswith("the hub (http://127.0.0.1:")
    paths = [path for path, _ in hub.requests]
    assert paths[:3] == [
        "/api/models/org/model/revision/main",
        "/api/models/org/model/tree/" + COMMIT,
        "/api/models/org/model/tree/" + COMMIT,  # the second and third pages (Link: rel="next")
    ]
    assert f"/org/model/resolve/{COMMIT}/model.safetensors" in paths
    assert paths.count("/cdn/org/model/model.safetensors") == 3, "three ranges of 1 MiB, after the redirect"


def test_a_small_file_with_the_wrong_git_blob_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    original = hub._item

    def lying(folder: Path, path: Path) -> dict[str, object]:
        item = original(folder, path)
        if item["path"] == "config.json":
            item["oid"] = "f" * 40
        return item

    hub._item = lying  # type: ignore[method-assign]
    with pytest.raises(
        PullError, match=rf"config.json from the hub .* failed its checksum \(git blob {'f' * 40}\)"
    ):
        pull(PullRequest("org/model", dest=tmp_path / "dest"))


def test_include_picks_other_files(hub: FakeHub, tmp_path: Path) -> None:
    pull(PullRequest("org/model", dest=tmp_path / "dest", include=("original/*", "README.md")))
    dest = tmp_path / "dest"
    assert (dest / "original/consolidated.pth").read_bytes() == FILES["original/consolidated.pth"]
    assert sorted(p.name for p in dest.rglob("*") if p.is_file() and ".seekserve" not in p.parts) == [
        "README.md",
        "consolidated.pth",
    ]


def test_the_token_goes_with_every_request(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.token = "hf_secret"
    with pytest.raises(PullError, match=r"org/model on the hub .* needs a login .*401.*set HF_TOKEN"):
        pull(PullRequest("org/model", dest=tmp_path / "dest"))
    monkeypatch.setattr(pull_module, "hub_token", lambda: "hf_secret")
    pull(PullRequest("org/model", dest=tmp_path / "dest"))
    assert {auth for path, auth in hub.requests if path.startswith("/api/")} >= {"Bearer hf_secret"}


def test_unknown_model_and_bad_ids(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match=r"has no model 'org/other' at revision 'v2' \(404\)"):
        pull(PullRequest("org/other", revision="v2", dest=tmp_path / "dest"))
    with pytest.raises(ConfigError, match=r"'not-a-hub-id' is not a hub id: give org/name"):
        pull(PullRequest("not-a-hub-id"))
    with pytest.raises(ConfigError, match=r"--revision v2 is for the hub"):
        pull(PullRequest("org/model", mirror="http://127.0.0.1:9", revision="v2"))


def test_a_gguf_only_repo_needs_one_file_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_folder(tmp_path / "repo", {"m-Q4_K_M.gguf": b"GGUF1", "m-Q8_0.gguf": b"GGUF2"})
    fake = FakeHub({"org/gguf": repo})
    with serving(fake.app()) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(pull_module, "hub_token", lambda: None)
        with pytest.raises(PullError, match=r"holds 2 GGUF files .* --include 'm-Q4_K_M.gguf'"):
            pull(PullRequest("org/gguf", dest=tmp_path / "dest"))
        pull(PullRequest("org/gguf", dest=tmp_path / "dest", include=("*Q8_0*",)))
    assert [p.name for p in (tmp_path / "dest").iterdir() if p.is_file()] == ["m-Q8_0.gguf"]
