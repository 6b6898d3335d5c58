"""A fake OpenAI-compatible streaming server with scripted timing, on raw asyncio.

It answers /v1/chat/completions and /v1/completions with `max_tokens` one-word token events
(after `ttft_s`, then every `itl_s`), /v1/models and /health, and can be told to fail, cut or
stall streams. It does no model work, so it measures the load generator's own ceiling
(benchmarks/bench_client_capacity.py) and stands in for real servers in tests.

    python -m seekserve.bench.fake_server --port 8000 --itl-s 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["FakeServer", "FakeServerConfig"]

_DEFAULT_TOKENS = 16


@dataclass(frozen=True)
class FakeServerConfig:
    """How the fake server behaves."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = 0
    """Port to listen on; 0 picks a free one (printed at start)."""

    model: str = "fake-model"
    """The one model name it lists and accepts."""

    ttft_s: float = 0.0
    """Delay before the first token event."""

    itl_s: float = 0.0
    """Delay between token events."""

    fragment_bytes: int = 0
    """Write every event in pieces of this many bytes, flushing each (0: whole events)."""

    fail_every: int = 0
    """Answer every Nth completion request with HTTP 500 (0: never)."""

    drop_every: int = 0
    """Cut every Nth stream after half its tokens, without ending it (0: never)."""

    stall_at_token: int = 0
    """Before this token (1-based) of every stream, wait `stall_s` more (0: never)."""

    stall_s: float = 0.0
    """Length of the stall."""


class FakeServer:
    """The server; `await start()` inside a running loop, `await close()` to stop."""

    def __init__(self, config: FakeServerConfig | None = None) -> None:
        self.config = config or FakeServerConfig()
        self.num_requests = 0
        self.num_active = 0
        self.max_active = 0
        """The most completion streams open at once so far."""
        self.last_body: dict[str, Any] | None = None
        self.last_headers: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = self.config.port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.config.host, self.config.port, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: drop the connection
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = [*head[0].split(" "), "", ""][:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = headers.get("connection", "").lower() != "close"
        if method == "GET" and path == "/health":
            await _respond(writer, 200, {"status": "ok"})
        elif method == "GET" and path == "/v1/models":
            await _respond(
                writer, 200, {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
            )
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            self.last_headers = headers
            self.num_active += 1
            self.max_active = max(self.max_active, self.num_active)
            try:
                return await self._complete(writer, path.endswith("chat/completions"), body) and keep_alive
            finally:
                self.num_active -= 1
        else:
            await _respond(
                writer, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}
            )
        return keep_alive

    async def _complete(self, writer: asyncio.StreamWriter, chat: bool, raw: bytes) -> bool:
        try:
            body = json.loads(raw)
        except ValueError:
            await _respond(
                writer, 400, {"error": {"message": "the body is not JSON", "type": "invalid_request"}}
            )
            return True
        self.num_requests += 1
        self.last_body = body
        n, config = self.num_requests, self.config
        if body.get("model") != config.model:
            message = f"model {body.get('model')!r} does not exist; this server serves {config.model!r}"
            await _respond(writer, 404, {"error": {"message": message, "type": "not_found"}})
            return True
        if config.fail_every and n % config.fail_every == 0:
            await _respond(writer, 500, {"error": {"message": "injected failure", "type": "server_error"}})
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        num_tokens = int(body.get("max_tokens") or _DEFAULT_TOKENS)
        cut = num_tokens // 2 if config.drop_every and n % config.drop_every == 0 else None
        first = 1 if chat else 0  # chat streams open with a role-only event
        for i, event in enumerate(_events(chat, n, num_tokens, config.model, body)):
            token = i - first + 1 if first <= i < first + num_tokens else 0  # 1-based, 0 for others
            if cut is not None and token > cut:
                await writer.drain()
                return False
            await self._pause(token)
            await self._write(writer, event)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _pause(self, token: int) -> None:
        """Wait before token number `token` (1-based; 0 is an event that carries no token)."""
        config = self.config
        if token:
            delay = config.ttft_s if token == 1 else config.itl_s
            if token == config.stall_at_token:
                delay += config.stall_s
            if delay > 0:
                await asyncio.sleep(delay)

    async def _write(self, writer: asyncio.StreamWriter, event: bytes) -> None:
        step = self.config.fragment_bytes
        pieces = [event[i : i + step] for i in range(0, len(event), step)] if step else [event]
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if step:
                await writer.drain()
                await asyncio.sleep(0)
        if self.config.itl_s or step:
            await writer.drain()


def _events(chat: bool, n: int, num_tokens: int, model: str, body: dict[str, Any]) -> list[bytes]:
    """The SSE events of one response: [role,] tokens, finish, [usage,] [DONE]."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    head = {"id": f"fake-{n}", "object": kind, "created": 0, "model": model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

    def choice(text: str, finish: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"delta": {"content": text}} if chat else {"text": text}
        return {"index": 0, **payload, "finish_reason": finish}

    token = event([choice(" tok")])
    events = [event([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])] if chat else []
    events += [token] * num_tokens + [event([choice("", "length")])]
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt = body.get("prompt") or " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        prompt_tokens = len(str(prompt).split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": num_tokens}
        events.append(event([], usage={**usage, "total_tokens": prompt_tokens + num_tokens}))
    return [*events, b"data: [DONE]\n\n"]


async def _respond(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}[status]
    writer.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, reason.encode(), len(data), data)
    )
    await writer.drain()


def _parse_args(argv: list[str] | None) -> FakeServerConfig:
    parser = argparse.ArgumentParser(prog="python -m seekserve.bench.fake_server", description=__doc__)
    for f in fields(FakeServerConfig):
        kind = type(f.default)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return FakeServerConfig(**vars(parser.parse_args(argv)))


async def _main(config: FakeServerConfig) -> None:
    server = FakeServer(config)
    await server.start()
    print(f"listening on {server.base_url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(_parse_args(sys.argv[1:])))
