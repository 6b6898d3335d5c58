"""Which chat requests search and with what options; annotations on streamed chunks."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace
from typing import Any

from seekserve.engine.outputs import CompletionOutput
from seekserve.search.config import SearchConfig
from seekserve.search.grounding import Source
from seekserve.search.prompt import PromptStyle
from seekserve.search.service import SearchAsk
from seekserve.server.chat import _Chat, _ChunkMaker
from seekserve.server.protocol import ChatCompletionRequest
from seekserve.server.search import GroundedPrompt, search_ask

NOW = datetime.datetime(2025, 2, 6, 23, 30, tzinfo=datetime.UTC)
CONFIG = SearchConfig(max_results=5, max_context_tokens=2000)


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "q"}], **fields})


def test_modes_and_request_fields_decide() -> None:
    assert search_ask(request(), "auto", CONFIG, NOW) is None
    assert search_ask(request(), "off", CONFIG, NOW) is None
    assert search_ask(request(web_search=False), "on", CONFIG, NOW) is None
    medium = SearchAsk(5, 2000, None, datetime.date(2025, 2, 6))
    assert search_ask(request(), "on", CONFIG, NOW) == medium
    assert search_ask(request(web_search=True), "auto", CONFIG, NOW) == medium
    assert search_ask(request(web_search_options={}), "off", CONFIG, NOW) == medium  # flagged later


def test_context_size_and_location() -> None:
    low = request(web_search_options={"search_context_size": "low"})
    assert search_ask(low, "auto", CONFIG, NOW) == SearchAsk(2, 1000, None, datetime.date(2025, 2, 6))
    location = {"type": "approximate", "approximate": {"country": "cn", "timezone": "Asia/Shanghai"}}
    high = request(web_search_options={"search_context_size": "high", "user_location": location})
    ask = search_ask(high, "auto", CONFIG)
    assert ask is not None and (ask.num_results, ask.max_context_tokens, ask.language) == (10, 4000, "zh-CN")
    zone = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
    assert ask.today == zone  # Shanghai's date, not the server's


def test_streamed_annotations_cover_marks_split_across_chunks() -> None:
    sources = (
        Source(1, "https://a.example/", "A", "", 1, ()),
        Source(2, "https://b.example/", "B", "", 2, ()),
    )
    search = GroundedPrompt("p", [1], PromptStyle.NUMBERED, sources)
    chat = _Chat("id", 0, "m", "p", False, None, None, search)
    maker = _ChunkMaker(chat, 1)
    first = json.loads(maker.first()[0].removeprefix("data: "))
    assert [r["url"] for r in first["search_results"]] == ["https://a.example/", "https://b.example/"]
    chunks = []
    for delta, reason in (("It is 7:15 [", None), ("2] and [1", None), ("].", "length")):
        out = CompletionOutput(0, "", [], finish_reason=reason, delta_text=delta)
        chunks += maker.update(0, SimpleNamespace(outputs=[out]))  # type: ignore[arg-type]
    last = json.loads(chunks[-1].removeprefix("data: "))
    assert last["choices"][0]["delta"]["annotations"] == [
        {"type": "url_citation", "url_citation": {"start_index": 11, "end_index": 14, "title": "B", "url": "https://b.example/"}},
        {"type": "url_citation", "url_citation": {"start_index": 19, "end_index": 22, "title": "A", "url": "https://a.example/"}},
    ]  # fmt: skip
    assert "It is 7:15 [2] and [1]."[11:14] == "[2]"
