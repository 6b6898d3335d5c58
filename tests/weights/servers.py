"""Servers for the pull tests, on free loopback ports in threads: the real mirror, wrapped in faults
(connections dropped mid-file, a flipped byte, slow bodies), and a fake Hugging Face hub API."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["COMMIT", "FakeHub", "Faults", "FaultyApp", "Served", "make_folder", "random_bytes", "serving"]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app on a free loopback port, in a thread; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="critical",
        access_log=False,
        http="httptools",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start in 10 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Served:
    path: str
    range: str | None
    num_bytes: int
    started: float
    """time.monotonic() when the request came in, and when its response ended."""
    ended: float


@dataclass
class Faults:
    """What goes wrong, by URL path; each rule is used up after `times` responses."""

    drop_after: dict[str, list[int]] = field(default_factory=dict)
    """Path -> a list of byte counts: each response drops its connection after that many body bytes."""
    corrupt: dict[str, list[int]] = field(default_factory=dict)
    """Path -> file offsets: the next response that sends the first offset flips that byte, and
    the offset is used up."""
    delay_s: float = 0.0
    """Sleep before each body message."""
    hold: dict[str, Callable[[], bool]] = field(default_factory=dict)
    """Path -> a condition: the body of that path waits until it holds (at most 60 s)."""
    log: list[Served] = field(default_factory=list)

    def served(self, path: str) -> list[Served]:
        return [s for s in self.log if s.path == path]


class _Dropped(Exception):
    pass


class FaultyApp:
    """An ASGI wrapper that applies `Faults` to the responses of the app inside."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        header = dict(scope["headers"]).get(b"range")
        start = int(header.decode().split("=")[1].split("-")[0] or 0) if header else 0
        started = time.monotonic()
        drop = _take(self.faults.drop_after, path)
        flips = self.faults.corrupt.get(path, [])
        sent = 0

        async def faulty_send(message: dict[str, Any]) -> None:
            nonlocal sent
            if message["type"] == "http.response.body" and message.get("body"):
                await asyncio.sleep(self.faults.delay_s)
                deadline = time.monotonic() + 60
                while (
                    path in self.faults.hold and not self.faults.hold[path]() and time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.01)
                body = bytearray(message["body"])
                if flips and start + sent <= flips[0] < start + sent + len(body):
                    body[flips.pop(0) - start - sent] ^= 0xFF
                if drop is not None and sent + len(body) > drop:
                    await send({**message, "body": bytes(body[: drop - sent]), "more_body": True})
                    sent = drop
                    raise _Dropped(f"dropped {path} after {drop} bytes")
                sent += len(body)
                message = {**message, "body": bytes(body)}
            await send(message)

        try:
            await self.app(scope, receive, faulty_send)
        except _Dropped:
            pass  # uvicorn closes the connection when the app stops mid-body
        finally:
            served = Served(path, header.decode() if header else None, sent, started, time.monotonic())
            self.faults.log.append(served)


def _take(rules: dict[str, list[int]], path: str) -> int | None:
    values = rules.get(path)
    return values.pop(0) if values else None


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def random_bytes(num_bytes: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes."""
    return random.Random(seed).randbytes(num_bytes)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    """The parts of the Hugging Face hub API a pull uses, over one folder per model."""

    models: dict[str, Path]
    lfs: set[str] = field(default_factory=set)
    """Paths published as LFS files (with a sha256); the others get only their git blob id."""
    token: str | None = None
    """Where set, the API answers 401 without `Authorization: Bearer <token>`."""
    page_size: int = 2
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Authorization header) of every request."""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/models/{org}/{name}/revision/{revision}", self.revision),
                Route("/api/models/{org}/{name}/tree/{commit}", self.tree),
                Route("/{org}/{name}/resolve/{commit}/{path:path}", self.resolve),
                Route("/cdn/{org}/{name}/{path:path}", self.cdn),
            ]
        )

    def _refuse(self, request: Request) -> Response | None:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Invalid credentials"}, status_code=401)
        model = f"{request.path_params['org']}/{request.path_params['name']}"
        if model not in self.models:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        return None

    async def revision(self, request: Request) -> Response:
        return self._refuse(request) or JSONResponse({"id": request.path_params["name"], "sha": COMMIT})

    async def tree(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        assert request.query_params.get("recursive") == "true", "the file list must be recursive"
        folder = self.models[f"{request.path_params['org']}/{request.path_params['name']}"]
        items = [self._item(folder, p) for p in sorted(folder.rglob("*")) if p.is_file()]
        items.insert(0, {"type": "directory", "oid": "0" * 40, "size": 0, "path": "sub"})
        cursor = int(request.query_params.get("cursor", 0))
        page = items[cursor : cursor + self.page_size]
        headers = {}
        if cursor + self.page_size < len(items):
            url = request.url.include_query_params(cursor=cursor + self.page_size)
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    def _item(self, folder: Path, path: Path) -> dict[str, Any]:
        rel, data = path.relative_to(folder).as_posix(), path.read_bytes()
        git = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        item: dict[str, Any] = {"type": "file", "oid": git, "size": len(data), "path": rel}
        if rel in self.lfs:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return item

    async def resolve(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        assert request.path_params["commit"] == COMMIT, "files are fetched at the resolved commit"
        p = request.path_params
        return RedirectResponse(f"/cdn/{p['org']}/{p['name']}/{p['path']}", status_code=302)

    async def cdn(self, request: Request) -> Response:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        folder = self.models[f"{request.path_params['org']}/{request.path_params['name']}"]
        return FileResponse(folder / request.path_params["path"])
