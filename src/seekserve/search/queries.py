"""Search queries written by a model from the conversation (`queries: model`).

The fast path searches the last user message as written. That fails on follow-ups ("and how tall
is it?"), whose subject is in an earlier turn, and on long messages that mix several questions.
With `queries: model` the serving process asks a model (the request's own, or a lighter one the
gateway routes: `query_model`) to write 1 to `max_queries` self-contained queries, one per line:

    conversation ─► query_messages ─► QueryWriter (the model; greedy, short) ─► parse_queries
                                         │ fails, times out or writes nothing usable
                                         ▼
                                      the last user message (the fast path)

The writer's output is data, like page text: it only becomes query strings (at most `max_queries`
lines of at most MAX_QUERY_CHARS), never a request parameter. A reasoning model's thinking
(`<think>...</think>`) is dropped before parsing.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

__all__ = [
    "MAX_QUERY_CHARS",
    "QUERY_MAX_TOKENS",
    "QUERY_STOP",
    "QueryWriter",
    "parse_queries",
    "query_messages",
]

QueryWriter = Callable[[list[dict[str, str]]], Awaitable[str]]
"""Runs a chat on the query-writing model: the messages of query_messages in, the answer's text out.
May raise anything (the caller falls back to the fast path) and is cancelled when its time is up."""

MAX_QUERY_CHARS = 200
"""A written line longer than this is cut at a word boundary (search engines ignore the rest)."""
QUERY_MAX_TOKENS = 64
"""Tokens the writer may generate: three queries of a dozen words, with room for numbering."""
QUERY_STOP = ("\nUser:", "\nAssistant:", "\nConversation:")
"""Stop strings of the writer's request: a base model goes on with the transcript after its answer."""
_MAX_TURNS = 6
"""Most recent messages shown to the writer; older turns rarely change what to search for."""
_MAX_TURN_CHARS = 1500

_INSTRUCTION = (
    "Today is {date}. Below is a conversation between a user and an assistant. Write {count} web "
    "search {noun} that would find the information needed to answer the user's last message. Each "
    "query must make sense on its own: replace pronouns and references with the names they stand "
    "for in earlier turns. Write in the language of the user's last message. Reply with the "
    "{noun} only, one per line, with no numbering, quotes or explanations.\n\nConversation:\n"
    "{conversation}"
)
_ROLES = {"user": "User", "assistant": "Assistant"}
_THINKING = re.compile(r"^.*?</think>", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)\]:]|(?:search\s+)?query\s*\d*\s*[:：])\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’「」"
_TRANSCRIPT = re.compile(r"^(user|assistant|conversation)\s*:", re.IGNORECASE)


def query_messages(
    messages: Sequence[Mapping[str, str]], max_queries: int, today: datetime.date
) -> list[dict[str, str]]:
    """The one user message that asks for queries: the instruction, then the recent conversation as
    a transcript (system messages left out, each turn cut to its first 1500 characters)."""
    turns = [m for m in messages if m.get("role") in _ROLES and (m.get("content") or "").strip()]
    lines = []
    for m in turns[-_MAX_TURNS:]:
        text = (m.get("content") or "").strip()
        if len(text) > _MAX_TURN_CHARS:
            text = text[:_MAX_TURN_CHARS] + " ..."
        lines.append(f"{_ROLES[m['role']]}: {text}")
    count = "one" if max_queries == 1 else f"1 to {max_queries}"
    noun = "query" if max_queries == 1 else "queries"
    content = _INSTRUCTION.format(
        date=today.isoformat(), count=count, noun=noun, conversation="\n".join(lines)
    )
    return [{"role": "user", "content": content}]


def _cut(line: str) -> str:
    if len(line) <= MAX_QUERY_CHARS:
        return line
    head = line[:MAX_QUERY_CHARS]
    space = head.rfind(" ")
    return head[:space] if space > MAX_QUERY_CHARS // 2 else head


def parse_queries(text: str, max_queries: int) -> tuple[str, ...]:
    """The queries in a writer's answer: its lines without thinking, bullets, numbering and quotes,
    blank and repeated ones (case-insensitive) dropped, the first `max_queries` kept. A line that
    goes on with the transcript (`User: ...`) ends the answer: a base model continues the text."""
    if "</think>" in text:
        text = _THINKING.sub("", text, count=1)
    elif "<think>" in text:  # cut off while thinking: nothing it wrote is a query
        return ()
    queries: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        if _TRANSCRIPT.match(raw.strip()):
            break
        line = _BULLET.sub("", raw.strip()).strip().strip(_QUOTES).strip()
        line = _cut(" ".join(line.split()))
        if not line or line.casefold() in seen or line.endswith(":"):
            continue
        seen.add(line.casefold())
        queries.append(line)
        if len(queries) == max_queries:
            break
    return tuple(queries)
