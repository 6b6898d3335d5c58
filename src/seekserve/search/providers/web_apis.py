"""Commercial web search APIs, keys from the environment (env.Environment): Bing, Brave, Tavily.

    Bing    GET  {api}/v7.0/search?q&count&mkt&setLang&freshness&safeSearch   Ocp-Apim-Subscription-Key
            -> {"webPages": {"value": [{"name", "url", "snippet"}]}}  (no webPages: no hits)
    Brave   GET  {api}/res/v1/web/search?q&count&search_lang&freshness&safesearch   X-Subscription-Token
            -> {"web": {"results": [{"title", "url", "description"}]}}  (no web: no hits)
    Tavily  POST {api}/search {query, max_results, time_range, search_depth, ...}   Authorization: Bearer
            -> {"results": [{"title", "url", "content", "score"}]}

`api_url` in SearchConfig replaces the public base URL (a compatible proxy, a test fake). Microsoft
retired the public Bing Search APIs in August 2025; BingProvider serves deployments that still
have a v7-compatible endpoint.
"""

from __future__ import annotations

import datetime
from typing import Any

from seekserve.env import Environment
from seekserve.errors import ConfigError
from seekserve.search.config import ProviderKind, SafeSearch, SearchConfig
from seekserve.search.providers.base import (
    HttpProvider,
    SearchResult,
    TimeRange,
    check_language,
    check_time_range,
)

__all__ = ["BingProvider", "BraveProvider", "TavilyProvider"]

_BING_FRESHNESS = {TimeRange.DAY: "Day", TimeRange.WEEK: "Week", TimeRange.MONTH: "Month"}
_BING_SAFESEARCH = {SafeSearch.OFF: "Off", SafeSearch.MODERATE: "Moderate", SafeSearch.STRICT: "Strict"}
_BRAVE_FRESHNESS = {TimeRange.DAY: "pd", TimeRange.WEEK: "pw", TimeRange.MONTH: "pm", TimeRange.YEAR: "py"}
_BRAVE_LANGUAGES = {
    # Brave's search_lang codes where they differ from the tag's primary subtag.
    **dict.fromkeys(("zh", "zh-cn", "zh-sg", "zh-hans"), "zh-hans"),
    **dict.fromkeys(("zh-tw", "zh-hk", "zh-hant"), "zh-hant"),
    "ja": "jp",
}


def _key(key: str | None, provider: str, variable: str) -> str:
    if not key:
        raise ConfigError(
            f"the {provider} search provider needs an API key: set {variable} in the environment"
        )
    return key


def _auth_hint(status: int, variable: str) -> str:
    if status in (401, 403):
        return f" (the API key was refused: check {variable})"
    if status == 429:
        return " (rate limit or quota reached: retry later or raise the plan's limit)"
    return ""


def _section(answer: dict[str, Any], name: str, key: str) -> Any:
    """answer[name][key], or [] where the section is absent (the API's way of saying: no hits)."""
    section = answer.get(name)
    return section.get(key, []) if isinstance(section, dict) else []


class BingProvider(HttpProvider):
    """Bing Web Search API v7."""

    kind = ProviderKind.BING
    URL = "https://api.bing.microsoft.com"

    def __init__(self, config: SearchConfig, api_key: str) -> None:
        super().__init__(
            config.api_url or self.URL, user_agent=config.user_agent, timeout_s=config.total_budget_s
        )
        self._auth = {"Ocp-Apim-Subscription-Key": api_key}
        self.safesearch = _BING_SAFESEARCH[config.safesearch]

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> BingProvider:
        return cls(config, _key(env.bing_api_key, "bing", "SEEKSERVE_BING_API_KEY"))

    def _freshness(self, period: TimeRange) -> str:
        if period is TimeRange.YEAR:  # Bing has no "Year": a date range of the last 365 days
            today = datetime.date.today()
            return f"{today - datetime.timedelta(days=365)}..{today}"
        return _BING_FRESHNESS[period]

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        params = {"q": query, "count": str(num_results), "safeSearch": self.safesearch, "textFormat": "Raw"}
        if check_language(language) not in (None, "all", "auto"):
            params["setLang"] = str(language)
            if "-" in str(language):
                params["mkt"] = str(language)
        period = check_time_range(time_range)
        if period is not None:
            params["freshness"] = self._freshness(period)
        status, body = await self._exchange("GET", "/v7.0/search", params=params, headers=self._auth)
        answer = self._json(status, body, _auth_hint(status, "SEEKSERVE_BING_API_KEY"))
        return self._results(_section(answer, "webPages", "value"), "url", "name", "snippet", num_results)


class BraveProvider(HttpProvider):
    """Brave Search API, web results."""

    kind = ProviderKind.BRAVE
    URL = "https://api.search.brave.com"

    def __init__(self, config: SearchConfig, api_key: str) -> None:
        super().__init__(
            config.api_url or self.URL, user_agent=config.user_agent, timeout_s=config.total_budget_s
        )
        self._auth = {"X-Subscription-Token": api_key}
        self.safesearch = config.safesearch.value

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> BraveProvider:
        return cls(config, _key(env.brave_api_key, "brave", "SEEKSERVE_BRAVE_API_KEY"))

    def search_lang(self, language: str) -> str:
        tag = language.lower()
        return _BRAVE_LANGUAGES.get(tag) or _BRAVE_LANGUAGES.get(tag.split("-")[0]) or tag.split("-")[0]

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        params = {
            "q": query,
            "count": str(num_results),
            "safesearch": self.safesearch,
            "text_decorations": "false",
        }
        if check_language(language) not in (None, "all", "auto"):
            params["search_lang"] = self.search_lang(str(language))
        period = check_time_range(time_range)
        if period is not None:
            params["freshness"] = _BRAVE_FRESHNESS[period]
        status, body = await self._exchange("GET", "/res/v1/web/search", params=params, headers=self._auth)
        answer = self._json(status, body, _auth_hint(status, "SEEKSERVE_BRAVE_API_KEY"))
        return self._results(_section(answer, "web", "results"), "url", "title", "description", num_results)


class TavilyProvider(HttpProvider):
    """Tavily Search API (basic depth, general topic). It has no language filter: `language` is checked
    and otherwise ignored."""

    kind = ProviderKind.TAVILY
    URL = "https://api.tavily.com"

    def __init__(self, config: SearchConfig, api_key: str) -> None:
        super().__init__(
            config.api_url or self.URL, user_agent=config.user_agent, timeout_s=config.total_budget_s
        )
        self._auth = {"Authorization": f"Bearer {api_key}"}

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> TavilyProvider:
        return cls(config, _key(env.tavily_api_key, "tavily", "SEEKSERVE_TAVILY_API_KEY"))

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        check_language(language)
        body: dict[str, Any] = {
            "query": query,
            "max_results": num_results,
            "search_depth": "basic",
            "topic": "general",
            "include_answer": False,
            "include_raw_content": False,
            "include_images": False,
        }
        period = check_time_range(time_range)
        if period is not None:
            body["time_range"] = period.value
        status, data = await self._exchange("POST", "/search", body=body, headers=self._auth)
        answer = self._json(status, data, _auth_hint(status, "SEEKSERVE_TAVILY_API_KEY"))
        return self._results(answer.get("results"), "url", "title", "content", num_results)
