"""The chat page in headless Chromium against real servers on loopback: it loads cleanly within its
budget, streams, stops, shows R1's thinking and search sources, recovers from a full queue, keeps
conversations, and works through the gateway.

Models: the tiny random Llama, slowed to 20 ms a step so that a stream spans many frames; and a
scripted reasoning model (server/scripted.py) that always answers "Hello world</think>The answer: 42[1].",
served with the offline search provider over one article.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from browser import Browser, Page
from chat.page import (
    ANSWER,
    MODELS,
    answer_text,
    asset_bytes,
    click,
    color_scheme,
    in_answer,
    open_chat,
    page_files,
    record_growth,
    same_origin,
    scrape,
    send,
    set_value,
    wait_answered,
)
from gateway.harness import config_for, running_gateway
from search.web import ARTICLE_HTML
from seekserve.chat import BUDGET_GZIP_BYTES, assets
from seekserve.search.config import SearchConfig
from server.live import API_KEY, LiveServer, engine_loader, slowed, start_server
from server.scripted import make_scripted_model_dir

STEP_DELAY_S = 0.02
SCRIPT = "Hello world</think>The answer: 42[1]."
QUESTION = "How many rivets were replaced on the Kestrel Bridge?"
ERRORS = "seekserve:request_errors_total"
"""API requests that failed, by type (aborted, rejected_overload, ...)."""


@pytest.fixture(scope="module")
def tiny(llama_dir: Path) -> Iterator[LiveServer]:
    live = start_server(slowed(engine_loader(llama_dir), STEP_DELAY_S))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def r1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """The scripted reasoning model with web search `auto` over a folder holding one article."""
    root = tmp_path_factory.mktemp("chat-r1")
    docs = root / "docs"
    docs.mkdir()
    (docs / "kestrel.html").write_text(ARTICLE_HTML)
    model = make_scripted_model_dir(root / "model", SCRIPT)
    search = SearchConfig(search_dir=docs, passage_words=20, max_context_tokens=40)
    live = start_server(
        engine_loader(model, max_model_len=512, num_kv_blocks=200), web_search="auto", search=search
    )
    yield live, docs / "kestrel.html"
    live.stop()


def run_in_browser(tmp_path: Path, scenario: object, width: int = 1400) -> list[str]:
    """Run `scenario(page)` in a fresh Chromium; returns the page's console errors."""

    async def main() -> list[str]:
        async with Browser.launch(tmp_path / "profile") as browser:
            page = await browser.new_page(width=width)
            await scenario(page)  # type: ignore[operator]
            return page.errors

    return asyncio.run(main())


def test_page_loads_cleanly_on_its_own_origin_within_budget(tiny: LiveServer, tmp_path: Path) -> None:
    url = tiny.base_url

    async def scenario(page: Page) -> None:
        await open_chat(page, url)
        assert await page.evaluate("location.pathname") == "/chat"
        assert await page.evaluate(MODELS) == ["tiny"]
        # Not a DeepSeek model: sampling is left to the server's defaults.
        assert await page.evaluate("[document.getElementById('temperature').value, "
                                   "document.getElementById('top-p').value]") == ["", ""]  # fmt: skip
        # DeepSeek models get DeepSeek's advice (0.6 / 0.95) until the user sets values of their own.
        sampling = "[document.getElementById('temperature').value, document.getElementById('top-p').value]"
        await page.evaluate("document.getElementById('model').add(new Option('DeepSeek-R1', 'DeepSeek-R1'))")
        await set_value(page, "model", "DeepSeek-R1")
        assert await page.evaluate(sampling) == ["0.6", "0.95"]
        await set_value(page, "temperature", "0.3")
        await set_value(page, "model", "tiny")
        assert await page.evaluate(sampling) == ["0.3", "0.95"]
        unlabelled = await page.evaluate(
            "[...document.querySelectorAll('input, select, textarea, button')].filter(e => "
            "!(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))"
            ".map(e => e.outerHTML)"
        )
        assert unlabelled == []
        assert await color_scheme(page, "dark") == "rgb(21, 23, 26)"
        assert await color_scheme(page, "light") == "rgb(255, 255, 255)"
        assert same_origin(page.requests, url) == []
        loaded = asset_bytes(page, url)
        assert set(loaded) == set(page_files()), "the budget counts exactly what the page loads"
        assert sum(loaded.values()) <= BUDGET_GZIP_BYTES
        markdown_it = "/chat/vendor/markdown-it.min.mjs"
        assert loaded[markdown_it] < len(assets()[markdown_it].body), "sent gzipped"

    assert run_in_browser(tmp_path, scenario) == []


def test_phone_width_hides_the_list_behind_a_button(tiny: LiveServer, tmp_path: Path) -> None:
    async def scenario(page: Page) -> None:
        await open_chat(page, tiny.base_url)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        sidebar = "document.getElementById('sidebar').getBoundingClientRect()"
        assert await page.evaluate(f"{sidebar}.right") <= 0
        await click(page, "#toggle-sidebar")
        await page.wait_for(f"{sidebar}.left === 0")
        assert await page.evaluate("document.getElementById('toggle-sidebar').ariaExpanded") == "true"

    assert run_in_browser(tmp_path, scenario, width=390) == []


def test_answer_streams_frame_by_frame_and_its_figures_match_the_server(
    tiny: LiveServer, tmp_path: Path
) -> None:
    url = tiny.base_url

    async def scenario(page: Page) -> None:
        await open_chat(page, url)
        await set_value(page, "max-tokens", "40")
        await set_value(page, "temperature", "0")
        before = scrape(url)
        await record_growth(page)
        await page.evaluate("document.getElementById('prompt').focus()")
        await page.type_text("Hello there")
        await page.press("Enter", modifiers=8)  # Shift+Enter: a new line, not a send
        assert await page.evaluate("document.querySelectorAll('#messages .message').length") == 0
        await page.press("Enter")
        await wait_answered(page)
        after = scrape(url)
        lengths = await page.evaluate("window.lengths")
        growth = sorted(set(lengths))
        assert len(growth) >= 8, f"the answer should arrive over many frames, got lengths {growth}"
        text = await answer_text(page)
        assert len(text.strip()) > 0 and lengths[-1] == len(text)
        completion = after("seekserve:generation_tokens_total") - before("seekserve:generation_tokens_total")
        prompt = after("seekserve:prompt_tokens_total") - before("seekserve:prompt_tokens_total")
        stats = await in_answer(page, "a.querySelector('.stats').textContent")
        assert f"{int(prompt)} prompt + {int(completion)} completion tokens" in stats, stats
        assert stats.startswith("TTFT ") and " tokens/s · " in stats
        assert await page.evaluate("document.querySelector('#messages .message.user .body').textContent") == (
            "Hello there"
        )

    assert run_in_browser(tmp_path, scenario) == []


def test_stop_aborts_the_request_and_the_server_frees_its_cache(tiny: LiveServer, tmp_path: Path) -> None:
    url = tiny.base_url

    async def scenario(page: Page) -> None:
        await open_chat(page, url)
        await set_value(page, "max-tokens", "100")
        before = scrape(url)(ERRORS, type="aborted")
        await send(page, "Tell me a long story")
        await page.wait_for(f"{ANSWER}?.querySelector('.body').textContent.length > 0")
        assert scrape(url)("seekserve:kv_cache_usage_perc") > 0
        await page.press("Escape")
        await wait_answered(page, 5)
        assert (await in_answer(page, "a.querySelector('.stats').textContent")).startswith("Stopped")
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            now = scrape(url)
            if now(ERRORS, type="aborted") == before + 1 and now("seekserve:kv_cache_usage_perc") == 0:
                break
            assert asyncio.get_running_loop().time() < deadline, "the server did not abort and free"
            await asyncio.sleep(0.1)
        assert now("seekserve:num_requests_running") == 0
        assert await in_answer(page, "a.querySelector('.error').hidden")

    assert run_in_browser(tmp_path, scenario) == []


def test_thinking_is_shown_apart_from_the_answer(r1: tuple[LiveServer, Path], tmp_path: Path) -> None:
    live, _ = r1

    async def scenario(page: Page) -> None:
        await open_chat(page, live.base_url)
        await send(page, "Hi")
        await wait_answered(page)
        thinking = await in_answer(
            page,
            "(t => [t.hidden, t.open, t.querySelector('summary').textContent, "
            "t.querySelector('.thinking-body').textContent.trim()])(a.querySelector('.thinking'))",
        )
        hidden, unfolded, summary, reasoning = thinking
        assert hidden is False and reasoning == "Hello world"
        assert summary.startswith("Thought for ") and summary.endswith(" s · 11 characters"), summary
        assert unfolded is False, "folded once the answer began"
        assert (await answer_text(page)).strip() == "The answer: 42[1]."  # no sources: the mark is text
        assert await in_answer(page, "a.querySelectorAll('.cite, .chip').length") == 0

    assert run_in_browser(tmp_path, scenario) == []


def test_search_sources_are_numbered_chips_that_the_marks_link_to(
    r1: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    live, article = r1

    async def scenario(page: Page) -> None:
        await open_chat(page, live.base_url)
        await click(page, "#web-search")
        await set_value(page, "max-tokens", "20")  # room in the 512-token context for the sources
        await send(page, QUESTION)
        await wait_answered(page)
        chips = await in_answer(
            page,
            "[...a.querySelectorAll('.sources .chip')].map(c => [c.querySelector('.chip-number')"
            ".textContent, c.querySelector('.chip-title').textContent, c.getAttribute('href')])",
        )
        assert chips == [["1", "The Kestrel Bridge reopens - Lune Valley News", article.as_uri()]]
        cites = await in_answer(
            page, "[...a.querySelectorAll('.body a.cite')].map(c => [c.textContent, c.getAttribute('href')])"
        )
        assert cites == [["1", article.as_uri()]]
        assert (await answer_text(page)).strip() == "The answer: 421."  # the mark became the link "1"

    assert run_in_browser(tmp_path, scenario) == []


def test_an_api_key_then_a_full_queue_are_shown_and_retried(llama_dir: Path, tmp_path: Path) -> None:
    """A server with an API key and a queue of one: the page asks for the key, keeps it, and retries a 429."""
    load = slowed(engine_loader(llama_dir, max_num_seqs=1, max_queue_len=1), STEP_DELAY_S)
    live = start_server(load, api_key=API_KEY)
    url = live.base_url

    async def scenario(page: Page) -> None:
        await page.goto(f"{url}/chat")
        await page.wait_for("document.getElementById('status').textContent.includes('needs an API key')")
        assert await page.evaluate("document.getElementById('settings').hidden") is False
        await set_value(page, "api-key", API_KEY)
        await page.wait_for("document.getElementById('model').options.length === 1")
        await page.goto(f"{url}/chat")  # the key was kept in this browser
        await page.wait_for("document.getElementById('model').options.length === 1")
        assert await page.evaluate("localStorage.getItem('seekserve.chat.apiKey')") == API_KEY
        await set_value(page, "max-tokens", "4")
        before = scrape(url)(ERRORS, type="rejected_overload")
        body = {"prompt": "Once", "max_tokens": 100, "ignore_eos": True, "stream": True}
        async with contextlib.AsyncExitStack() as streams:
            http = await streams.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, headers=live.headers())
            )
            # The second is sent once the first runs: a request taken in counts as waiting until a
            # step schedules it.
            await streams.enter_async_context(http.stream("POST", "/v1/completions", json=body))  # runs
            await asyncio.to_thread(live.wait_until, lambda: live.engine.stats.num_running == 1)
            await streams.enter_async_context(http.stream("POST", "/v1/completions", json=body))  # waits
            await asyncio.to_thread(live.wait_until, lambda: live.engine.stats.num_waiting == 1)
            await send(page, "Hi")
            text = await page.wait_for(f"{ANSWER}?.querySelector('.error')?.textContent")
            assert text.startswith("The server is busy (429): ") and "max_queue_len=1" in text, text
            assert "Retrying in 1 s" in text and await in_answer(page, "a.querySelector('.retry') !== null")
        await page.wait_for(
            f"{ANSWER}.querySelector('.error').hidden && {ANSWER}.querySelector('.stats').textContent", 10
        )
        assert len(await answer_text(page)) > 0
        assert scrape(url)(ERRORS, type="rejected_overload") >= before + 1
        await set_value(page, "temperature", "9")
        await send(page, "Too hot")
        text = await page.wait_for(f"{ANSWER}?.querySelector('.error')?.textContent")
        assert text.startswith("The server refused the request (400): ") and "temperature" in text, text

    try:
        errors = run_in_browser(tmp_path, scenario)
    finally:
        live.stop()
    statuses = [next((s for s in ("401", "429", "400") if f"status of {s}" in e), e) for e in errors]
    assert set(statuses) == {"401", "429", "400"}, errors  # the answers the page was shown, and nothing else


def test_a_cut_stream_keeps_its_text_and_is_retried(tiny: LiveServer, tmp_path: Path) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Half an ans"}, "finish_reason": None}]}
    cut_body = f"data: {json.dumps(chunk)}\n\n".encode()  # no finish, no [DONE]: the connection ends

    async def scenario(page: Page) -> None:
        await open_chat(page, tiny.base_url)
        await set_value(page, "max-tokens", "3")
        await page.send("Fetch.enable", {"patterns": [{"urlPattern": "*/v1/chat/completions"}]})
        await send(page, "Hi")
        paused = await asyncio.wait_for(page.paused.get(), 10)
        await page.send(
            "Fetch.fulfillRequest",
            {
                "requestId": paused["requestId"],
                "responseCode": 200,
                "responseHeaders": [{"name": "Content-Type", "value": "text/event-stream"}],
                "body": base64.b64encode(cut_body).decode(),
            },
        )
        await page.send("Fetch.disable")
        text = await page.wait_for(f"{ANSWER}?.querySelector('.error')?.textContent")
        assert text.startswith("The answer was cut off: the connection closed before the answer finished")
        assert (await answer_text(page)).strip() == "Half an ans"
        await click(page, "#messages .retry")
        await page.wait_for(f"{ANSWER}.querySelector('.stats').textContent.includes(' completion tokens')")
        assert (await answer_text(page)).strip() != "Half an ans"  # a new answer, from the server
        assert await in_answer(page, "a.querySelector('.error').hidden")

    assert run_in_browser(tmp_path, scenario) == []


def test_conversations_are_kept_renamed_exported_and_deleted(tiny: LiveServer, tmp_path: Path) -> None:
    url = tiny.base_url

    async def scenario(page: Page) -> None:
        await open_chat(page, url)
        await set_value(page, "max-tokens", "3")
        await send(page, "First question")
        await wait_answered(page)
        await click(page, "#messages .message.assistant .copy")
        await page.wait_for(f"{ANSWER}.querySelector('.copy').textContent === 'Copied'")
        posts = page.requests.count(f"{url}/v1/chat/completions")
        await click(page, "#messages .message:last-child .regenerate")
        await wait_answered(page)
        assert page.requests.count(f"{url}/v1/chat/completions") == posts + 1
        await click(page, "#messages .message.user .edit")
        await page.evaluate("document.querySelector('.edit-box').value = 'Edited question'")
        await click(page, "#messages .message.user .actions button")  # Send
        await wait_answered(page)
        messages = "[...document.querySelectorAll('#messages .message')]"
        assert await page.evaluate(f"{messages}.map(m => m.className)") == [
            "message user",
            "message assistant",
        ]
        await page.goto(f"{url}/chat")  # reload: the conversation comes back from localStorage
        await page.wait_for("document.querySelectorAll('#messages .message').length === 2")
        # The title comes from the first message as first sent.
        assert await page.evaluate("document.querySelector('#conversations .select').textContent") == (
            "First question"
        )
        await click(page, "#conversations .rename")
        await page.evaluate("document.querySelector('.rename-input').value = 'Bridge questions'")
        await page.press("Enter")
        await page.evaluate(
            "window.exported = []; const make = URL.createObjectURL; "
            "URL.createObjectURL = b => { window.exported.push(b); return make(b); }"
        )
        await click(page, "#export-json")
        await click(page, "#export-md")
        saved = json.loads(await page.evaluate("window.exported[0].text()"))
        assert saved["title"] == "Bridge questions"
        assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
        assert saved["messages"][0]["content"] == "Edited question"
        markdown = await page.evaluate("window.exported[1].text()")
        assert markdown.startswith("# Bridge questions\n\n## User\n\nEdited question\n\n## Assistant (tiny)")
        await click(page, "#conversations .delete")
        await click(page, "#conversations .delete")
        listed = "[...document.querySelectorAll('#conversations .select')]"
        titles = await page.evaluate(f"{listed}.map(b => b.textContent)")
        assert titles == ["New chat"]

    assert run_in_browser(tmp_path, scenario) == []


def test_stream_render_keeps_finished_blocks_and_highlights_code(tiny: LiveServer, tmp_path: Path) -> None:
    text = (
        "# Title\n\nFirst paragraph with `code`.\n\n```python\ndef f(x):\n\n    return x + 1\n```\n\n"
        "- one\n- two\n\n1. first\n\n2. second\n\nLast words [1] and [citation:2]."
    )

    async def scenario(page: Page) -> None:
        await open_chat(page, tiny.base_url)
        result = await page.evaluate(
            "(async () => { const m = await import('./chat/js/markdown.js');"
            "const root = document.createElement('div'); document.body.append(root);"
            "const sources = [{url: 'https://a.example/', title: 'A'}];"
            "const view = new m.StreamView(root, {sources});"
            "const removed = []; new MutationObserver(rs => rs.forEach(r => removed.push(...r.removedNodes)))"
            ".observe(view.done, {childList: true});"
            f"const text = {json.dumps(text)};"
            "const frame = () => new Promise(r => requestAnimationFrame(r));"
            "let title = null, inFence = 0;"
            "for (let i = 1; i <= text.length; i += 3) { view.set(text.slice(0, i)); await frame();"
            "  title ??= view.done.querySelector('h1');"
            "  const done = view.done.innerHTML;"
            "  if (done.includes('<pre') && !done.includes('return')) inFence++; }"
            "view.set(text); await frame(); const streamed = view.done.innerHTML + view.live.innerHTML;"
            "return {kept: title !== null && title.isConnected, removed: removed.length, inFence,"
            " blocks: [...view.done.children].map(e => e.tagName), live: view.live.innerHTML,"
            " keyword: root.querySelector('pre code .hljs-keyword')?.textContent,"
            " cites: [...root.querySelectorAll('a.cite')].map(a => a.textContent),"
            " same: streamed === m.renderMarkdown(text, {sources, marks: true}),"
            " hostile: m.renderMarkdown('<b>x</b> ![i](https://a.example/i.png) [j](javascript:alert(1)) "
            "see https://b.example')}; })()"
        )
        assert result["kept"] and result["removed"] == 0, "finished blocks are never rendered again"
        assert result["inFence"] == 0, "an open code block stays in the live part"
        assert result["blocks"] == ["H1", "P", "PRE", "UL", "OL"]
        cite = (
            '<a class="cite" href="https://a.example/" title="A" target="_blank" rel="noopener noreferrer">'
        )
        assert result["live"] == f"<p>Last words {cite}1</a> and [citation:2].</p>\n"
        assert result["keyword"] == "def" and result["cites"] == ["1"] and result["same"]
        assert result["hostile"] == (
            '<p>&lt;b&gt;x&lt;/b&gt; !<a href="https://a.example/i.png" target="_blank" '
            'rel="noopener noreferrer">i</a> [j](javascript:alert(1)) see '
            '<a href="https://b.example" target="_blank" rel="noopener noreferrer">https://b.example</a></p>\n'
        ), "no HTML, no image, no script link; bare URLs linked"

    assert run_in_browser(tmp_path, scenario) == []


def test_the_gateway_serves_the_page_and_relays_its_stream(tiny: LiveServer, tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with (
            running_gateway(config_for([f"{tiny.base_url}/v1"])) as gw,
            Browser.launch(tmp_path / "profile") as browser,
        ):
            page = await browser.new_page()
            await open_chat(page, gw.url)
            assert await page.evaluate(MODELS) == ["tiny"]
            await set_value(page, "max-tokens", "12")
            await set_value(page, "temperature", "0")
            await record_growth(page)
            await send(page, "Hello through the gateway")
            await wait_answered(page)
            assert len(set(await page.evaluate("window.lengths"))) >= 3
            assert "12 completion tokens" in await in_answer(page, "a.querySelector('.stats').textContent")
            assert same_origin(page.requests, gw.url) == []
            return page.errors

    assert asyncio.run(main()) == []
