"""SearXNG's JSON API: GET {searxng_url}/search?q=...&format=json.

Parameters sent: q, format=json, categories, language, time_range, pageno=1, safesearch (0 off,
1 moderate, 2 strict). Two answers need a clear message: 403 means the instance has JSON output
switched off (`search.formats` in its settings.yml must list `json`), and 200 with empty `results` but
non-empty `unresponsive_engines` ([[engine, reason], ...]) means every engine it asked failed.
"""

from __future__ import annotations

from typing import Any

from seekserve.env import Environment
from seekserve.errors import ConfigError
from seekserve.search.config import ProviderKind, SafeSearch, SearchConfig
from seekserve.search.errors import EnginesUnresponsive, JsonFormatDisabled
from seekserve.search.providers.base import HttpProvider, SearchResult, check_language, check_time_range

__all__ = ["SearXNGProvider"]

_SAFESEARCH = {SafeSearch.OFF: "0", SafeSearch.MODERATE: "1", SafeSearch.STRICT: "2"}
_LIMITER_HINT = (
    " (the instance's rate limiter refused this server: turn `server.limiter` off in its settings.yml "
    "for a private instance, or pass this server's address in its limiter's pass_ip list)"
)


def _unresponsive(answer: dict[str, Any]) -> list[tuple[str, str]]:
    engines = answer.get("unresponsive_engines") or []
    found = []
    for entry in engines if isinstance(engines, list) else []:
        if isinstance(entry, list | tuple) and entry:
            found.append((str(entry[0]), str(entry[1]) if len(entry) > 1 else "no reason given"))
    return found


class SearXNGProvider(HttpProvider):
    """Results of a SearXNG instance (self-hosted metasearch), first result page only."""

    kind = ProviderKind.SEARXNG

    def __init__(self, config: SearchConfig) -> None:
        if config.searxng_url is None:
            raise ConfigError(
                "the searxng search provider needs the instance's URL: pass --searxng-url "
                "http://HOST:8080 (search.searxng_url in the gateway's config)"
            )
        super().__init__(config.searxng_url, user_agent=config.user_agent, timeout_s=config.total_budget_s)
        self.categories = ",".join(config.searxng_categories)
        self.safesearch = _SAFESEARCH[config.safesearch]

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> SearXNGProvider:
        return cls(config)

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        params = {
            "q": query,
            "format": "json",
            "categories": self.categories,
            "pageno": "1",
            "safesearch": self.safesearch,
        }
        if check_language(language) is not None:
            params["language"] = str(language)
        period = check_time_range(time_range)
        if period is not None:
            params["time_range"] = period.value
        status, body = await self._exchange("GET", "/search", params=params)
        if status == 403:
            raise JsonFormatDisabled(self.base_url, body)
        answer = self._json(status, body, _LIMITER_HINT if status == 429 else "")
        results = self._results(answer.get("results"), "url", "title", "content", num_results)
        if not results:
            engines = _unresponsive(answer)
            if engines:
                raise EnginesUnresponsive(engines)
        return results
