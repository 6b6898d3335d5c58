"""Web search at the gateway: requests grounded before proxying, answers given annotations."""

from __future__ import annotations

import asyncio
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.fake_upstream import FakeEngine, running
from gateway.harness import config_for, read_sse, running_gateway
from search.web import ARTICLE_HTML
from seekserve.search.queries import QUERY_MAX_TOKENS, query_messages

ANSWER = ["All 412 rivets were replaced[cit", "ation:1]. 桥[citation:2", "][citation:7]"]
TEXT = "".join(ANSWER)
QUESTION = "How many rivets were replaced on the Kestrel Bridge?"


@dataclass
class CitingEngine(FakeEngine):
    """A chat backend that always answers TEXT (in three chunks when streaming)."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        base = {"id": "c1", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": TEXT}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(ANSWER):
            finish = "stop" if i == len(ANSWER) - 1 else None
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kestrel.html").write_text(ARTICLE_HTML)
    (docs / "ferry.md").write_text("# Ferry\n\nThe Kestrel ferry leaves at a quarter past seven.\n")
    return docs


def ask(engine: CitingEngine, search: dict[str, Any], **body: Any) -> tuple[int, bytes]:
    status, data, _ = ask_with_metrics(engine, search, **body)
    return status, data


def ask_with_metrics(engine: CitingEngine, search: dict[str, Any], **body: Any) -> tuple[int, bytes, str]:
    """(status, body) of one chat request through a gateway with this search section, and the
    gateway's /metrics after it."""

    async def main() -> tuple[int, bytes, str]:
        config = config_for([engine.url], search=search)
        async with running(engine), running_gateway(config) as gw:
            request = {"model": engine.model, "messages": [{"role": "user", "content": QUESTION}], **body}
            status, _, data = await gw.post("/v1/chat/completions", request)
            return status, data, gw.app.metrics.render().decode()

    return asyncio.run(main())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEEKSERVE_HOME", str(tmp_path / "home"))
    return tmp_path


def test_grounded_for_any_backend_with_annotations(home: Path) -> None:
    engine = CitingEngine("a", model="deepseek-chat")
    search = {"web_search": "auto", "search_dir": str(folder(home)), "max_context_tokens": 300}
    status, data = ask(engine, search, web_search_options={"search_context_size": "medium"})
    assert status == 200
    sent = engine.requests[0]
    assert "web_search_options" not in sent and "web_search" not in sent
    prompt = sent["messages"][0]["content"]
    assert prompt.startswith(
        "# The following contents are the search results related to the user's message:\n"
    )
    assert "[webpage 1 begin]\nThe Kestrel Bridge reopens - Lune Valley News\n" in prompt
    assert prompt.endswith(f"# The user's message is:\n{QUESTION}")
    answer = json.loads(data)
    urls = [r["url"] for r in answer["search_results"]]
    assert [Path(u).name for u in urls] == ["kestrel.html", "ferry.md"]
    assert answer["choices"][0]["message"]["annotations"] == [
        {"type": "url_citation", "url_citation": {"start_index": 28, "end_index": 40,
         "title": "The Kestrel Bridge reopens - Lune Valley News", "url": urls[0]}},
        {"type": "url_citation", "url_citation": {"start_index": 43, "end_index": 55, "title": "Ferry",
         "url": urls[1]}},
    ]  # fmt: skip
    assert TEXT[28:40] == "[citation:1]" and TEXT[43:55] == "[citation:2]"  # [citation:7] names no source


def test_stream_gets_results_first_and_annotations_last(home: Path) -> None:
    engine = CitingEngine("a", model="deepseek-chat")
    search = {"web_search": "on", "search_dir": str(folder(home)), "max_context_tokens": 300}
    status, data = ask(engine, search, stream=True)
    events, done = read_sse(data)
    assert status == 200 and done
    assert [Path(r["url"]).name for r in events[0]["search_results"]] == ["kestrel.html", "ferry.md"]
    assert all("search_results" not in e for e in events[1:])
    spans = [
        (a["url_citation"]["start_index"], a["url_citation"]["end_index"])
        for a in events[-1]["choices"][0]["delta"]["annotations"]
    ]
    assert spans == [(28, 40), (43, 55)]


def test_off_flags_and_opt_out_and_bad_options(home: Path) -> None:
    engine = CitingEngine("a", model="deepseek-chat")
    status, data = ask(engine, {}, web_search=True)
    answer = json.loads(data)
    assert status == 200 and answer["search_results"] == []
    assert answer["search_error"].startswith("web search is off on this server")
    assert engine.requests[0]["messages"][0]["content"] == QUESTION and "web_search" not in engine.requests[0]
    search = {"web_search": "on", "search_dir": str(folder(home))}
    opted_out = CitingEngine("a", model="deepseek-chat")
    status, data = ask(opted_out, search, web_search=False)
    assert (
        "search_results" not in json.loads(data)
        and opted_out.requests[0]["messages"][0]["content"] == QUESTION
    )
    status, data = ask(
        CitingEngine("a", model="m"), search, web_search_options={"search_context_size": "huge"}
    )
    assert status == 400 and b"search_context_size 'huge' is not one of: low, medium, high" in data


def test_unreachable_provider_degrades(home: Path) -> None:
    engine = CitingEngine("a", model="gpt-4o")
    search = {
        "web_search": "on",
        "provider": "searxng",
        "searxng_url": "http://127.0.0.1:9",
        "total_budget_s": 0.5,
    }
    status, data, metrics = ask_with_metrics(engine, search)
    answer = json.loads(data)
    assert status == 200 and answer["search_results"] == []
    assert answer["search_error"].startswith("search provider searxng: ")
    assert 'seekserve:gateway_search_requests_total{outcome="degraded"} 1.0' in metrics
    assert 'seekserve:gateway_search_errors_total{kind="ProviderUnreachable"} 1.0' in metrics
    assert engine.requests[0]["messages"][0]["content"] == QUESTION
    assert answer["choices"][0]["message"]["content"] == TEXT


def test_a_bad_search_section_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"search total_budget_s=0.0 is outside \[0.01, 120\]"):
        config_for(["http://127.0.0.1:1/v1"], search={"total_budget_s": 0})


def test_results_and_pages_kept_in_the_response_cache(home: Path) -> None:
    engine = CitingEngine("a", model="deepseek-chat")
    search = {"web_search": "on", "search_dir": str(folder(home)), "cache_ttl_s": 60}

    async def main() -> list[bytes]:
        config = config_for([engine.url], search=search, cache={"backend": "memory"})
        async with running(engine), running_gateway(config) as gw:
            request = {"model": engine.model, "messages": [{"role": "user", "content": QUESTION}]}
            answers = [(await gw.post("/v1/chat/completions", request))[2] for _ in range(2)]
            cache = gw.app.state.cache
            assert cache is not None, "a memory cache"
            assert (cache.stores, cache.hits) == (1, 1)  # the results: stored once, then read
            return answers

    first, second = asyncio.run(main())
    assert json.loads(first)["search_results"] == json.loads(second)["search_results"] != []
    assert engine.requests[0]["messages"] == engine.requests[1]["messages"]


@dataclass
class QueryEngine(CitingEngine):
    """A light model that answers every chat with two search queries."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        message = {"role": "assistant", "content": "1. Kestrel ferry timetable\n2. Kestrel ferry"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({"id": "q", "object": "chat.completion", "choices": [choice]})


FOLLOW_UP = [
    {"role": "user", "content": "Tell me about the ferry over the Kestrel."},
    {"role": "assistant", "content": "It crosses the river."},
    {"role": "user", "content": "What time does it go?"},
]


def ask_follow_up(home: Path, query_model: str) -> tuple[CitingEngine, QueryEngine, dict[str, Any], str]:
    main, light = CitingEngine("a", model="deepseek-chat"), QueryEngine("q", model="light")
    search = {
        "web_search": "on",
        "search_dir": str(folder(home)),
        "max_context_tokens": 300,
        "queries": "model",
        "query_model": query_model,
    }

    async def run() -> tuple[dict[str, Any], str]:
        async with (
            running(main),
            running(light),
            running_gateway(config_for([main.url, light.url], search=search)) as gw,
        ):
            status, _, data = await gw.post(
                "/v1/chat/completions", {"model": main.model, "messages": FOLLOW_UP}
            )
            assert status == 200, data
            return json.loads(data), gw.app.metrics.render().decode()

    answer, metrics = asyncio.run(run())
    return main, light, answer, metrics


def test_a_lighter_model_writes_the_queries(home: Path) -> None:
    main, light, answer, metrics = ask_follow_up(home, "light")
    [sent] = light.requests
    assert sent["model"] == "light" and sent["max_tokens"] == QUERY_MAX_TOKENS and sent["temperature"] == 0
    assert sent["stop"] == ["\nUser:", "\nAssistant:", "\nConversation:"]
    assert sent["messages"] == query_messages(FOLLOW_UP, 3, datetime.date.today())
    assert [Path(r["url"]).name for r in answer["search_results"]] == ["ferry.md", "kestrel.html"]
    assert "search_error" not in answer
    prompt = main.requests[0]["messages"][-1]["content"]
    assert "[webpage 1 begin]\nFerry\n" in prompt and prompt.endswith("What time does it go?")
    assert 'seekserve:gateway_search_query_writes_total{outcome="written"} 1.0' in metrics


def test_queries_fall_back_to_the_message_when_their_model_is_not_served(home: Path) -> None:
    main, light, answer, metrics = ask_follow_up(home, "missing")
    assert light.requests == [] and answer["search_results"] == []  # "What time does it go?" finds nothing
    assert "search_error" not in answer
    assert main.requests[0]["messages"][-1]["content"] == "What time does it go?"
    assert 'seekserve:gateway_search_query_writes_total{outcome="fallback"} 1.0' in metrics
