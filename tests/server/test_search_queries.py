"""`--search-queries model` in `seekserve serve`: the served model writes the search queries.

The model is scripted (server/scripted.py): an R1-style template that opens `<think>`, and an
answer of "x</think>Glasson ferry" to any chat. Writing queries closes the thought it opens
("<think>\\n</think>\\n\\n"), so the script runs from its start again and its answer after the
thought, "Glasson ferry", is the query. A follow-up that names no subject is then grounded in the
right document, where searching it as written finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from search.web import ARTICLE_HTML
from seekserve.search.config import QueryMode, SearchConfig
from server.live import LiveServer, engine_loader, start_server
from server.scripted import make_scripted_model_dir
from server.test_search import FERRY, metric

SCRIPT = "x</think>Glasson ferry"
FOLLOW_UP = [
    {"role": "user", "content": "Tell me about the Glasson ferry."},
    {"role": "assistant", "content": "It crosses the bay."},
    {"role": "user", "content": "What time does it go?"},
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[QueryMode, LiveServer]]:
    root = tmp_path_factory.mktemp("queries")
    model = make_scripted_model_dir(root / "model", SCRIPT)
    docs = root / "docs"
    docs.mkdir()
    (docs / "kestrel.html").write_text(ARTICLE_HTML)
    (docs / "ferry.md").write_text(FERRY)
    live: dict[QueryMode, LiveServer] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEEKSERVE_HOME", str(root / "home"))
        try:
            for mode in QueryMode:
                config = SearchConfig(search_dir=docs, passage_words=20, max_context_tokens=40, queries=mode)
                live[mode] = start_server(
                    engine_loader(model, max_model_len=512), web_search="auto", search=config
                )
            yield live
        finally:
            for server in live.values():
                server.stop()


def ask(live: LiveServer) -> dict[str, object]:
    with live.http() as http:
        r = http.post(
            "/v1/chat/completions",
            json={"messages": FOLLOW_UP, "web_search": True, "temperature": 0, "max_tokens": 8},
        )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_served_model_writes_the_query_of_a_follow_up(servers: dict[QueryMode, LiveServer]) -> None:
    live = servers[QueryMode.MODEL]
    answer = ask(live)
    assert "search_error" not in answer, answer["search_error"]
    results = answer["search_results"]
    assert isinstance(results, list) and results[0]["title"] == "Glasson ferry"
    assert results[0]["url"].endswith("/docs/ferry.md")
    written = 'seekserve:search_query_writes_total{model_name="tiny",outcome="written"}'
    assert metric(live, written) == 1
    assert metric(live, 'seekserve:search_latency_seconds_count{model_name="tiny",phase="queries"}') == 1


def test_searched_as_written_the_follow_up_finds_nothing(servers: dict[QueryMode, LiveServer]) -> None:
    live = servers[QueryMode.LAST]
    answer = ask(live)
    assert answer["search_results"] == [] and "search_error" not in answer
    assert metric(live, "seekserve:search_query_writes_total") == 0
