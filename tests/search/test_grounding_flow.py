"""The pieces together, as the server will use them: SearXNG results pointing into the local web,
pages fetched under the SSRF rules, main text extracted, passages ranked and trimmed."""

from __future__ import annotations

import asyncio

from search.web import FakeDns, FakeSearx, local_web, serving
from seekserve.env import Environment
from seekserve.search.addresses import Refusal
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.errors import FetchRefused, UnsupportedContent
from seekserve.search.extract import page_document
from seekserve.search.fetch import Fetcher, Page
from seekserve.search.passages import Passage, select_passages
from seekserve.search.providers import make_provider


def test_search_fetch_extract_and_rank() -> None:
    async def main() -> tuple[list[object], list[Passage]]:
        async with serving(local_web()) as web_port:
            base = f"http://web.test:{web_port}"
            results = [
                {"url": f"{base}/plain", "title": "Ferry", "content": "times"},
                {"url": f"{base}/image.png", "title": "A picture", "content": ""},
                {"url": f"{base}/to?url=http://169.254.169.254/latest/", "title": "Trap", "content": ""},
                {"url": f"{base}/hops/2", "title": "Kestrel Bridge", "content": "reopened"},
            ]
            async with serving(FakeSearx(results=results).app()) as searx_port:
                config = SearchConfig(
                    provider=ProviderKind.SEARXNG,
                    searxng_url=f"http://127.0.0.1:{searx_port}",
                    allow_hosts=("web.test",),
                    passage_words=40,
                    max_context_tokens=120,
                )
                lookup = FakeDns({"web.test": [["127.0.0.1"]]})
                async with (
                    make_provider(config, Environment.read()) as provider,
                    Fetcher(config, lookup=lookup) as f,
                ):
                    hits = await provider.search("how many rivets were replaced", num_results=5)
                    pages = await f.fetch_many([hit.url for hit in hits])
        docs = [
            page_document(p, hit.title) for hit, p in zip(hits, pages, strict=True) if isinstance(p, Page)
        ]
        return list(pages), select_passages(
            "how many rivets were replaced", docs, passage_words=40, max_tokens=120
        )

    pages, passages = asyncio.run(main())
    assert [type(p) for p in pages] == [Page, UnsupportedContent, FetchRefused, Page]
    refused = pages[2]
    assert isinstance(refused, FetchRefused) and refused.reason is Refusal.METADATA
    assert [(p.source, p.position) for p in passages] == [(1, 0)]  # doc 1: the article (doc 0 the ferry)
    assert "replaced all 412 rivets" in passages[0].text
    assert passages[0].title == "The Kestrel Bridge reopens - Lune Valley News"
    assert sum(p.num_tokens for p in passages) <= 120
