from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seekserve.errors import ConfigError
from seekserve.search.config import DEFAULT_USER_AGENT, ProviderKind, SafeSearch, SearchConfig


def test_defaults() -> None:
    config = SearchConfig()
    assert config.provider is ProviderKind.LOCAL and config.safesearch is SafeSearch.MODERATE
    assert (config.total_budget_s, config.max_redirects, config.max_results) == (3.0, 5, 5)
    assert config.user_agent == DEFAULT_USER_AGENT == "seekserve/0.1.0 (web search grounding)"


def test_strings_from_flags_are_converted() -> None:
    config = SearchConfig(
        provider="searxng",  # type: ignore[arg-type]
        safesearch="strict",  # type: ignore[arg-type]
        search_dir="~/docs",  # type: ignore[arg-type]
        allow_hosts=["Wiki.Corp.", "10.0.0.0/8"],  # type: ignore[arg-type]
        searxng_url="http://127.0.0.1:8080",
    )
    assert config.provider is ProviderKind.SEARXNG and config.safesearch is SafeSearch.STRICT
    assert config.search_dir == Path("~/docs").expanduser()
    assert config.allow_hosts == ("wiki.corp", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"provider": "google"},
            "search provider 'google' is not one of: local, searxng, bing, brave, tavily",
        ),
        ({"safesearch": "high"}, "search safesearch 'high' is not one of: off, moderate, strict"),
        ({"queries": "smart"}, "search queries 'smart' is not one of: last, model"),
        ({"max_queries": 0}, "max_queries=0 is outside [1, 5]: let the model write 1 to 5 queries"),
        ({"searxng_url": "127.0.0.1:8080"}, "searxng_url='127.0.0.1:8080' is not an http(s) URL with a host"),
        ({"api_url": "ftp://x"}, "api_url='ftp://x' is not an http(s) URL"),
        ({"allow_hosts": ("bad host!",)}, "allow_hosts entry 'bad host!' is not a host name, `*.domain`, IP"),
        ({"allow_hosts": ("*.",)}, "allow_hosts entry '*.' is not a host name"),
        ({"max_results": 0}, "max_results=0 is outside [1, 20]: ask for 1 to 20 results"),
        ({"max_results": 21}, "max_results=21 is outside [1, 20]"),
        ({"page_timeout_s": 0}, "page_timeout_s=0 is outside [0.01, 60]"),
        ({"total_budget_s": -1.0}, "total_budget_s=-1.0 is outside [0.01, 120]"),
        ({"max_page_bytes": 10}, "max_page_bytes=10 is outside [1024, 67108864]"),
        ({"max_redirects": 21}, "max_redirects=21 is outside [0, 20]"),
        ({"max_connections": 0}, "max_connections=0 is outside [1, 1024]"),
        ({"passage_words": 5}, "passage_words=5 is outside [20, 1000]"),
        (
            {"max_context_tokens": 100},
            "max_context_tokens=100 is outside [300, 1000000]: give the context at least",
        ),
        ({"user_agent": "a\r\nX-Evil: 1"}, "user_agent='a\\r\\nX-Evil: 1' must be one non-empty line"),
        ({"searxng_categories": ()}, "searxng_categories=() must be one or more SearXNG category names"),
    ],
)
def test_bad_values_name_the_value_the_limit_and_the_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SearchConfig(**fields)
    assert message in str(caught.value)
