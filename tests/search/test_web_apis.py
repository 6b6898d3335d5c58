"""Bing, Brave and Tavily against fakes of their documented JSON shapes (api_url points at them)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest

from search.web import FakeApis, serving
from seekserve.env import Environment
from seekserve.errors import ConfigError
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.errors import ProviderStatus
from seekserve.search.providers import BraveProvider, SearchResult, make_provider

KEYS = {
    "SEEKSERVE_BING_API_KEY": "k-123",
    "SEEKSERVE_BRAVE_API_KEY": "k-123",
    "SEEKSERVE_TAVILY_API_KEY": "k-123",
}


def search(
    kind: str, query: str = "kestrel", keys: dict[str, str] = KEYS, **kwargs: Any
) -> tuple[list[SearchResult], FakeApis]:
    fake = FakeApis()

    async def main() -> list[SearchResult]:
        async with serving(fake.app()) as port:
            config = SearchConfig(provider=kind, api_url=f"http://127.0.0.1:{port}", safesearch="off")  # type: ignore[arg-type]
            env = Environment.read({"SEEKSERVE_HOME": "/tmp/unused", **keys})
            async with make_provider(config, env) as provider:
                return await provider.search(query, **{"num_results": 5, **kwargs})

    return asyncio.run(main()), fake


def test_bing() -> None:
    results, fake = search("bing", language="en-US", time_range="week")
    assert results == [
        SearchResult("https://b.example/1", "Kestrel Bridge", "Reopened on Tuesday", 1),
        SearchResult("https://b.example/2", "Ferry", "Leaves at 7:15", 2),
    ]
    path, params, headers = fake.requests[0]
    assert path == "/v7.0/search" and headers["Ocp-Apim-Subscription-Key"] == "k-123"
    assert params == {
        "q": "kestrel",
        "count": "5",
        "safeSearch": "Off",
        "textFormat": "Raw",
        "setLang": "en-US",
        "mkt": "en-US",
        "freshness": "Week",
    }


def test_bing_year_is_a_date_range_and_no_web_pages_is_no_hits() -> None:
    results, fake = search("bing", query="nothing", time_range="year")
    today = datetime.date.today()
    assert results == []
    assert fake.requests[0][1]["freshness"] == f"{today - datetime.timedelta(days=365)}..{today}"


def test_brave() -> None:
    results, fake = search("brave", language="zh-CN", time_range="day")
    assert results == [SearchResult("https://v.example/1", "Kestrel Bridge", "The bridge reopened", 1)]
    path, params, headers = fake.requests[0]
    assert path == "/res/v1/web/search" and headers["X-Subscription-Token"] == "k-123"
    assert params == {
        "q": "kestrel",
        "count": "5",
        "safesearch": "off",
        "text_decorations": "false",
        "search_lang": "zh-hans",
        "freshness": "pd",
    }


def test_brave_language_codes() -> None:
    provider = BraveProvider.__new__(BraveProvider)
    assert [provider.search_lang(t) for t in ("en-GB", "zh-TW", "ja", "de")] == ["en", "zh-hant", "jp", "de"]


def test_tavily() -> None:
    results, fake = search("tavily", time_range="month")
    assert results == [SearchResult("https://t.example/1", "Kestrel", "Reopened", 1)]
    path, body, headers = fake.requests[0]
    assert path == "/search" and headers["Authorization"] == "Bearer k-123"
    assert body == {
        "query": "kestrel",
        "max_results": 5,
        "search_depth": "basic",
        "topic": "general",
        "include_answer": False,
        "include_raw_content": False,
        "include_images": False,
        "time_range": "month",
    }


@pytest.mark.parametrize("kind", ["bing", "brave", "tavily"])
def test_a_refused_key_names_the_variable(kind: str) -> None:
    wrong = {name: "wrong" for name in KEYS}
    variable = f"SEEKSERVE_{kind.upper()}_API_KEY"
    with pytest.raises(ProviderStatus, match=rf"HTTP 401.*the API key was refused: check {variable}"):
        search(kind, keys=wrong)


@pytest.mark.parametrize("kind", ["bing", "brave", "tavily"])
def test_a_missing_key_is_a_config_error(kind: str, tmp_path: Path) -> None:
    variable = f"SEEKSERVE_{kind.upper()}_API_KEY"
    env = Environment.read({"SEEKSERVE_HOME": str(tmp_path), variable: "  "})
    with pytest.raises(ConfigError, match=f"the {kind} search provider needs an API key: set {variable}"):
        make_provider(SearchConfig(provider=ProviderKind(kind)), env)


def test_keys_stay_out_of_the_environment_repr() -> None:
    env = Environment.read({"SEEKSERVE_HOME": "/tmp/h", **KEYS})
    assert env.brave_api_key == "k-123" and "k-123" not in repr(env)
