from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from search.web import ARTICLE_HTML
from seekserve.env import Environment
from seekserve.errors import ConfigError
from seekserve.search.config import SearchConfig
from seekserve.search.providers import LocalProvider, SearchResult, make_provider
from seekserve.search.providers.local import LocalIndex, snippet

FERRY = "# Glasson ferry\n\nThe ferry to Glasson leaves every morning at a quarter past seven.\n"
FESTIVAL = "Festival\nThe town council plans a festival on the Kestrel Bridge next spring.\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "news").mkdir(parents=True)
    (docs / "news" / "kestrel.html").write_text(ARTICLE_HTML)
    (docs / "ferry.md").write_text(FERRY)
    (docs / "festival.txt").write_text(FESTIVAL)
    (docs / "image.png").write_bytes(b"\x89PNG")
    (docs / ".hidden.txt").write_text("kestrel kestrel kestrel")
    return docs


def provider_for(folder: Path, home: Path, **fields: object) -> LocalProvider:
    config = SearchConfig(search_dir=folder, **fields)  # type: ignore[arg-type]
    provider = make_provider(config, Environment.read({"SEEKSERVE_HOME": str(home)}))
    assert isinstance(provider, LocalProvider)
    return provider


def search(provider: LocalProvider, query: str, num_results: int = 5) -> list[SearchResult]:
    return asyncio.run(provider.search(query, num_results=num_results))


def test_bm25_over_the_folder_ranks_and_carries_the_text(folder: Path, tmp_path: Path) -> None:
    results = search(provider_for(folder, tmp_path / "home"), "Who designed the Kestrel Bridge?")
    assert [(r.url, r.title, r.rank) for r in results] == [
        (
            (folder / "news" / "kestrel.html").resolve().as_uri(),
            "The Kestrel Bridge reopens - Lune Valley News",
            1,
        ),
        ((folder / "festival.txt").resolve().as_uri(), "festival", 2),
    ]
    assert results[0].text is not None and "Margaret Holloway" in results[0].text
    assert "Subscribe" not in results[0].text
    assert results[0].snippet.startswith("The Kestrel Bridge reopens\nThe Kestrel".replace("\n", " "))
    assert results[1].text == FESTIVAL.strip()


def test_markdown_titles_base_urls_and_no_hits(folder: Path, tmp_path: Path) -> None:
    provider = provider_for(folder, tmp_path / "home", local_base_url="https://docs.corp/kb/")
    assert [(r.url, r.title) for r in search(provider, "ferry")] == [
        ("https://docs.corp/kb/ferry.md", "Glasson ferry")
    ]
    assert search(provider, "zebra") == []
    assert search(provider, "kestrel", num_results=1)[0].rank == 1


def test_the_index_is_cached_on_disk_and_rebuilt_when_files_change(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    search(provider_for(folder, home), "ferry")
    cached = sorted((home / "search" / "local").iterdir())
    assert len(cached) == 1 and (cached[0] / "docs.json").is_file()

    (cached[0] / "docs.json").write_text('[{"path": "ferry.md", "title": "From the cache", "text": "ferry"}]')
    assert [r.title for r in search(provider_for(folder, home), "ferry")] == ["From the cache"]

    stamp = (folder / "ferry.md").stat().st_mtime_ns + 10**9
    os.utime(folder / "ferry.md", ns=(stamp, stamp))
    assert [r.title for r in search(provider_for(folder, home), "ferry")] == ["Glasson ferry"]
    assert len(list((home / "search" / "local").iterdir())) == 1  # the stale index was removed


def test_an_unreadable_cache_is_rebuilt(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    search(provider_for(folder, home), "ferry")
    (cache,) = (home / "search" / "local").iterdir()
    (cache / "docs.json").write_text("{not json")
    index = LocalIndex.open(folder, home / "search" / "local", 1 << 20)
    assert sorted(d.path for d in index.docs) == ["ferry.md", "festival.txt", "news/kestrel.html"]


def test_files_over_the_size_cap_and_broken_links_are_skipped(folder: Path, tmp_path: Path) -> None:
    (folder / "big.txt").write_text("kestrel " * 5000)
    (folder / "gone.md").symlink_to(tmp_path / "nowhere.md")
    index = LocalIndex.open(folder, tmp_path / "cache", max_file_bytes=8192)
    assert sorted(d.path for d in index.docs) == ["ferry.md", "festival.txt", "news/kestrel.html"]


def test_an_empty_folder_has_no_results(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert search(provider_for(tmp_path / "empty", tmp_path / "home"), "anything") == []


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    env = Environment.read({"SEEKSERVE_HOME": str(tmp_path)})
    with pytest.raises(
        ConfigError, match=r"needs a folder of .txt/.md/.html files \(none given\): pass --search-dir"
    ):
        make_provider(SearchConfig(), env)
    with pytest.raises(ConfigError, match="is not a folder"):
        make_provider(SearchConfig(search_dir=tmp_path / "nope"), env)


def test_snippets_start_near_the_first_hit() -> None:
    text = "Intro words here. " * 20 + "The rivets were replaced in the spring of that year."
    assert snippet(text, ["rivet"], num_chars=60).startswith("… ")
    assert "rivets were replaced" in snippet(text, ["rivet"], num_chars=80)
    assert snippet("short text", ["zebra"]) == "short text"
