"""Web search as a serving process runs it: the provider, fetcher and grounder it holds for its
lifetime, and which requests search with what options (shared by `seekserve serve` and the gateway).

    off    no request searches; one that asks gets `search_error`
    auto   a request searches when it asks: `web_search_options` or `web_search: true`
    on     every chat request searches unless it sends `web_search: false`

`search_context_size` scales the results asked for and the context's token budget (low: half,
medium: the configured max_results and max_context_tokens, high: double). The location's country
gives the search language (a small table; others: none), its time zone the date in the prompt.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import zoneinfo
from dataclasses import dataclass
from typing import Any

from seekserve.env import Environment
from seekserve.search.cache import KeyValueCache, MemoryCache, SearchCache
from seekserve.search.config import SearchConfig, WebSearchMode
from seekserve.search.errors import SearchError
from seekserve.search.extract import extractor_name
from seekserve.search.fetch import Fetcher
from seekserve.search.grounding import Grounder
from seekserve.search.providers import LocalProvider, make_provider

__all__ = ["CONTEXT_SIZES", "DISABLED", "SearchAsk", "WebSearch", "WebSearchMode", "plan_search"]

log = logging.getLogger(__name__)

DISABLED = (
    "web search is off on this server: start it with --web-search auto (or on) and a --search-provider "
    "to answer from search results"
)
CONTEXT_SIZES = {"low": 0.5, "medium": 1.0, "high": 2.0}
"""search_context_size -> the factor of max_results and max_context_tokens."""
_COUNTRY_LANGUAGE = {
    "CN": "zh-CN", "TW": "zh-TW", "HK": "zh-HK", "SG": "en-SG", "JP": "ja-JP", "KR": "ko-KR",
    "US": "en-US", "GB": "en-GB", "AU": "en-AU", "CA": "en-CA", "IN": "en-IN", "DE": "de-DE",
    "FR": "fr-FR", "ES": "es-ES", "IT": "it-IT", "NL": "nl-NL", "BR": "pt-BR", "RU": "ru-RU",
}  # fmt: skip


@dataclass(frozen=True)
class SearchAsk:
    """What one request's search asks for."""

    num_results: int
    max_context_tokens: int
    language: str | None
    today: datetime.date


def plan_search(
    mode: str,
    config: SearchConfig,
    *,
    web_search: bool | None,
    asked: bool,
    context_size: str = "medium",
    country: str | None = None,
    timezone: str | None = None,
    now: datetime.datetime | None = None,
) -> SearchAsk | None:
    """The request's search, or None where it does not search. `asked`: it sent web_search_options;
    `context_size` one of CONTEXT_SIZES (checked by the caller)."""
    if web_search is False or (not asked and web_search is not True and mode != "on"):
        return None
    scale = CONTEXT_SIZES[context_size]
    zone: datetime.tzinfo | None = None
    if timezone:
        try:
            zone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = None  # an unknown zone only loses the local date
    return SearchAsk(
        num_results=min(20, max(1, round(config.max_results * scale))),
        max_context_tokens=round(config.max_context_tokens * scale),
        language=_COUNTRY_LANGUAGE.get((country or "").upper()),
        today=(now or datetime.datetime.now(zone)).date(),
    )


class WebSearch:
    """A process's provider, fetcher and grounder (built at startup; closed by aclose()). Building
    raises ConfigError when the provider lacks what it needs (folder, URL, API key). With
    config.cache_ttl_s > 0 results and pages are kept in `store` (a MemoryCache when none is given)."""

    def __init__(
        self, config: SearchConfig, env: Environment | None = None, store: KeyValueCache | None = None
    ) -> None:
        self.config = config
        self.provider = make_provider(config, env)
        self.fetcher = Fetcher(config)
        cache = None
        if config.cache_ttl_s > 0:
            kept = store if store is not None else MemoryCache(config.cache_ttl_s)  # an empty store is falsy
            cache = SearchCache(kept, config.provider.value)
        self.grounder = Grounder(config, self.provider, self.fetcher, cache=cache)
        self._strip: tuple[int, tuple[str, ...]] | None = None

    async def start(self) -> None:
        """Take the slow first steps off the first request: import the extractor, build the local
        index. A failure is logged; requests then degrade with its message."""
        name = await asyncio.to_thread(extractor_name)
        log.info("search: %s provider, %s extractor", self.config.provider, name)
        if isinstance(self.provider, LocalProvider):
            try:
                await self.provider.load_index()
            except SearchError as exc:
                log.warning("search: %s", exc)

    async def aclose(self) -> None:
        await self.provider.aclose()
        await self.fetcher.aclose()

    def strip_tokens(self, tokenizer: Any) -> tuple[str, ...]:
        """The tokenizer's special and added tokens, which page text must not carry into a prompt."""
        if self._strip is None or self._strip[0] != id(tokenizer):
            tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
            if hasattr(tokenizer, "get_added_vocab"):
                tokens |= set(tokenizer.get_added_vocab())
            ordered = sorted((t for t in tokens if len(t) > 1), key=len, reverse=True)
            self._strip = (id(tokenizer), tuple(ordered))
        return self._strip[1]
