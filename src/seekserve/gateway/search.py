"""Web search at the gateway: a chat request grounded before it is proxied, for any backend, and
its answer given `annotations` and `search_results` (docs/search.md).

The request's `web_search` and `web_search_options` are read here and removed from what the
backend gets (an engine that does not know them must not see them). The grounded text replaces the
last user message, in DeepSeek's official template where the model's name says `deepseek`
(DeepSeek's API included), the numbered one otherwise. The gateway does not know the backend's
tokenizer or context length: page text loses the common special tokens (COMMON_SPECIAL_TOKENS) and
the context budget is the configured one. With `queries: model` the queries are written by
`query_model` (or the request's model) through the gateway's own routing, retries and fallbacks.
A searching request is neither answered from nor stored
in the response cache (its answer depends on live results).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from seekserve.search.citations import CitationStream, find_citations
from seekserve.search.config import QueryMode, SearchConfig
from seekserve.search.grounding import QueryAsk, Source, query_of
from seekserve.search.metrics import SearchMetrics
from seekserve.search.prompt import COMMON_SPECIAL_TOKENS, PromptStyle, grounded_messages, prompt_style
from seekserve.search.queries import QueryWriter
from seekserve.search.service import CONTEXT_SIZES, DISABLED, WebSearch, plan_search

__all__ = ["RequestSearch", "prepare_search"]

_FIELDS = ("web_search", "web_search_options")
_DEFAULT_CONFIG = SearchConfig()


@dataclass
class RequestSearch:
    """One request's search: the sources its prompt got (in number order), or why none."""

    style: PromptStyle
    sources: tuple[Source, ...] = ()
    error: str | None = None
    _streams: dict[int, CitationStream] = field(default_factory=dict)

    def _top(self, answer: dict[str, Any]) -> None:
        answer["search_results"] = [
            {"url": s.url, "title": s.title, "snippet": s.snippet, "rank": s.rank} for s in self.sources
        ]
        if self.error is not None:
            answer["search_error"] = self.error

    def decorate_answer(self, data: bytes) -> bytes:
        """A whole answer with each message's annotations, search_results and search_error."""
        try:
            answer = json.loads(data)
        except ValueError:
            return data
        if not isinstance(answer, dict):
            return data
        for choice in answer.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                content = message.get("content")
                text = content if isinstance(content, str) else ""
                found = find_citations(text, self.sources, self.style)
                message["annotations"] = [c.to_openai() for c in found]
        self._top(answer)
        return json.dumps(answer).encode()

    async def decorate_stream(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`events` (SSE bytes, whole events) with search_results on each choice's first chunk and
        annotations on the delta of the chunk that finishes it."""
        try:
            async for data in events:
                yield b"".join(self._event(e) for e in data.split(b"\n\n") if e)
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # the relay releases its backend

    def _event(self, event: bytes) -> bytes:
        if not event.startswith(b"data: ") or event == b"data: [DONE]":
            return event + b"\n\n"
        try:
            chunk = json.loads(event[6:])
        except ValueError:
            return event + b"\n\n"
        first = False
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            if index not in self._streams:
                self._streams[index] = CitationStream(self.sources, self.style)
                first = True
            stream = self._streams[index]
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                stream.feed(delta["content"])
            if choice.get("finish_reason"):
                delta["annotations"] = [c.to_openai() for c in stream.finish()]
                choice["delta"] = delta
        if first:
            self._top(chunk)
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _options(body: Mapping[str, Any]) -> tuple[bool | None, dict[str, Any] | None]:
    """(web_search, web_search_options) checked; ValueError naming the field otherwise."""
    web_search, options = body.get("web_search"), body.get("web_search_options")
    if web_search is not None and not isinstance(web_search, bool):
        raise ValueError(f"web_search must be true, false or absent, not {web_search!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError("web_search_options must be an object")
    size = (options or {}).get("search_context_size", "medium")
    if size not in CONTEXT_SIZES:
        raise ValueError(f"web_search_options.search_context_size {size!r} is not one of: low, medium, high")
    return web_search, options


async def prepare_search(
    search: WebSearch | None,
    mode: str,
    path: str,
    body: dict[str, Any],
    metrics: SearchMetrics | None = None,
    writer: Callable[[str], QueryWriter] | None = None,
) -> tuple[dict[str, Any], RequestSearch | None]:
    """(the body to proxy, the request's search or None where it does not search). The body is `body`
    itself where nothing changes (no search fields, no search), so the caller can keep its bytes.
    `writer(model)` runs chats on `model` (through the gateway's backends), for `queries: model`.
    ValueError for malformed search fields. Never raises for a search failure: that is the
    RequestSearch's error."""
    web_search, options = _options(body)
    has_fields = "web_search" in body or "web_search_options" in body
    proxied = {k: v for k, v in body.items() if k not in _FIELDS} if has_fields else body
    if path != "/chat/completions":
        return proxied, None
    location = ((options or {}).get("user_location") or {}).get("approximate") or {}
    ask = plan_search(
        mode,
        search.config if search is not None else _DEFAULT_CONFIG,
        web_search=web_search,
        asked=options is not None,
        context_size=(options or {}).get("search_context_size", "medium"),
        country=location.get("country") if isinstance(location.get("country"), str) else None,
        timezone=location.get("timezone") if isinstance(location.get("timezone"), str) else None,
    )
    if ask is None:
        return proxied, None
    style = prompt_style(str(body.get("model", "")))
    if search is None:
        if metrics is not None:
            metrics.disabled()
        return proxied, RequestSearch(style, error=DISABLED)
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    texts = [{**m, "content": _text(m.get("content"))} for m in messages]
    query = query_of(texts)
    if query is None:
        return proxied, RequestSearch(style, error="no user message to search for")
    written = None
    config = search.config
    if config.queries == QueryMode.MODEL and writer is not None:
        model = config.query_model or str(body.get("model", ""))
        written = QueryAsk(writer(model), texts, config.max_queries, ask.today)
    grounding = await search.grounder.ground(
        query,
        num_results=ask.num_results,
        max_context_tokens=ask.max_context_tokens,
        language=ask.language,
        written=written,
    )
    if metrics is not None:
        metrics.observe(grounding)
    if not grounding.sources:
        return proxied, RequestSearch(style, error=grounding.error)
    grounded = grounded_messages(texts, grounding, style, today=ask.today, strip=COMMON_SPECIAL_TOKENS)
    return {**proxied, "messages": grounded}, RequestSearch(style, grounding.sources)
