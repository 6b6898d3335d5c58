"""The gateway's ASGI application: a few routes, written against ASGI directly for a small per-request cost.

    POST /v1/chat/completions, /v1/completions   handler.py
    GET  /v1/models                               the models the caller's key may use (every one when open)
    GET  /health                                  200 while at least one backend is healthy, else 503
    GET  /metrics                                 Prometheus text (metrics.py)
    GET  /chat, /                                 the chat page (seekserve.chat)
    GET  /openapi.json                            these routes as OpenAPI 3.1 (openapi.py)

A body over `max_body_bytes` gets 413 before it is read whole (at once when its Content-Length
says so); with `keys` configured, /v1/* needs one.

`GatewayApp.state` is replaced whole by `reload()`; a request keeps the state it started with.
A streaming reply watches the client's connection: when the client goes away the relay is
cancelled, which closes the upstream connection so the backend stops generating.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from seekserve.chat import page_reply
from seekserve.gateway.config import GatewayConfig
from seekserve.gateway.handler import (
    Reply,
    error_reply,
    handle_completion,
    log_access,
    request_id,
    unauthorized_reply,
)
from seekserve.gateway.metrics import GatewayMetrics
from seekserve.gateway.openapi import openapi_document
from seekserve.gateway.state import GatewayState

__all__ = ["GatewayApp"]

_COMPLETION_PATHS = {"/v1/chat/completions": "/chat/completions", "/v1/completions": "/completions"}
_JSON = (b"content-type", b"application/json")
_WANTED_HEADERS = frozenset(
    {
        b"authorization",
        b"cache-control",
        b"x-seekserve-cache",
        b"x-request-id",
        b"accept-encoding",
        b"if-none-match",
    }
)
"""The request headers the gateway reads (ASGI gives names in lower case)."""
_CLIENT_GONE = 499
"""The status logged for a request whose client left before its answer ended (nothing is sent)."""


class GatewayApp:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.metrics = GatewayMetrics(lambda: self.state.pool, lambda: self.state.admission.num_waiting)
        self.config_path: str | None = None

    def reload(self, config: GatewayConfig) -> GatewayState:
        """Swap in a state built from `config`; returns the old one (its caller closes what is left of it)."""
        old = self.state
        self.state = GatewayState.build(config, old.session, previous=old)
        return old

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        path, method = scope["path"], scope["method"]
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED_HEADERS
        }
        rid = request_id(headers)
        upstream_path = _COMPLETION_PATHS.get(path)
        if upstream_path is not None and method == "POST":
            limit = self.state.config.max_body_bytes
            raw = await _read_body(receive, limit, _content_length(scope))
            if raw is None:
                reply = error_reply(
                    413,
                    f"the request body is over {limit} bytes (max_body_bytes): send a smaller one, or "
                    "raise max_body_bytes in the gateway's config",
                    "invalid_request_error",
                    "request_too_large",
                )
                status = await _respond(reply, rid, send)
            else:
                reply = Reply(_CLIENT_GONE, [])
                status = await _until_disconnect(
                    self._complete(upstream_path, raw, headers, rid, send, reply), receive
                )
        else:
            reply = self._small(path, method, headers)
            status = await _respond(reply, rid, send)
        model = reply.log.get("model")
        if model is not None:
            self.metrics.request(model, reply.log.get("backend", "-"), status, time.monotonic() - started)
        if self.state.config.access_log and upstream_path is not None:
            log_access(
                {"request_id": rid, "method": method, "path": path, "status": status, **reply.log}, started
            )

    async def _complete(
        self, path: str, raw: bytes, headers: dict[str, str], rid: str, send: Send, reply: Reply
    ) -> int:
        """Handle a completion request and send its reply; `reply.log` is filled in for the caller."""
        result = await handle_completion(self.state, self.metrics, path, raw, headers)
        reply.log = result.log
        return await _respond(result, rid, send)

    def _small(self, path: str, method: str, headers: dict[str, str]) -> Reply:
        if method != "GET":
            return error_reply(
                405, f"{method} {path} is not supported", "invalid_request_error", "method_not_allowed"
            )
        page = page_reply(path, headers.get("accept-encoding", ""), headers.get("if-none-match", ""))
        if page is not None:
            encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in page.headers]
            return Reply(page.status, encoded, page.body)
        authorization = headers.get("authorization")
        if path == "/health":
            return self._health()
        if path == "/v1/models":
            names = self._models(authorization)
            if names is None:
                return unauthorized_reply()
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "seekserve-gateway"} for n in names
            ]
            return Reply(200, [_JSON], json.dumps({"object": "list", "data": data}).encode())
        if path == "/openapi.json":
            keyed = not self.state.keys.open
            document = openapi_document(self._models(authorization), keyed)
            return Reply(200, [_JSON], json.dumps(document).encode())
        if path == "/metrics":
            return Reply(
                200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], self.metrics.render()
            )
        return error_reply(
            404,
            f"no route {path}: the gateway serves /v1/chat/completions, /v1/completions, /v1/models, /chat "
            "(GET /openapi.json describes them)",
            "invalid_request_error",
            "not_found",
        )

    def _models(self, authorization: str | None) -> list[str] | None:
        """The models the caller may use; None when the gateway has keys and the caller sent none of them."""
        keys = self.state.keys
        key = keys.authenticate(authorization)
        if key is None and not keys.open:
            return None
        served = {*self.state.pool.model_names(), *self.state.config.models}
        return sorted(name for name in served if keys.allows(key, name))

    def _health(self) -> Reply:
        backends = {
            b.name: {
                "healthy": b.healthy,
                "circuit": b.breaker.state.value,
                "in_flight": b.in_flight,
                "models": sorted(b.models),
            }
            for b in self.state.pool
        }
        ok = any(b["healthy"] and b["circuit"] != "open" for b in backends.values())
        body = json.dumps({"status": "ok" if ok else "unavailable", "backends": backends}).encode()
        return Reply(200 if ok else 503, [_JSON], body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _read_body(receive: Receive, limit: int, declared: int | None) -> bytes | None:
    """The whole body, or None when it is over `limit` bytes (told by Content-Length, or counted)."""
    if declared is not None and declared > limit:
        return None
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _respond(reply: Reply, rid: str, send: Send) -> int:
    headers = [*reply.headers, (b"x-request-id", rid.encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return reply.status
    try:
        async for data in reply.stream:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await _aclose(reply.stream)  # on cancellation too: the relay releases its backend
    return reply.status


async def _until_disconnect(work: Coroutine[Any, Any, int], receive: Receive) -> int:
    """Run `work` (which answers the request) until it ends or the client disconnects, whichever is
    first; a client that leaves cancels it, which closes the upstream request (the backend stops)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.cancelled() or not watcher.done():
            raise  # this handler itself was cancelled (server shutdown)
        return _CLIENT_GONE


async def _disconnected(receive: Receive) -> None:
    message: Message = {"type": ""}
    while message["type"] != "http.disconnect":
        message = await receive()


async def _aclose(events: Any) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
