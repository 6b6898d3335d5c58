"""Loopback servers for the search tests: a small web of pages, a SearXNG-compatible fake, fakes of
the Bing, Brave and Tavily APIs, and a fake DNS for the fetcher. Each runs in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "ARTICLE_HTML",
    "FakeApis",
    "FakeDns",
    "FakeSearx",
    "local_web",
    "serving",
]

ARTICLE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>The Kestrel Bridge reopens - Lune Valley News</title></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/sport">Sport</a></li>
<li>Subscribe to the Lune Valley newsletter</li></ul></nav>
<header><p>Lune Valley News, your local paper since 1921</p></header>
<article>
<h1>The Kestrel Bridge reopens</h1>
<p>The Kestrel Bridge over the river Lune reopened on Tuesday after two years of repairs. Engineers
replaced all 412 rivets of the main span and repainted the railings in the original green.</p>
<p>The bridge was designed in 1887 by the engineer Margaret Holloway, who also designed the harbour
lighthouse at Glasson. It carries about nine thousand vehicles a day.</p>
<p>Local shops hope the reopening will bring back the visitors they lost while the bridge was closed,
and the town council plans a festival on the bridge next spring.</p>
</article>
<aside>Most read: the cats of the week</aside>
<footer>Copyright 2024 Lune Valley News. All rights reserved. Privacy policy. Cookie settings.</footer>
</body></html>"""

HUGE_BYTES = 3 * 1024 * 1024


@asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    """Serve `app` on host:port (0: a free port) until the block ends; yields the port."""
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def respond(make: Callable[[web.Request], web.Response]) -> Handler:
    """An aiohttp handler (a coroutine function) answering make(request)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return make(request)

    return handler


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


async def _hops(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n == 0:
        return web.Response(text=ARTICLE_HTML, content_type="text/html")
    return _redirect(f"/hops/{n - 1}")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(text="too late", content_type="text/plain")


async def _huge_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(HUGE_BYTES // 65536):
        await response.write(b"<p>" + b"x" * 65529 + b"</p>")
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.Response:
    seen = {"cookie": request.headers.get("Cookie"), "user-agent": request.headers.get("User-Agent")}
    return web.Response(text=json.dumps(seen), content_type="text/plain")


def local_web(name: str = "A") -> web.Application:
    """The pages; `name` is in /whoami's body, to tell two servers apart."""

    def page(body: str | bytes, content_type: str) -> Handler:
        if isinstance(body, str):
            return respond(lambda r: web.Response(text=body, content_type=content_type))
        return respond(lambda r: web.Response(body=body, content_type=content_type))

    app = web.Application()
    routes = {
        "/article": page(ARTICLE_HTML, "text/html"),
        "/plain": page("Plain facts.\nThe ferry leaves at 7:15.", "text/plain"),
        "/notes.md": page("# Ferry notes\n\nThe ferry leaves at **7:15**.", "text/markdown"),
        "/image.png": page(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png"),
        "/huge": page(b"<p>" + b"x" * HUGE_BYTES + b"</p>", "text/html"),
        "/whoami": page(f"server {name}", "text/plain"),
        "/missing": respond(lambda r: web.Response(status=404, text="no such page")),
        "/nolocation": respond(lambda r: web.Response(status=302)),
        "/to": respond(lambda r: _redirect(r.query["url"])),
        "/relative": respond(lambda r: _redirect("article", 301)),
        "/cookie": respond(lambda r: _cookie()),
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    app.router.add_get("/hops/{n}", _hops)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/huge-chunked", _huge_chunked)
    app.router.add_get("/echo", _echo)
    return app


def _cookie() -> web.Response:
    response = _redirect("/echo")
    response.set_cookie("session", "secret")
    return response


@dataclass
class FakeDns:
    """The fetcher's Lookup over a table: each name's answers in turn (the last one repeated)."""

    table: dict[str, list[list[str]]]
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[min(self.calls.count(host), len(answers)) - 1]


SEARX_RESULTS = [
    {
        "url": "https://lune.example/kestrel",
        "title": "Kestrel &amp; Bridge",
        "content": "Reopened <b>Tuesday</b>",
    },
    {"url": "https://lune.example/kestrel", "title": "duplicate", "content": "same URL again"},
    {"url": "javascript:alert(1)", "title": "not a page", "content": ""},
    {"url": "https://lune.example/ferry", "title": "Ferry times", "content": "Leaves at 7:15"},
    {"url": "https://lune.example/festival", "title": "", "content": "Next spring"},
]


@dataclass
class FakeSearx:
    """SearXNG's /search: mode ok | json-disabled | engines-down | empty | limited | garbage."""

    mode: str = "ok"
    results: list[dict[str, str]] = field(default_factory=lambda: list(SEARX_RESULTS))
    requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/search", self.search)
        return app

    async def search(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if self.mode == "json-disabled":
            return web.Response(status=403, text="Forbidden", content_type="text/html")
        if self.mode == "limited":
            return web.Response(status=429, text="Too Many Requests")
        if self.mode == "garbage":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        answer: dict[str, Any] = {"query": request.query.get("q"), "results": [], "unresponsive_engines": []}
        if self.mode == "ok":
            answer["results"] = self.results
        elif self.mode == "engines-down":
            answer["unresponsive_engines"] = [["google", "timeout"], ["duckduckgo", "CAPTCHA"]]
        return web.json_response(answer)


@dataclass
class FakeApis:
    """Bing v7, Brave and Tavily on one server; a wrong key gets 401. Records (path, params, headers)."""

    key: str = "k-123"
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v7.0/search", self.bing)
        app.router.add_get("/res/v1/web/search", self.brave)
        app.router.add_post("/search", self.tavily)
        return app

    def _record(self, request: web.Request, params: dict[str, Any]) -> None:
        self.requests.append((request.path, params, dict(request.headers)))

    async def bing(self, request: web.Request) -> web.Response:
        self._record(request, dict(request.query))
        if request.headers.get("Ocp-Apim-Subscription-Key") != self.key:
            return web.json_response({"error": {"code": "401", "message": "Access denied"}}, status=401)
        if request.query["q"] == "nothing":
            return web.json_response({"_type": "SearchResponse", "queryContext": {}})
        pages = [{"name": "Kestrel Bridge", "url": "https://b.example/1", "snippet": "Reopened on Tuesday"}]
        pages.append({"name": "Ferry", "url": "https://b.example/2", "snippet": "Leaves at 7:15"})
        return web.json_response({"_type": "SearchResponse", "webPages": {"value": pages}})

    async def brave(self, request: web.Request) -> web.Response:
        self._record(request, dict(request.query))
        if request.headers.get("X-Subscription-Token") != self.key:
            return web.json_response({"type": "ErrorResponse", "error": {"status": 401}}, status=401)
        results = [{"title": "Kestrel <strong>Bridge</strong>", "url": "https://v.example/1"}]
        results[0]["description"] = "The <strong>bridge</strong> reopened"
        return web.json_response({"type": "search", "web": {"type": "search", "results": results}})

    async def tavily(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response(
                {"detail": {"error": "Unauthorized: missing or invalid API key."}}, status=401
            )
        results = [{"title": "Kestrel", "url": "https://t.example/1", "content": "Reopened", "score": 0.9}]
        return web.json_response({"query": body["query"], "results": results, "response_time": 0.5})
