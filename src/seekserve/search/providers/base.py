"""The search provider interface, its result type, and the HTTP plumbing of the API providers."""

from __future__ import annotations

import asyncio
import html
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar

import aiohttp

from seekserve.env import Environment
from seekserve.errors import InvalidRequestError
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.errors import ProviderAnswerError, ProviderStatus, ProviderUnreachable

__all__ = [
    "HttpProvider",
    "SearchProvider",
    "SearchResult",
    "TimeRange",
    "check_language",
    "check_time_range",
    "clean_snippet",
]

_MAX_ANSWER_BYTES = 8 * 1024 * 1024
_TAG = re.compile(r"<[^>]{0,200}>")
_LANGUAGE = re.compile(r"^(all|auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")


class TimeRange(StrEnum):
    """How recent results must be (`time_range`)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True)
class SearchResult:
    """One search hit. `rank` counts from 1 (the provider's best)."""

    url: str
    title: str
    snippet: str
    """Plain text (tags stripped, entities decoded), possibly empty."""
    rank: int
    text: str | None = None
    """The document's full text where the provider already has it (the local provider); None: fetch `url`."""


def clean_snippet(text: str | None) -> str:
    """Provider snippet as plain text: tags (Brave's <strong>) dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(_TAG.sub("", text or "")).split())


def check_language(language: str | None) -> str | None:
    """`language` if it is a BCP 47 tag (`en`, `zh-CN`) or `all`/`auto`; InvalidRequestError otherwise."""
    if language is not None and not _LANGUAGE.match(language):
        raise InvalidRequestError(
            f"search language {language!r} is not a language tag: use e.g. en, en-US, zh-CN or all",
            param="language",
        )
    return language


def check_time_range(time_range: str | None) -> TimeRange | None:
    if time_range is None:
        return None
    try:
        return TimeRange(time_range)
    except ValueError:
        kinds = ", ".join(k.value for k in TimeRange)
        raise InvalidRequestError(
            f"search time_range {time_range!r} is not one of: {kinds} (or none)", param="time_range"
        ) from None


class SearchProvider(ABC):
    """A source of search results.

    Contract: search() returns at most `num_results` results with distinct URLs, ranked 1, 2, ... in
    the provider's order; a query with no hits returns []. Failures raise ProviderError subclasses
    only (InvalidRequestError for a bad `language`/`time_range`). It may be cancelled at any await
    (the caller's budget) and is safe to call concurrently on one event loop. A provider holds pooled
    connections (or an index) until aclose(); build it with from_config, which raises ConfigError
    when the config lacks what it needs (folder, URL, API key).
    """

    kind: ClassVar[ProviderKind]

    @classmethod
    @abstractmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> SearchProvider:
        """A provider set up from the config and the environment (API keys, SEEKSERVE_HOME)."""

    @abstractmethod
    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        """The best `num_results` results for `query`; `language` a BCP 47 tag (or all), `time_range`
        one of TimeRange's values (providers without such a filter ignore it)."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook: providers without connections have none)
        """Release connections; the provider is not used after."""

    async def __aenter__(self) -> SearchProvider:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class HttpProvider(SearchProvider):
    """Base of the providers behind a JSON HTTP API: one pooled session (opened on first use, in the
    running loop), every exchange within `timeout_s`, errors mapped to ProviderError subclasses.
    The session honours HTTP(S)_PROXY, since the API's URL is the operator's choice."""

    def __init__(self, base_url: str, *, user_agent: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of one request; ProviderUnreachable for network errors and timeouts."""
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=True)
        url = self.base_url + path
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.request(
                    method, url, params=params, json=body, headers={**self._headers, **(headers or {})}
                ) as response:
                    return response.status, await response.content.read(_MAX_ANSWER_BYTES)
        except TimeoutError:
            raise ProviderUnreachable(
                self.kind.value, f"no answer from {url} within {self.timeout_s:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderUnreachable(self.kind.value, f"{url}: {type(exc).__name__}: {exc}") from None

    def _json(self, status: int, body: bytes, hint: str = "") -> dict[str, Any]:
        """The JSON object of a 2xx answer; ProviderStatus for another status, ProviderAnswerError for
        a body that is not a JSON object."""
        if not 200 <= status < 300:
            raise ProviderStatus(self.kind.value, status, body, hint)
        try:
            answer = json.loads(body)
        except ValueError:
            raise ProviderAnswerError(self.kind.value, f"the answer is not JSON: {body[:120]!r}") from None
        if not isinstance(answer, dict):
            raise ProviderAnswerError(self.kind.value, f"the answer is not a JSON object: {body[:120]!r}")
        return answer

    def _results(
        self, items: Any, url_key: str, title_key: str, snippet_key: str, num: int
    ) -> list[SearchResult]:
        """SearchResults from a list of result objects: entries without an http(s) URL and repeated
        URLs skipped, at most `num`, ranked in order."""
        if not isinstance(items, list):
            raise ProviderAnswerError(self.kind.value, f"the results are not a list: {str(items)[:120]}")
        results: list[SearchResult] = []
        seen: set[str] = set()
        for item in items:
            url = item.get(url_key) if isinstance(item, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or url in seen:
                continue
            seen.add(url)
            title = clean_snippet(str(item.get(title_key) or "")) or url
            results.append(
                SearchResult(url, title, clean_snippet(str(item.get(snippet_key) or "")), len(results) + 1)
            )
            if len(results) == num:
                break
        return results
