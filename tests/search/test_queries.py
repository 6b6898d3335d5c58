"""Queries written by a model: the prompt it gets, what is read from its answer, and grounding with
them (merged results, fallback to the last user message when the writer fails, is slow or empty)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from search.test_grounding import ground_local, write_folder
from seekserve.env import Environment
from seekserve.search.config import SearchConfig
from seekserve.search.fetch import Fetcher
from seekserve.search.grounding import Grounder, Grounding, QueryAsk, merge_results
from seekserve.search.metrics import SearchMetrics
from seekserve.search.providers import SearchResult, make_provider
from seekserve.search.queries import MAX_QUERY_CHARS, QueryWriter, parse_queries, query_messages

TODAY = datetime.date(2026, 12, 7)
FOLLOW_UP = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about the Glasson ferry."},
    {"role": "assistant", "content": "It crosses the bay."},
    {"role": "user", "content": "What time does it go?"},
]


def test_the_writer_gets_the_recent_conversation_without_system_messages() -> None:
    [message] = query_messages(FOLLOW_UP, 3, TODAY)
    assert message["role"] == "user"
    text = message["content"]
    assert text.startswith("Today is 2026-12-07. Below is a conversation")
    assert "Write 1 to 3 web search queries" in text
    assert text.endswith(
        "Conversation:\nUser: Tell me about the Glasson ferry.\nAssistant: It crosses the bay.\n"
        "User: What time does it go?"
    )
    assert "Be brief" not in text
    [one] = query_messages([{"role": "user", "content": "x" * 2000}], 1, TODAY)
    assert "Write one web search query that" in one["content"]
    assert one["content"].endswith("User: " + "x" * 1500 + " ...")
    many = [{"role": "user", "content": f"turn {i}"} for i in range(10)]
    assert "turn 3" not in query_messages(many, 3, TODAY)[0]["content"]
    assert "User: turn 4\n" in query_messages(many, 3, TODAY)[0]["content"]


@pytest.mark.parametrize(
    ("text", "queries"),
    [
        (
            "Glasson ferry timetable\nGlasson ferry departure",
            ("Glasson ferry timetable", "Glasson ferry departure"),
        ),
        ("1. first query\n2) second\n- third\n* fourth", ("first query", "second", "third")),
        ('"quoted"\n「引用」\nQuery 2: labelled\n\n', ("quoted", "引用", "labelled")),
        ("Same\nsame\nSAME \nother", ("Same", "other")),
        ("Queries:\nreal one", ("real one",)),
        ("<think>\nthe user asks\nabout ferries\n</think>\n\nferry times", ("ferry times",)),
        ("thinking without an opening tag</think>ferry times", ("ferry times",)),
        ("<think>\nstill thinking when the tokens ran out", ()),
        ("ferry times\nUser: and the bridge?\nAssistant: ...", ("ferry times",)),
        ("   \n\n", ()),
    ],
)
def test_queries_read_from_the_answer(text: str, queries: tuple[str, ...]) -> None:
    assert parse_queries(text, 3) == queries


def test_long_lines_are_cut_at_a_word() -> None:
    [query] = parse_queries("word " * 100, 3)
    assert len(query) <= MAX_QUERY_CHARS and query.endswith("word") and not query.endswith(" ")
    assert parse_queries("x" * 500, 1) == ("x" * MAX_QUERY_CHARS,)


def result(url: str, rank: int) -> SearchResult:
    return SearchResult(url, url.upper(), "", rank)


def test_merged_results_alternate_between_queries_without_repeats() -> None:
    a = [result("a1", 1), result("shared", 2), result("a3", 3)]
    b = [result("shared", 1), result("b2", 2)]
    merged = merge_results([a, b], 10)
    assert [(r.url, r.rank) for r in merged] == [("a1", 1), ("shared", 2), ("b2", 3), ("a3", 4)]
    assert [r.url for r in merge_results([a, b], 2)] == ["a1", "shared"]
    assert merge_results([], 5) == [] and merge_results([[], a[:1]], 5) == [result("a1", 1)]


def ground(tmp_path: Path, writer: QueryWriter, budget_s: float = 3.0) -> Grounding:
    tmp_path.mkdir(exist_ok=True)
    config = SearchConfig(
        search_dir=write_folder(tmp_path), passage_words=40, max_context_tokens=200, total_budget_s=budget_s
    )

    async def main() -> Grounding:
        env = Environment.read({"SEEKSERVE_HOME": str(tmp_path / "home")})
        async with make_provider(config, env) as provider, Fetcher(config) as fetcher:
            ask = QueryAsk(writer, FOLLOW_UP, 3, TODAY)
            return await Grounder(config, provider, fetcher).ground("What time does it go?", written=ask)

    return asyncio.run(main())


def answering(text: str) -> tuple[QueryWriter, list[list[dict[str, str]]]]:
    asked: list[list[dict[str, str]]] = []

    async def write(messages: list[dict[str, str]]) -> str:
        asked.append(messages)
        return text

    return write, asked


def titles(g: Grounding) -> list[str]:
    return [s.title for s in g.sources]


def test_a_follow_up_is_found_through_the_written_query(tmp_path: Path) -> None:
    writer, asked = answering("1. Glasson ferry timetable\n")
    g = ground(tmp_path, writer)
    assert asked == [query_messages(FOLLOW_UP, 3, TODAY)]
    assert g.queries == ("Glasson ferry timetable",) and g.asked_model and g.query_error is None
    assert titles(g)[0] == "Glasson ferry" and g.error is None
    # searched as written, the question names no subject and finds nothing
    (tmp_path / "plain").mkdir()
    assert ground_local(tmp_path / "plain", "What time does it go?").sources == ()
    assert g.timings.queries_s > 0 and g.timings.total_s >= g.timings.queries_s + g.timings.search_s


def test_several_queries_are_searched_and_merged(tmp_path: Path) -> None:
    writer, _ = answering("Kestrel Bridge rivets\nGlasson ferry")
    g = ground(tmp_path, writer)
    assert g.queries == ("Kestrel Bridge rivets", "Glasson ferry")
    assert [(s.number, s.rank, s.title) for s in g.sources] == [
        (1, 1, "The Kestrel Bridge reopens - Lune Valley News"),
        (2, 2, "Glasson ferry"),
    ]


def failing(exc: BaseException) -> QueryWriter:
    async def write(messages: list[dict[str, str]]) -> str:
        raise exc

    return write


async def _slow(messages: list[dict[str, str]]) -> str:
    await asyncio.sleep(5)
    return "Glasson ferry"


@pytest.mark.parametrize(
    ("writer", "error"),
    [
        (failing(ConnectionError("backend gone")), "writing queries failed: ConnectionError: backend gone"),
        (answering("<think>\nhmm")[0], "the model wrote no usable query"),
        (_slow, "writing queries took over 0.25 s"),
    ],
)
def test_a_writer_that_fails_falls_back_to_the_last_user_message(
    tmp_path: Path, writer: QueryWriter, error: str
) -> None:
    g = ground(tmp_path, writer, budget_s=0.5)
    assert g.query_error == error and g.asked_model
    assert g.queries == ("What time does it go?",)
    assert g.error is None  # not a search error: the search ran, on the message as written
    assert g.timings.queries_s < 0.45


def test_query_writes_are_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = SearchMetrics(registry, "m")
    metrics.observe(ground(tmp_path / "a", answering("Glasson ferry")[0]))
    metrics.observe(ground(tmp_path / "b", failing(ValueError("no"))))
    metrics.observe(Grounding("q"))  # the fast path asks no model

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"model_name": "m", **labels})

    assert value("seekserve:search_query_writes_total", outcome="written") == 1
    assert value("seekserve:search_query_writes_total", outcome="fallback") == 1
    assert value("seekserve:search_latency_seconds_count", phase="queries") == 2
