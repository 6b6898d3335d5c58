"""Grounder: search, fetch, extract and select under one budget; failures become `error`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from search.web import ARTICLE_HTML, FakeDns, FakeSearx, local_web, serving
from seekserve.env import Environment
from seekserve.search.cache import MemoryCache, SearchCache
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.fetch import Fetcher
from seekserve.search.grounding import Grounder, Grounding, query_of
from seekserve.search.providers import SearchProvider, SearchResult, make_provider

FERRY = "# Glasson ferry\n\nThe ferry to Glasson leaves every morning at a quarter past seven.\n"


def write_folder(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "kestrel.html").write_text(ARTICLE_HTML)
    (docs / "ferry.md").write_text(FERRY)
    return docs


def ground_local(tmp_path: Path, query: str, **kwargs: Any) -> Grounding:
    config = SearchConfig(search_dir=write_folder(tmp_path), passage_words=40, max_context_tokens=200)

    async def main() -> Grounding:
        env = Environment.read({"SEEKSERVE_HOME": str(tmp_path / "home")})
        async with make_provider(config, env) as provider, Fetcher(config) as fetcher:
            return await Grounder(config, provider, fetcher).ground(query, **kwargs)

    return asyncio.run(main())


def test_query_is_the_last_user_turn() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "  when does the ferry leave?\n"},
        {"role": "assistant", "content": "partial"},
    ]
    assert query_of(messages) == "when does the ferry leave?"
    assert query_of([{"role": "system", "content": "x"}]) is None
    assert query_of([{"role": "user", "content": "   "}]) is None


def test_local_folder_grounding_numbers_sources_with_their_passages(tmp_path: Path) -> None:
    g = ground_local(tmp_path, "how many rivets did the Kestrel Bridge get")
    assert g.error is None and g.error_kind is None and g.fetch_failures == ()
    assert g.num_results == 1  # the ferry notes share no word with the query
    assert [(s.number, s.rank, s.title) for s in g.sources] == [
        (1, 1, "The Kestrel Bridge reopens - Lune Valley News")
    ]
    assert g.sources[0].url == (tmp_path / "docs" / "kestrel.html").resolve().as_uri()
    assert "replaced all 412 rivets" in g.passages[0].text
    assert g.timings.fetch_s == 0.0  # the local provider has the text: nothing fetched
    assert g.timings.total_s >= g.timings.search_s + g.timings.extract_s > 0


def test_zero_context_budget_skips_search(tmp_path: Path) -> None:
    g = ground_local(tmp_path, "kestrel", max_context_tokens=0)
    assert g == Grounding("kestrel", timings=g.timings)
    assert g.timings.search_s == 0.0


class SlowProvider(SearchProvider):
    kind = ProviderKind.LOCAL

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> SlowProvider:
        return cls()

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        await asyncio.sleep(5)
        return []


def test_budget_exhaustion_degrades_with_the_stage_named() -> None:
    async def main() -> Grounding:
        config = SearchConfig(total_budget_s=0.05)
        async with Fetcher(config) as fetcher:
            return await Grounder(config, SlowProvider(), fetcher).ground("anything")

    g = asyncio.run(main())
    assert g.sources == () and g.error_kind == "SearchBudgetExceeded"
    assert g.error is not None and "budget of 0.05 s (during search)" in g.error
    assert 0.05 <= g.timings.search_s < 1.0


def test_unreachable_provider_degrades() -> None:
    async def main() -> Grounding:
        async with serving(FakeSearx().app()) as port:
            pass  # the port is closed again: nothing listens there
        config = SearchConfig(provider=ProviderKind.SEARXNG, searxng_url=f"http://127.0.0.1:{port}")
        async with make_provider(config, Environment.read()) as provider, Fetcher(config) as fetcher:
            return await Grounder(config, provider, fetcher).ground("kestrel")

    g = asyncio.run(main())
    assert g.sources == () and g.error_kind == "ProviderUnreachable"
    assert g.error is not None and g.error.startswith("search provider searxng: ")


def test_searxng_results_fetched_with_failures_counted_and_snippets_standing_in() -> None:
    async def main() -> Grounding:
        async with serving(local_web()) as web_port:
            base = f"http://web.test:{web_port}"
            results = [
                {"url": f"{base}/hops/1", "title": "Kestrel", "content": "reopened"},
                {"url": f"{base}/image.png", "title": "Picture", "content": "the bridge rivets photographed"},
                {"url": f"{base}/to?url=http://10.0.0.1/", "title": "Trap", "content": ""},
                {"url": f"{base}/slow", "title": "Slow", "content": ""},
            ]
            async with serving(FakeSearx(results=results).app()) as searx_port:
                config = SearchConfig(
                    provider=ProviderKind.SEARXNG,
                    searxng_url=f"http://127.0.0.1:{searx_port}",
                    allow_hosts=("web.test",),
                    passage_words=40,
                    max_context_tokens=400,
                    total_budget_s=1.0,
                )
                lookup = FakeDns({"web.test": [["127.0.0.1"]]})
                async with (
                    make_provider(config, Environment.read()) as provider,
                    Fetcher(config, lookup=lookup) as fetcher,
                ):
                    return await Grounder(config, provider, fetcher).ground("how many rivets were replaced")

    g = asyncio.run(main())
    assert g.error is None and g.num_results == 4
    assert g.fetch_failures == ("UnsupportedContent", "private", "FetchTimeout")
    assert [(s.number, s.rank, s.title) for s in g.sources] == [
        (1, 1, "The Kestrel Bridge reopens - Lune Valley News"),
        (2, 2, "Picture"),  # its page is an image: the snippet stands in
    ]
    assert g.sources[1].passages[0].text == "the bridge rivets photographed"
    assert 0.7 <= g.timings.fetch_s < 0.95  # the slow page was given up at 80 % of the budget left


def test_cached_results_and_pages_are_reused_until_they_expire() -> None:
    now = [0.0]

    async def main() -> tuple[list[Grounding], FakeSearx, FakeDns]:
        async with serving(local_web()) as web_port:
            results = [{"url": f"http://web.test:{web_port}/article", "title": "K", "content": "s"}]
            fake = FakeSearx(results=results)
            async with serving(fake.app()) as searx_port:
                config = SearchConfig(
                    provider=ProviderKind.SEARXNG,
                    searxng_url=f"http://127.0.0.1:{searx_port}",
                    allow_hosts=("web.test",),
                    cache_ttl_s=60,
                )
                lookup = FakeDns({"web.test": [["127.0.0.1"]]})
                cache = SearchCache(MemoryCache(60, clock=lambda: now[0]), "searxng")
                async with (
                    make_provider(config, Environment.read()) as provider,
                    Fetcher(config, lookup=lookup) as fetcher,
                ):
                    grounder = Grounder(config, provider, fetcher, cache=cache)
                    runs = [await grounder.ground("rivets replaced")]
                    runs.append(await grounder.ground("rivets replaced"))
                    now[0] = 61.0
                    runs.append(await grounder.ground("rivets replaced"))
                    return runs, fake, lookup

    runs, fake, lookup = asyncio.run(main())
    assert len(fake.requests) == 2 and lookup.calls == ["web.test", "web.test"]  # runs 1 and 3
    assert runs[0].sources == runs[1].sources == runs[2].sources
    assert "replaced all 412 rivets" in runs[1].passages[0].text
    assert runs[1].timings.fetch_s < runs[0].timings.fetch_s
