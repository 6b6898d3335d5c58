"""A fake OpenAI-compatible engine for gateway tests: deterministic "greedy" text, token ids, faults.

The fake model's next token is a function of the whole sequence so far, like a greedy LLM:
a stream continued elsewhere from `prompt_token_ids + generated ids` goes on exactly as the
uninterrupted one. Words map to ids by a stable hash; id k reads as " w{k}".

Faults are switched at run time through `Faults` (tests run the fake in their own event loop):
HTTP statuses for the next requests, a connection reset before any answer, a connection cut or a
stall after K tokens, a slow start. `FakeEngine.seed` makes engines of different models answer
differently (a fallback model's text is told apart from the requested one's).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from seekserve.bench.servers import free_port

__all__ = ["FakeEngine", "Faults", "generate", "running", "tokenize"]

VOCAB = 5000


def tokenize(text: str) -> list[int]:
    return [zlib.crc32(word.encode()) % VOCAB for word in text.split()]


def next_token(sequence: list[int], seed: int = 0) -> int:
    return (sequence[-1] * 31 + len(sequence) * 7 + 3 + seed) % VOCAB if sequence else 1 + seed


def generate(prompt_ids: list[int], max_tokens: int, seed: int = 0) -> list[int]:
    """The greedy continuation of `prompt_ids` by an engine with this `seed` (FakeEngine.seed)."""
    seq = list(prompt_ids)
    out = []
    for _ in range(max_tokens):
        token = next_token(seq, seed)
        seq.append(token)
        out.append(token)
    return out


def detok(ids: list[int]) -> str:
    return "".join(f" w{i}" for i in ids)


def chat_prompt(messages: list[dict[str, Any]]) -> list[int]:
    text = " ".join(f"<{m['role']}> {m.get('content') or ''}" for m in messages) + " <assistant>"
    return tokenize(text)


@dataclass
class Faults:
    statuses: list[int] = field(default_factory=list)
    """Answer the next requests with these statuses, one per request (429/503 carry Retry-After)."""
    retry_after: str | None = None
    reset: bool = False
    """Reset the connection (TCP RST) as each completion request arrives, before any response header."""
    cut_after: int | None = None
    """Close the connection after this many tokens of a stream (or mid-body when not streaming)."""
    stall_after: int | None = None
    """Stop sending (keep the connection open) after this many tokens."""
    first_delay_s: float = 0.0
    itl_s: float = 0.0
    healthy: bool = True
    waiting: int = 0
    token_ids: bool = True
    """Honour return_token_ids (a vLLM or seekserve engine); False acts like a remote API."""


@dataclass
class FakeEngine:
    name: str
    model: str = "fake"
    owned_by: str = "vllm"
    seed: int = 0
    """Shifts the fake model's next-token rule: engines of different models give different text."""
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    """Chosen when the engine is made, so a gateway config can name its URL before it runs."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.faults.healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        text = f'vllm:num_requests_waiting{{model_name="{self.model}"}} {self.faults.waiting}\n'
        return web.Response(text=text)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": self.owned_by}]}
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["prompt"]
        ids = list(prompt) if isinstance(prompt, list) else tokenize(prompt)
        return await self._answer(request, body, ids, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(request, body, chat_prompt(body["messages"]), chat=True)

    async def _answer(
        self, request: web.Request, body: dict[str, Any], prompt_ids: list[int], chat: bool
    ) -> web.StreamResponse:
        self.requests.append(body)
        faults = self.faults
        if faults.reset:
            _reset(request)
            return web.Response()
        if faults.statuses:
            status = faults.statuses.pop(0)
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.json_response(
                {"error": {"message": f"injected {status}"}}, status=status, headers=headers
            )
        if faults.first_delay_s:
            await asyncio.sleep(faults.first_delay_s)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        ids = generate(prompt_ids, max_tokens, self.seed)
        with_ids = bool(body.get("return_token_ids")) and faults.token_ids
        if not body.get("stream"):
            whole = self._whole(body, prompt_ids, ids, chat, with_ids)
            if faults.cut_after is not None:
                return await _cut_body(request, json.dumps(whole).encode())
            return web.json_response(whole)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await response.prepare(request)
            await self._stream(request, response, faults, self._chunks(body, prompt_ids, ids, chat, with_ids))
        except ConnectionResetError:  # the gateway went away (its client left, or it gave up on a stall)
            pass
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        faults: Faults,
        chunks: Iterator[dict[str, Any]],
    ) -> None:
        for i, chunk in enumerate(chunks):
            if faults.cut_after is not None and i >= faults.cut_after:
                _close(request)
                return
            if faults.stall_after is not None and i >= faults.stall_after:
                await asyncio.sleep(3600)
            if faults.itl_s and i:
                await asyncio.sleep(faults.itl_s)
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()

    def _chunks(
        self, body: dict[str, Any], prompt_ids: list[int], ids: list[int], chat: bool, with_ids: bool
    ) -> Iterator[dict[str, Any]]:
        base = {"id": f"{self.name}-1", "created": 1, "model": body["model"]}
        for i, token in enumerate(ids):
            last = i == len(ids) - 1
            finish = "length" if last else None
            if chat:
                delta = (
                    {"role": "assistant", "content": detok([token])}
                    if i == 0
                    else {"content": detok([token])}
                )
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
                chunk: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                if with_ids and i == 0:
                    chunk["prompt_token_ids"] = prompt_ids
            else:
                choice = {"index": 0, "text": detok([token]), "finish_reason": finish}
                chunk = {**base, "object": "text_completion", "choices": [choice]}
                if with_ids and i == 0:
                    choice["prompt_token_ids"] = prompt_ids
            if with_ids:
                choice["token_ids"] = [token]
            yield chunk
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": len(ids),
                "total_tokens": len(prompt_ids) + len(ids),
            }
            yield {
                **base,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "choices": [],
                "usage": usage,
            }

    def _whole(
        self, body: dict[str, Any], prompt_ids: list[int], ids: list[int], chat: bool, with_ids: bool
    ) -> dict[str, Any]:
        usage = {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": len(ids),
            "total_tokens": len(prompt_ids) + len(ids),
        }
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": detok(ids)},
                "finish_reason": "length",
            }
            return {
                "id": f"{self.name}-1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [choice],
                "usage": usage,
            }
        choice = {"index": 0, "text": detok(ids), "finish_reason": "length"}
        return {
            "id": f"{self.name}-1",
            "object": "text_completion",
            "created": 1,
            "model": body["model"],
            "choices": [choice],
            "usage": usage,
        }


async def _cut_body(request: web.Request, data: bytes) -> web.StreamResponse:
    """Send the headers and half of `data` (its Content-Length says all of it), then close."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    try:
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
    except ConnectionResetError:
        return response
    _close(request)
    return response


def _close(request: web.Request) -> None:
    """Close the request's connection mid-answer, as an engine that crashes does."""
    if request.transport is not None:  # None: the peer has closed it already
        request.transport.close()


def _reset(request: web.Request) -> None:
    """Close the request's connection with an RST (SO_LINGER 0), as a crashed or restarted engine does."""
    transport = request.transport
    if transport is None:  # the peer has closed it already
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


@asynccontextmanager
async def running(*engines: FakeEngine):  # type: ignore[no-untyped-def]
    """Start every engine on a free loopback port (in the running event loop); stop them after."""
    runners = []
    try:
        for engine in engines:
            runner = web.AppRunner(engine.app(), handle_signals=False, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", engine.port).start()
            runners.append(runner)
        yield engines
    finally:
        for runner in runners:
            await runner.cleanup()
