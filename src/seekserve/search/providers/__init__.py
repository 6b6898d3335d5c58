"""Search providers behind one interface (base.SearchProvider), and the registry that builds the
configured one.

    local    local.LocalProvider        BM25 over a folder; offline, the default
    searxng  searxng.SearXNGProvider    a SearXNG instance's JSON API
    bing     web_apis.BingProvider      Bing Web Search API v7   (SEEKSERVE_BING_API_KEY)
    brave    web_apis.BraveProvider     Brave Search API         (SEEKSERVE_BRAVE_API_KEY)
    tavily   web_apis.TavilyProvider    Tavily Search API        (SEEKSERVE_TAVILY_API_KEY)
"""

from __future__ import annotations

from seekserve.env import Environment
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.providers.base import SearchProvider, SearchResult, TimeRange
from seekserve.search.providers.local import LocalProvider
from seekserve.search.providers.searxng import SearXNGProvider
from seekserve.search.providers.web_apis import BingProvider, BraveProvider, TavilyProvider

__all__ = [
    "PROVIDERS",
    "BingProvider",
    "BraveProvider",
    "LocalProvider",
    "SearXNGProvider",
    "SearchProvider",
    "SearchResult",
    "TavilyProvider",
    "TimeRange",
    "make_provider",
]

PROVIDERS: dict[ProviderKind, type[SearchProvider]] = {
    ProviderKind.LOCAL: LocalProvider,
    ProviderKind.SEARXNG: SearXNGProvider,
    ProviderKind.BING: BingProvider,
    ProviderKind.BRAVE: BraveProvider,
    ProviderKind.TAVILY: TavilyProvider,
}


def make_provider(config: SearchConfig, env: Environment | None = None) -> SearchProvider:
    """The provider `config.provider` names, built from the config and the environment (read now
    when not given); ConfigError when it lacks what it needs."""
    return PROVIDERS[config.provider].from_config(config, env or Environment.read())
