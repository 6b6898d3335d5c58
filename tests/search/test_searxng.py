from __future__ import annotations

import asyncio
from typing import Any

import pytest

from search.web import FakeSearx, serving
from seekserve.env import Environment
from seekserve.errors import ConfigError, InvalidRequestError
from seekserve.search.config import ProviderKind, SafeSearch, SearchConfig
from seekserve.search.errors import (
    EnginesUnresponsive,
    JsonFormatDisabled,
    ProviderAnswerError,
    ProviderStatus,
    ProviderUnreachable,
)
from seekserve.search.providers import SearchResult, SearXNGProvider, make_provider


def search(fake: FakeSearx, **kwargs: Any) -> list[SearchResult]:
    async def main() -> list[SearchResult]:
        async with serving(fake.app()) as port:
            url = f"http://127.0.0.1:{port}"
            config = SearchConfig(
                provider=ProviderKind.SEARXNG, searxng_url=url, safesearch=SafeSearch.STRICT
            )
            async with make_provider(config, Environment.read()) as provider:
                return await provider.search("kestrel bridge", **{"num_results": 5, **kwargs})

    return asyncio.run(main())


def test_results_are_cleaned_deduplicated_and_ranked() -> None:
    fake = FakeSearx()
    results = search(fake, language="en-GB", time_range="month")
    assert results == [
        SearchResult("https://lune.example/kestrel", "Kestrel & Bridge", "Reopened Tuesday", 1),
        SearchResult("https://lune.example/ferry", "Ferry times", "Leaves at 7:15", 2),
        SearchResult("https://lune.example/festival", "https://lune.example/festival", "Next spring", 3),
    ]
    assert fake.requests == [
        {
            "q": "kestrel bridge",
            "format": "json",
            "categories": "general",
            "pageno": "1",
            "safesearch": "2",
            "language": "en-GB",
            "time_range": "month",
        }
    ]


def test_num_results_caps_the_list() -> None:
    assert [r.rank for r in search(FakeSearx(), num_results=2)] == [1, 2]


def test_json_disabled_says_how_to_enable_it() -> None:
    with pytest.raises(JsonFormatDisabled) as caught:
        search(FakeSearx(mode="json-disabled"))
    assert caught.value.status == 403
    assert "add `json` to `search.formats` in its settings.yml" in str(caught.value)


def test_every_engine_failing_is_an_error_naming_them() -> None:
    with pytest.raises(EnginesUnresponsive) as caught:
        search(FakeSearx(mode="engines-down"))
    assert caught.value.engines == [("google", "timeout"), ("duckduckgo", "CAPTCHA")]
    assert "no results because its engines failed: google (timeout), duckduckgo (CAPTCHA)" in str(
        caught.value
    )


def test_no_hits_without_failed_engines_is_an_empty_list() -> None:
    assert search(FakeSearx(mode="empty")) == []


def test_rate_limit_and_garbage_answers_are_provider_errors() -> None:
    with pytest.raises(ProviderStatus, match=r"HTTP 429.*turn `server.limiter` off"):
        search(FakeSearx(mode="limited"))
    with pytest.raises(ProviderAnswerError, match="the answer is not JSON"):
        search(FakeSearx(mode="garbage"))


def test_bad_options_are_invalid_requests() -> None:
    with pytest.raises(
        InvalidRequestError, match="time_range 'decade' is not one of: day, week, month, year"
    ):
        search(FakeSearx(), time_range="decade")
    with pytest.raises(InvalidRequestError, match="language 'en_US!' is not a language tag"):
        search(FakeSearx(), language="en_US!")


def test_an_unreachable_instance_and_a_missing_url() -> None:
    async def main() -> None:
        async with serving(FakeSearx().app()) as port:
            pass  # the port is free again: nothing listens there
        config = SearchConfig(provider="searxng", searxng_url=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
        async with SearXNGProvider(config) as provider:
            await provider.search("q", num_results=3)

    with pytest.raises(ProviderUnreachable, match=r"search provider searxng: http://127\.0\.0\.1:"):
        asyncio.run(main())
    with pytest.raises(ConfigError, match="pass --searxng-url"):
        make_provider(SearchConfig(provider="searxng"), Environment.read())  # type: ignore[arg-type]
