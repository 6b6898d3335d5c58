"""Web search for chat requests: their options, and their grounded prompt.

Which requests search, and with what, is search/service.py's (`plan_search`, the --web-search
modes). With `--search-queries model` the served model itself writes the queries (a greedy, short
request of its own; R1's thinking is skipped by closing the `<think>` its template opens).

Here: the context budget is cut to the room the model's context has left after the plain
prompt and the answer's reserve (max_tokens where given, else a quarter of the context, at most
1024); a grounded prompt that still does not fit falls back to the plain one, with `search_error`
saying so. Search never fails a request: every failure is a `search_error`.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.sampling_params import SamplingParams
from seekserve.search.config import QueryMode, SearchConfig
from seekserve.search.grounding import Grounding, QueryAsk, Source, query_of
from seekserve.search.metrics import SearchMetrics
from seekserve.search.prompt import PromptStyle, grounded_messages, prompt_style
from seekserve.search.queries import QUERY_MAX_TOKENS, QUERY_STOP, QueryWriter
from seekserve.search.service import DISABLED, SearchAsk, WebSearch, plan_search
from seekserve.server.protocol import ChatCompletionRequest, ChatMessage
from seekserve.server.reasoning import THINK_END, prompt_opens_reasoning
from seekserve.server.responses import SearchResultOut

__all__ = ["GroundedPrompt", "engine_writer", "grounded_prompt", "search_ask"]

_MAX_ANSWER_RESERVE = 1024

Render = Callable[[Sequence[ChatMessage]], tuple[str, list[int]]]
"""The chat template over messages: (prompt, token ids)."""


def search_ask(
    body: ChatCompletionRequest, mode: str, config: SearchConfig, now: datetime.datetime | None = None
) -> SearchAsk | None:
    """The request's search (plan_search over its fields), or None where it does not search."""
    options = body.web_search_options
    location = options.user_location.approximate if options and options.user_location else None
    return plan_search(
        mode,
        config,
        web_search=body.web_search,
        asked=options is not None,
        context_size=options.search_context_size if options else "medium",
        country=location.country if location else None,
        timezone=location.timezone if location else None,
        now=now,
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


async def grounded_prompt(
    body: ChatCompletionRequest,
    mode: str,
    search: WebSearch | None,
    metrics: SearchMetrics | None,
    engine: AsyncEngine,
    render: Render,
    model: str,
) -> GroundedPrompt | None:
    """The prompt of a request that searches (None: it does not); never raises for a search failure."""
    info, tokenizer = engine.info, engine.tokenizer
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
    written = None
    if config.queries == QueryMode.MODEL:
        written = QueryAsk(engine_writer(engine, render), messages, config.max_queries, ask.today)
    grounding = await search.grounder.ground(
        query,
        num_results=ask.num_results,
        max_context_tokens=min(ask.max_context_tokens, room),
        language=ask.language,
        written=written,
    )
    if metrics is not None:
        metrics.observe(grounding)
    if not grounding.sources:
        return GroundedPrompt(plain, plain_ids, style, error=grounding.error)
    return await _render_grounded(
        grounding, messages, ask, style, search, tokenizer, render, (plain, plain_ids), limit - reserve
    )


def engine_writer(engine: AsyncEngine, render: Render) -> QueryWriter:
    """Queries written by the served model: greedy, at most QUERY_MAX_TOKENS, no thinking."""

    async def write(messages: list[dict[str, str]]) -> str:
        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]  # type: ignore[arg-type]
        prompt, ids = await asyncio.to_thread(render, chat)
        if prompt_opens_reasoning(prompt):  # "<think>\n</think>\n\n": an empty thought, then the answer
            ids = ids + list(engine.tokenizer.encode(f"{THINK_END}\n\n", add_special_tokens=False))
        text = ""
        params = SamplingParams(temperature=0.0, max_tokens=QUERY_MAX_TOKENS, stop=list(QUERY_STOP))
        async for out in engine.generate(ids, params):
            text = out.outputs[0].text
        return text

    return write


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
