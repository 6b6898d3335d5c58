"""Web search for chat requests: which requests search, with what options, and their grounded prompt.

    --web-search off    no request searches; one that asks gets `search_error` and a plain answer
    --web-search auto   a request searches when it asks: `web_search_options` or `web_search: true`
    --web-search on     every chat request searches unless it sends `web_search: false`

`search_context_size` scales the results asked for and the context's token budget (low: half,
medium: the configured max_results and max_context_tokens, high: double); the budget is then cut to
the room the model's context has left after the plain prompt and the answer's reserve (max_tokens
where given, else a quarter of the context, at most 1024). `user_location.approximate.country`
gives the search language (a small table of countries; others: none), its `timezone` the date in
the prompt. A grounded prompt that still does not fit falls back to the plain one, with
`search_error` saying so. Search never fails a request: every failure is a `search_error`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seekserve.engine.info import EngineInfo
from seekserve.env import Environment
from seekserve.search.config import SearchConfig
from seekserve.search.errors import SearchError
from seekserve.search.extract import extractor_name
from seekserve.search.fetch import Fetcher
from seekserve.search.grounding import Grounder, Grounding, Source, query_of
from seekserve.search.metrics import SearchMetrics
from seekserve.search.prompt import PromptStyle, grounded_messages, prompt_style
from seekserve.search.providers import LocalProvider, make_provider
from seekserve.server.protocol import ChatCompletionRequest, ChatMessage
from seekserve.server.responses import SearchResultOut

__all__ = ["GroundedPrompt", "SearchAsk", "WebSearch", "grounded_prompt", "search_ask"]

log = logging.getLogger(__name__)

DISABLED = (
    "web search is off on this server: start it with --web-search auto (or on) and a --search-provider "
    "to answer from search results"
)
_CONTEXT_SCALE = {"low": 0.5, "medium": 1.0, "high": 2.0}
_COUNTRY_LANGUAGE = {
    "CN": "zh-CN", "TW": "zh-TW", "HK": "zh-HK", "SG": "en-SG", "JP": "ja-JP", "KR": "ko-KR",
    "US": "en-US", "GB": "en-GB", "AU": "en-AU", "CA": "en-CA", "IN": "en-IN", "DE": "de-DE",
    "FR": "fr-FR", "ES": "es-ES", "IT": "it-IT", "NL": "nl-NL", "BR": "pt-BR", "RU": "ru-RU",
}  # fmt: skip
_MAX_ANSWER_RESERVE = 1024

Render = Callable[[Sequence[ChatMessage]], tuple[str, list[int]]]
"""The chat template over messages: (prompt, token ids)."""


@dataclass(frozen=True)
class SearchAsk:
    """What one request's search asks for."""

    num_results: int
    max_context_tokens: int
    language: str | None
    today: datetime.date


def search_ask(
    body: ChatCompletionRequest, mode: str, config: SearchConfig, now: datetime.datetime | None = None
) -> SearchAsk | None:
    """The request's search, or None where it does not search (see the module's docstring)."""
    if body.web_search is False:
        return None
    options = body.web_search_options
    if options is None and body.web_search is not True and mode != "on":
        return None
    scale = _CONTEXT_SCALE[options.search_context_size if options else "medium"]
    location = options.user_location.approximate if options and options.user_location else None
    zone: datetime.tzinfo | None = None
    if location is not None and location.timezone:
        try:
            zone = zoneinfo.ZoneInfo(location.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = None  # an unknown zone only loses the local date
    country = (location.country or "").upper() if location else ""
    return SearchAsk(
        num_results=min(20, max(1, round(config.max_results * scale))),
        max_context_tokens=round(config.max_context_tokens * scale),
        language=_COUNTRY_LANGUAGE.get(country),
        today=(now or datetime.datetime.now(zone)).date(),
    )


@dataclass(frozen=True)
class GroundedPrompt:
    """A searching request's prompt: grounded where the search gave sources, else the plain one."""

    prompt: str
    token_ids: list[int]
    style: PromptStyle
    sources: tuple[Source, ...] = ()
    error: str | None = None

    def results_out(self) -> list[SearchResultOut]:
        return [
            SearchResultOut(url=s.url, title=s.title, snippet=s.snippet, rank=s.rank) for s in self.sources
        ]


class WebSearch:
    """The server's provider, fetcher and grounder (built at startup; closed by aclose())."""

    def __init__(self, config: SearchConfig, env: Environment | None = None) -> None:
        self.config = config
        self.provider = make_provider(config, env)
        self.fetcher = Fetcher(config)
        self.grounder = Grounder(config, self.provider, self.fetcher)
        self._strip: tuple[int, tuple[str, ...]] | None = None

    async def start(self) -> None:
        """Take the slow first steps off the first request: import the extractor, build the local
        index. A failure is logged; requests then degrade with its message."""
        log.info(
            "search: %s provider, %s extractor", self.config.provider, await asyncio.to_thread(extractor_name)
        )
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
            tokens |= set(tokenizer.get_added_vocab()) if hasattr(tokenizer, "get_added_vocab") else set()
            self._strip = (
                id(tokenizer),
                tuple(sorted((t for t in tokens if len(t) > 1), key=len, reverse=True)),
            )
        return self._strip[1]


async def grounded_prompt(
    body: ChatCompletionRequest,
    mode: str,
    search: WebSearch | None,
    metrics: SearchMetrics | None,
    info: EngineInfo,
    tokenizer: Any,
    render: Render,
    model: str,
) -> GroundedPrompt | None:
    """The prompt of a request that searches (None: it does not); never raises for a search failure."""
    config = search.config if search is not None else SearchConfig()
    ask = search_ask(body, mode, config)
    if ask is None:
        return None
    plain, plain_ids = await asyncio.to_thread(render, body.messages)
    style = prompt_style(model, " ".join([*info.architectures, info.model_path.name]))
    if search is None:
        if metrics is not None:
            metrics.disabled()
        return GroundedPrompt(plain, plain_ids, style, error=DISABLED)
    messages = [m.for_template() for m in body.messages]
    query = query_of(messages)
    if query is None:
        return GroundedPrompt(plain, plain_ids, style, error="no user message to search for")
    limit = info.max_model_len
    reserve = body.requested_max_tokens or min(limit // 4, _MAX_ANSWER_RESERVE)
    room = limit - len(plain_ids) - reserve
    if room < 2 * config.passage_words:
        error = (
            f"the model's context ({limit} tokens) has no room for search results after the prompt "
            f"({len(plain_ids)}) and the answer ({reserve}): shorten the conversation or lower max_tokens"
        )
        return GroundedPrompt(plain, plain_ids, style, error=error)
    grounding = await search.grounder.ground(
        query,
        num_results=ask.num_results,
        max_context_tokens=min(ask.max_context_tokens, room),
        language=ask.language,
    )
    if metrics is not None:
        metrics.observe(grounding)
    if not grounding.sources:
        return GroundedPrompt(plain, plain_ids, style, error=grounding.error)
    return await _render_grounded(
        grounding, messages, ask, style, search, tokenizer, render, (plain, plain_ids), limit - reserve
    )


async def _render_grounded(
    grounding: Grounding,
    messages: list[dict[str, str]],
    ask: SearchAsk,
    style: PromptStyle,
    search: WebSearch,
    tokenizer: Any,
    render: Render,
    plain: tuple[str, list[int]],
    max_prompt_tokens: int,
) -> GroundedPrompt:
    strip = search.strip_tokens(tokenizer)
    grounded = grounded_messages(messages, grounding, style, today=ask.today, strip=strip)
    chat = [ChatMessage(role=m["role"], content=m["content"]) for m in grounded]  # type: ignore[arg-type]
    prompt, ids = await asyncio.to_thread(render, chat)
    if len(ids) > max_prompt_tokens:
        error = (
            f"the grounded prompt ({len(ids)} tokens) leaves too little of the model's context for the "
            f"answer; answered without search: lower max_tokens or search_context_size"
        )
        return GroundedPrompt(*plain, style, error=error)
    return GroundedPrompt(prompt, ids, style, grounding.sources)
