"""One request's grounding: queries made, searched, the results' pages fetched and read, the best
passages kept, all within the request's total budget.

    messages ─► query_of (the last user turn as is)  or  queries written by a model (QueryAsk,
             │   phase `queries`, at most half the budget; search/queries.py), falling back to it
             ─► provider.search of each query, results merged by rank   (phase `search`)
             ─► fetcher.fetch_many of results without text (phase `fetch`; the remaining budget)
             ─► extract + select_passages in a thread (phase `extract`)
             ─► Grounding: numbered sources with their passages, timings, error

Degradation: any SearchError, or the budget running out (SearchBudgetExceeded), ends grounding with
`error` set and no sources; the caller answers without search. A page that cannot be fetched is
left out (its snippet stands in for it where the provider gave one) and counted in
`fetch_failures`; that is not an error of the whole. A query writer that fails or is slow is not
one either: the last user message is searched instead (`query_error` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from seekserve.search.cache import SearchCache
from seekserve.search.config import SearchConfig
from seekserve.search.errors import FetchError, FetchRefused, SearchBudgetExceeded, SearchError
from seekserve.search.extract import Document, extract_document, page_document
from seekserve.search.fetch import Fetcher, Page
from seekserve.search.passages import Passage, select_passages
from seekserve.search.providers.base import SearchProvider, SearchResult
from seekserve.search.queries import QueryWriter, parse_queries, query_messages

__all__ = ["Grounder", "Grounding", "PhaseTimings", "QueryAsk", "Source", "merge_results", "query_of"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_QUERY_SHARE = 0.5
"""Share of the total budget that writing queries may take; the search needs the rest."""

_FETCH_SHARE = 0.8
"""Share of the budget left after the search that fetching may use; the rest is for extraction."""


@dataclass(frozen=True)
class Source:
    """A search result that gave passages to the prompt; `number` is its X in [webpage X] and in the
    answer's citation marks, counting from 1."""

    number: int
    url: str
    title: str
    snippet: str
    rank: int
    """Its place in the provider's results (1: the best)."""
    passages: tuple[Passage, ...]
    """Its passages in the prompt, in page order."""


@dataclass(frozen=True)
class PhaseTimings:
    """Seconds spent in each phase (0 for a phase not reached)."""

    queries_s: float = 0.0
    """Writing queries with a model (0 on the fast path)."""
    search_s: float = 0.0
    fetch_s: float = 0.0
    extract_s: float = 0.0
    """Extraction, passage cutting, ranking and trimming."""
    total_s: float = 0.0


@dataclass(frozen=True)
class Grounding:
    """What one request's search found. `sources` empty: answer without search (see `error`)."""

    query: str
    """The last user message: searched on the fast path, and part of what passages are ranked by."""
    sources: tuple[Source, ...] = ()
    num_results: int = 0
    """Results the provider returned (some may have given no passage)."""
    timings: PhaseTimings = field(default_factory=PhaseTimings)
    error: str | None = None
    """Why grounding was abandoned (the SearchError's message); None when it was not."""
    error_kind: str | None = None
    """The SearchError's class name (`ProviderUnreachable`, `SearchBudgetExceeded`), a metric label."""
    fetch_failures: tuple[str, ...] = ()
    """One label per page that could not be had: the Refusal value for a refused page
    (`private`, `metadata`), else the FetchError's class name (`FetchTimeout`)."""
    queries: tuple[str, ...] = ()
    """What was searched: the written queries, or (query,) (empty when the search was not reached)."""
    asked_model: bool = False
    """A model was asked to write the queries (QueryAsk)."""
    query_error: str | None = None
    """Why the model's queries were not used (the last user message was searched); None otherwise."""

    @property
    def passages(self) -> list[Passage]:
        return [p for s in self.sources for p in s.passages]


@dataclass(frozen=True)
class QueryAsk:
    """Queries to be written by a model from `conversation` (search/queries.py)."""

    writer: QueryWriter
    conversation: Sequence[Mapping[str, str]]
    max_queries: int
    today: datetime.date


def query_of(messages: Sequence[Mapping[str, str]]) -> str | None:
    """The text of the last user message, stripped; None where there is none or it is blank."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = (message.get("content") or "").strip()
            return text or None
    return None


def _failure_label(error: FetchError) -> str:
    return error.reason.value if isinstance(error, FetchRefused) else type(error).__name__


def _documents(
    results: Sequence[SearchResult],
    pages: Mapping[str, Page | FetchError | Document],
) -> list[Document | None]:
    """Each result's document (in order): its own text, its cached or fetched page, else its
    snippet (None where it has none). CPU-bound: runs in a worker thread."""
    docs: list[Document | None] = []
    for result in results:
        got = pages.get(result.url)
        if result.text is not None:
            docs.append(Document(result.url, result.title, result.text))
        elif isinstance(got, Document):
            docs.append(got)
        elif isinstance(got, Page):
            doc = page_document(got, result.title)
            docs.append(Document(result.url, doc.title, doc.text or result.snippet))
        elif result.snippet:
            docs.append(
                extract_document(
                    result.snippet, content_type="text/plain", url=result.url, title=result.title
                )
            )
        else:
            docs.append(None)
    return docs


def _sources(
    results: Sequence[SearchResult], docs: Sequence[Document | None], passages: Sequence[Passage]
) -> tuple[Source, ...]:
    """The results with passages, numbered 1.. in rank order; their passages in page order."""
    kept = [(i, d) for i, d in enumerate(docs) if d is not None]
    by_result: dict[int, list[Passage]] = {}
    for p in passages:
        by_result.setdefault(kept[p.source][0], []).append(p)
    sources: list[Source] = []
    for i in sorted(by_result):
        result, doc = results[i], docs[i]
        assert doc is not None, "a passage came from a result without a document"
        chosen = tuple(sorted(by_result[i], key=lambda p: p.position))
        sources.append(
            Source(
                len(sources) + 1, result.url, doc.title or result.title, result.snippet, result.rank, chosen
            )
        )
    return tuple(sources)


class Grounder:
    """Runs grounding for requests with one provider and one fetcher, which it does not own (the
    server opens and closes them). Safe for concurrent requests on one event loop. `clock` is
    time.perf_counter unless a test gives another; budgets use the event loop's clock. With a
    `cache`, results and read pages found there are used instead of asking again."""

    def __init__(
        self,
        config: SearchConfig,
        provider: SearchProvider,
        fetcher: Fetcher,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cache: SearchCache | None = None,
    ) -> None:
        self.config = config
        self.provider = provider
        self.fetcher = fetcher
        self.clock = clock
        self.cache = cache

    async def ground(
        self,
        query: str,
        *,
        num_results: int | None = None,
        max_context_tokens: int | None = None,
        language: str | None = None,
        budget_s: float | None = None,
        written: QueryAsk | None = None,
    ) -> Grounding:
        """Sources for `query` (or for the queries `written` asks a model for, `query` being their
        fallback); never raises a SearchError (it becomes `error`). Defaults from the config:
        max_results, max_context_tokens, total_budget_s."""
        run = _Run(self, query, budget_s if budget_s is not None else self.config.total_budget_s)
        try:
            return await run.go(
                num_results or self.config.max_results,
                self.config.max_context_tokens if max_context_tokens is None else max_context_tokens,
                language,
                written,
            )
        except SearchError as exc:
            return run.failed(exc)


def merge_results(lists: Sequence[Sequence[SearchResult]], num_results: int) -> list[SearchResult]:
    """Several queries' results as one list: each query's first, then each one's second, ...
    (a URL kept where it first appears), ranked again from 1 and cut to `num_results`."""
    merged: list[SearchResult] = []
    seen: set[str] = set()
    for depth in range(max(map(len, lists), default=0)):
        for results in lists:
            if depth < len(results) and results[depth].url not in seen:
                seen.add(results[depth].url)
                merged.append(dataclasses.replace(results[depth], rank=len(merged) + 1))
    return merged[:num_results]


class _Run:
    """One ground() call: its deadline and the timings so far."""

    def __init__(self, grounder: Grounder, query: str, budget_s: float) -> None:
        self.g = grounder
        self.query = query
        self.queries: tuple[str, ...] = ()
        self.query_error: str | None = None
        self.budget_s = budget_s
        self.deadline = asyncio.get_running_loop().time() + budget_s
        self.start = grounder.clock()
        self.times: dict[str, float] = {}
        self.stage = "search"
        self.failures: tuple[str, ...] = ()

    def _timings(self) -> PhaseTimings:
        return PhaseTimings(
            queries_s=self.times.get("queries", 0.0),
            search_s=self.times.get("search", 0.0),
            fetch_s=self.times.get("fetch", 0.0),
            extract_s=self.times.get("extract", 0.0),
            total_s=self.g.clock() - self.start,
        )

    def _grounding(self, **fields: Any) -> Grounding:
        return Grounding(
            self.query,
            timings=self._timings(),
            fetch_failures=self.failures,
            queries=self.queries,
            asked_model="queries" in self.times,
            query_error=self.query_error,
            **fields,
        )

    def failed(self, exc: SearchError) -> Grounding:
        return self._grounding(error=str(exc), error_kind=type(exc).__name__)

    async def _phase(self, name: str, work: Awaitable[_T]) -> _T:
        self.stage = name
        began = self.g.clock()
        try:
            async with asyncio.timeout_at(self.deadline):
                return await work
        except TimeoutError:
            raise SearchBudgetExceeded(self.budget_s, name) from None
        finally:
            self.times[name] = self.g.clock() - began

    async def _write(self, ask: QueryAsk) -> tuple[str, ...]:
        """The model's queries, or (query,) with query_error set where it gave none in its time."""
        began = self.g.clock()
        limit = min(self.deadline, asyncio.get_running_loop().time() + self.budget_s * _QUERY_SHARE)
        messages = query_messages(ask.conversation, ask.max_queries, ask.today)
        try:
            async with asyncio.timeout_at(limit):
                queries = parse_queries(await ask.writer(messages), ask.max_queries)
            if not queries:
                self.query_error = "the model wrote no usable query"
        except TimeoutError:
            queries = ()
            self.query_error = f"writing queries took over {self.budget_s * _QUERY_SHARE:g} s"
        except Exception as exc:  # any failure of the writer's model or transport
            queries = ()
            self.query_error = f"writing queries failed: {type(exc).__name__}: {exc}"
        finally:
            self.times["queries"] = self.g.clock() - began
        if self.query_error is not None:
            log.info("search: %s; searching the last user message", self.query_error)
        return queries or (self.query,)

    async def _search_one(self, query: str, num_results: int, language: str | None) -> list[SearchResult]:
        cache = self.g.cache
        results = None if cache is None else await cache.results(query, num_results, language)
        if results is None:
            results = await self.g.provider.search(query, num_results=num_results, language=language)
            if cache is not None:
                await cache.put_results(query, num_results, language, results)
        return results

    async def _search(self, num_results: int, language: str | None) -> list[SearchResult]:
        """Each query's results merged; a query whose search fails is left out unless all fail."""
        if len(self.queries) == 1:
            return await self._search_one(self.queries[0], num_results, language)
        got = await asyncio.gather(
            *(self._search_one(q, num_results, language) for q in self.queries), return_exceptions=True
        )
        lists = [r for r in got if not isinstance(r, BaseException)]
        errors = [r for r in got if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, SearchError) or not lists:
                raise error
        return merge_results(lists, num_results)

    async def _fetch(self, urls: list[str]) -> dict[str, Page | FetchError | Document]:
        """Each URL's cached document, or its page (or why not) fetched in the budget left."""
        cache = self.g.cache
        cached = [None] * len(urls) if cache is None else await asyncio.gather(*map(cache.document, urls))
        missing = [u for u, doc in zip(urls, cached, strict=True) if doc is None]
        remaining = self.deadline - asyncio.get_running_loop().time()
        got = await self.g.fetcher.fetch_many(missing, budget_s=max(0.0, remaining * _FETCH_SHARE))
        self.failures = tuple(_failure_label(p) for p in got if isinstance(p, FetchError))
        found: dict[str, Page | FetchError | Document] = dict(zip(missing, got, strict=True))
        for url, doc in zip(urls, cached, strict=True):
            if doc is not None:
                found[url] = doc
        return found

    async def go(
        self, num_results: int, max_tokens: int, language: str | None, written: QueryAsk | None
    ) -> Grounding:
        if max_tokens <= 0:
            return self._grounding()
        self.queries = (self.query,) if written is None else await self._write(written)
        results = await self._phase("search", self._search(num_results, language))
        urls = [r.url for r in results if r.text is None]
        pages = await self._phase("fetch", self._fetch(urls)) if urls else {}
        config = self.g.config
        ranked_by = " ".join(dict.fromkeys((self.query, *self.queries)))

        def select() -> tuple[tuple[Source, ...], list[Document]]:
            docs = _documents(results, pages)
            passages = select_passages(
                ranked_by,
                [d for d in docs if d is not None],
                passage_words=config.passage_words,
                max_tokens=max_tokens,
            )
            fresh = [d for d in docs if d is not None and isinstance(pages.get(d.url), Page)]
            return _sources(results, docs, passages), fresh

        sources, fresh = await self._phase("extract", asyncio.to_thread(select))
        if self.g.cache is not None and fresh:
            # Out of budget the pages are simply not kept: the answer has its sources already.
            with contextlib.suppress(SearchBudgetExceeded):
                await self._phase("cache", asyncio.gather(*map(self.g.cache.put_document, fresh)))
        return self._grounding(sources=sources, num_results=len(results))
