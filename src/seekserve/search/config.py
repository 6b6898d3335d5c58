"""Web-search grounding settings: one frozen dataclass, the defaults of the server's and gateway's flags.

Values are checked here (ranges, URL and host syntax); whether the chosen provider has what it needs
(a folder, a URL, an API key) is checked when it is built (`providers.make_provider`), so a config
with search switched off needs none of them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from yarl import URL

from seekserve import __version__
from seekserve.errors import ConfigError

__all__ = [
    "DEFAULT_USER_AGENT",
    "ProviderKind",
    "QueryMode",
    "SafeSearch",
    "SearchConfig",
    "WebSearchMode",
    "check_host_pattern",
]

WebSearchMode = Literal["off", "auto", "on"]
"""off: no request searches; auto: a request that asks (web_search, web_search_options) searches;
on: every chat request searches unless it sends web_search: false."""

DEFAULT_USER_AGENT = f"seekserve/{__version__} (web search grounding)"

# A DNS name: labels of letters, digits and hyphens (punycode for IDNs), optional `*.` wildcard.
_HOST_NAME = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ProviderKind(StrEnum):
    """Where search results come from (`--search-provider`)."""

    LOCAL = "local"
    """BM25 over a folder of .txt/.md/.html files (`search_dir`): offline, the default."""
    SEARXNG = "searxng"
    """A SearXNG instance's JSON API (`searxng_url`)."""
    BING = "bing"
    """Bing Web Search API v7 (SEEKSERVE_BING_API_KEY)."""
    BRAVE = "brave"
    """Brave Search API (SEEKSERVE_BRAVE_API_KEY)."""
    TAVILY = "tavily"
    """Tavily Search API (SEEKSERVE_TAVILY_API_KEY)."""


class QueryMode(StrEnum):
    """How a request's search queries are made (`--search-queries`)."""

    LAST = "last"
    """The last user message as written: no model call (the fast path)."""
    MODEL = "model"
    """1 to max_queries self-contained queries written by a model from the conversation."""


class SafeSearch(StrEnum):
    """Adult-content filtering asked of the provider (the local provider has none)."""

    OFF = "off"
    MODERATE = "moderate"
    STRICT = "strict"


def check_host_pattern(entry: str) -> str:
    """`entry` normalized (lowercase, no trailing dot) if it is an allow-list entry: a host name,
    `*.domain` (its subdomains), an IP address or a CIDR network; ConfigError otherwise."""
    value = entry.strip().lower().rstrip(".")
    try:
        ipaddress.ip_network(value, strict=False)
        return value
    except ValueError:
        pass
    if _HOST_NAME.match(value) and len(value) <= 253:
        return value
    raise ConfigError(
        f"search allow_hosts entry {entry!r} is not a host name, `*.domain`, IP address or CIDR "
        f"network: write e.g. wiki.intranet, *.corp.example, 10.1.2.3 or 10.0.0.0/8"
    )


def _check_url(name: str, value: str | None) -> None:
    if value is None:
        return
    try:
        url = URL(value)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"search {name}={value!r} is not an http(s) URL with a host: write e.g. http://127.0.0.1:8080"
        )


def _check_range(name: str, value: float, low: float, high: float, fix: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"search {name}={value!r} is outside [{_num(low)}, {_num(high)}]: {fix}")


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of web-search grounding (`--search-*` flags; the gateway config's `search:` keys)."""

    provider: ProviderKind = ProviderKind.LOCAL
    """Where results come from; a string is converted (`"searxng"`)."""
    search_dir: Path | None = None
    """The local provider's folder of .txt/.md/.html files (searched recursively); needed for `local`."""
    local_base_url: str | None = None
    """URL prefix of the local provider's documents (`{local_base_url}/{relative path}`); None: file://."""
    searxng_url: str | None = None
    """Base URL of the SearXNG instance (`http://host:8080`); needed for `searxng`."""
    searxng_categories: tuple[str, ...] = ("general",)
    """SearXNG categories searched."""
    api_url: str | None = None
    """Base URL of the Bing/Brave/Tavily API instead of the public one (a compatible proxy, a test fake)."""
    safesearch: SafeSearch = SafeSearch.MODERATE
    """Adult-content filtering asked of SearXNG, Bing and Brave."""
    allow_hosts: tuple[str, ...] = ()
    """Hosts the fetcher may reach although they resolve to private addresses: names, `*.domain`,
    IP addresses, CIDR networks. Cloud metadata endpoints open only when named exactly."""
    user_agent: str = DEFAULT_USER_AGENT
    """User-Agent of page fetches and provider calls."""
    max_results: int = 5
    """Search results asked of the provider, and pages fetched, per query."""
    page_timeout_s: float = 2.0
    """A page's fetch (every redirect hop, headers and body) must end within this."""
    total_budget_s: float = 3.0
    """A request's whole search (provider call, fetches, extraction) must end within this; then the
    answer goes on without it. Also the time limit of one provider call."""
    max_page_bytes: int = 2 * 1024 * 1024
    """A page's body (decompressed) larger than this is refused; reading stops there."""
    max_redirects: int = 5
    """Redirects followed per page; one more is an error."""
    max_connections: int = 32
    """Open connections of the fetcher's pool (all hosts together)."""
    passage_words: int = 150
    """Target length of a passage in words (a CJK character counts as one); cuts fall at sentence ends."""
    max_context_tokens: int = 2000
    """Tokens of page text put in the prompt (estimated: extract.approx_tokens)."""
    queries: QueryMode = QueryMode.LAST
    """`last`: search the last user message as written; `model`: a model writes 1 to max_queries
    queries from the conversation (follow-ups get self-contained queries), within half the total
    budget, else the last message is searched."""
    max_queries: int = 3
    """Queries a model may write; each is searched and their results merged by rank."""
    query_model: str | None = None
    """The model that writes queries (gateway only: a lighter model it routes); None: the request's
    own model. `seekserve serve` has one model and uses it."""
    cache_ttl_s: float = 0.0
    """Keep search results and read pages this long and reuse them (search/cache.py); 0: off. In the
    gateway the response cache's store and TTL are used when it has one."""

    def __post_init__(self) -> None:
        self._coerce()
        _check_url("searxng_url", self.searxng_url)
        _check_url("api_url", self.api_url)
        _check_url("local_base_url", self.local_base_url)
        if not self.searxng_categories or not all(
            re.fullmatch(r"[a-z_ ]+", c) for c in self.searxng_categories
        ):
            raise ConfigError(
                f"search searxng_categories={self.searxng_categories!r} must be one or more SearXNG "
                f"category names: e.g. ('general',) or ('general', 'news')"
            )
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise ConfigError(
                f"search user_agent={self.user_agent!r} must be one non-empty line: "
                f"e.g. {DEFAULT_USER_AGENT!r}"
            )
        _check_range("max_results", self.max_results, 1, 20, "ask for 1 to 20 results")
        _check_range("page_timeout_s", self.page_timeout_s, 0.01, 60, "give a page 0.01 to 60 s")
        _check_range("total_budget_s", self.total_budget_s, 0.01, 120, "give a search 0.01 to 120 s")
        _check_range(
            "max_page_bytes", self.max_page_bytes, 1024, 64 * 1024 * 1024, "cap pages at 1 KiB to 64 MiB"
        )
        _check_range("cache_ttl_s", self.cache_ttl_s, 0, 7 * 86400, "keep results 0 (off) to 604800 s")
        _check_range("max_queries", self.max_queries, 1, 5, "let the model write 1 to 5 queries")
        _check_range("max_redirects", self.max_redirects, 0, 20, "follow 0 to 20 redirects")
        _check_range("max_connections", self.max_connections, 1, 1024, "pool 1 to 1024 connections")
        _check_range("passage_words", self.passage_words, 20, 1000, "cut passages of 20 to 1000 words")
        _check_range(
            "max_context_tokens",
            self.max_context_tokens,
            self.passage_words * 2,
            1_000_000,
            f"give the context at least two passages' worth (2 x {self.passage_words} words)",
        )

    def _coerce(self) -> None:
        """Strings from flags and YAML into the fields' types (a frozen dataclass: object.__setattr__)."""
        for name, kind in (("provider", ProviderKind), ("queries", QueryMode), ("safesearch", SafeSearch)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                kinds = ", ".join(k.value for k in kind)
                raise ConfigError(f"search {name} {value!r} is not one of: {kinds}") from None
        if self.search_dir is not None:
            object.__setattr__(self, "search_dir", Path(self.search_dir).expanduser())
        object.__setattr__(self, "allow_hosts", tuple(check_host_pattern(h) for h in self.allow_hosts))
        object.__setattr__(self, "searxng_categories", tuple(self.searxng_categories))
