"""A completion request at the gateway's edge: key, limits, cache, then the proxy; the reply as HTTP.

POST /v1/chat/completions | /v1/completions
  401 no or unknown key · 403 model not allowed for the key · 429 rpm/tpm (Retry-After)
  cache hit → the stored answer (whole, or replayed as a stream), `x-seekserve-cache: hit`
  else proxy.open → 200 with `x-seekserve-backend` (and `x-seekserve-fallback` when a fallback
  model answered) · a backend's 4xx as it sent it · 502/404/429 with an OpenAI error when
  nothing could answer
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from seekserve.gateway.cache import (
    answer_as_chunks,
    assemble_answer,
    cache_key,
    decode_answer,
    encode_answer,
    request_opts_out,
)
from seekserve.gateway.config import KeyConfig
from seekserve.gateway.metrics import GatewayMetrics
from seekserve.gateway.proxy import Exhausted, Proxy, RequestContext
from seekserve.gateway.ratelimit import LimitsUnavailable, RateLimited
from seekserve.gateway.search import RequestSearch, prepare_search
from seekserve.gateway.state import GatewayState
from seekserve.gateway.stream import StreamState
from seekserve.gateway.upstream import UpstreamStatus
from seekserve.search.queries import QUERY_MAX_TOKENS, QUERY_STOP, QueryWriter

__all__ = ["Reply", "error_reply", "handle_completion", "unauthorized_reply"]

access_log = logging.getLogger("seekserve.gateway.access")

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_MAX_REQUEST_ID = 128
_TPM_CHARGE_EVERY = 32
"""A running stream is charged to its key's tokens-per-minute every this many tokens."""


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    log: dict[str, Any] = field(default_factory=dict)


def error_reply(
    status: int, message: str, kind: str, code: str | None = None, retry_after_s: float | None = None
) -> Reply:
    error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    headers = [_JSON]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after_s))).encode()))
    return Reply(status, headers, json.dumps(error).encode())


def unauthorized_reply() -> Reply:
    reply = error_reply(
        401,
        "missing or unknown API key: send Authorization: Bearer KEY",
        "invalid_request_error",
        "invalid_api_key",
    )
    reply.headers.append((b"www-authenticate", b"Bearer"))
    return reply


async def handle_completion(
    state: GatewayState,
    metrics: GatewayMetrics,
    path: str,
    raw: bytes,
    headers: Mapping[str, str],
) -> Reply:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return error_reply(400, f"the body is not valid JSON: {exc}", "invalid_request_error")
    except RecursionError:
        return error_reply(
            400, "the body is not valid JSON: it nests deeper than the parser goes", "invalid_request_error"
        )
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error_reply(
            400, "the body must be a JSON object with a string `model`", "invalid_request_error"
        )
    model = body["model"]
    key = state.keys.authenticate(headers.get("authorization"))
    if key is None and not state.keys.open:
        return unauthorized_reply()
    if not state.keys.allows(key, model):
        label = key.label if key else "?"
        return error_reply(
            403, f"key {label} may not use model {model!r}", "permission_error", "model_not_allowed"
        )
    if key is not None:
        try:
            await state.limiter.acquire_request(key)
        except RateLimited as exc:
            metrics.rate_limited(key.label, exc.limit)
            return error_reply(429, str(exc), "rate_limit_error", "rate_limit_exceeded", exc.retry_after_s)
        except LimitsUnavailable as exc:
            metrics.rate_limited(key.label, "unavailable")
            return error_reply(
                503, str(exc), "service_unavailable_error", "rate_limits_unavailable", exc.retry_after_s
            )
    search: RequestSearch | None = None
    if state.search is not None or "web_search" in body or "web_search_options" in body:
        try:
            mode = state.config.search.web_search
            writer = functools.partial(_query_writer, Proxy(state, metrics), key)
            proxied, search = await prepare_search(state.search, mode, path, body, metrics.search, writer)
        except ValueError as exc:
            return error_reply(400, str(exc), "invalid_request_error")
        if proxied is not body:
            body, raw = proxied, json.dumps(proxied).encode()
    ctx = RequestContext(path, body, raw, key, stream=body.get("stream") is True)
    cached, ckey = (None, None) if search is not None else await _cache_lookup(state, metrics, ctx, headers)
    if cached is not None:
        return _cached_reply(ctx, cached)
    proxy = Proxy(state, metrics)
    try:
        opened = await proxy.open(ctx)
    except UpstreamStatus as exc:
        return Reply(exc.status, [_JSON], exc.body, log={"backend": exc.backend, "model": model})
    except Exhausted as exc:
        code = "model_not_found" if exc.status == 404 else "upstream_unavailable"
        kind = (
            "invalid_request_error"
            if exc.status == 404
            else "overloaded_error"
            if exc.status == 429
            else "server_error"
        )
        reply = error_reply(exc.status, str(exc), kind, code, exc.retry_after_s)
        if exc.status != 404:  # a served model (bounded labels); an unknown name stays out of metrics
            reply.log["model"] = model
        return reply
    out_headers = [(b"x-seekserve-backend", opened.backend.name.encode())]
    if opened.model != model:
        out_headers.append((b"x-seekserve-fallback", opened.model.encode()))
    log = {"backend": opened.backend.name, "model": opened.model, "ttft_s": round(opened.ttft_s, 6)}
    if not ctx.stream:
        answer = opened.first if search is None else search.decorate_answer(opened.first)
        await _after_body(state, key, ckey, answer)
        return Reply(200, [_JSON, *out_headers], answer, log=log)
    stream = StreamState(
        chat=path == "/chat/completions", client_token_ids=bool(body.get("return_token_ids"))
    )
    if ckey is not None:
        stream.chunks = []
    relayed = proxy.relay(ctx, opened, stream)
    if search is not None:
        relayed = search.decorate_stream(relayed)
    events = _charged(state, key, ckey, relayed, stream)
    return Reply(200, [*_SSE, *out_headers], stream=events, log=log)


async def _cache_lookup(
    state: GatewayState, metrics: GatewayMetrics, ctx: RequestContext, headers: Mapping[str, str]
) -> tuple[dict[str, Any] | None, str | None]:
    if state.cache is None or request_opts_out(ctx.body, headers):
        return None, None
    ckey = cache_key(ctx.path, ctx.body)
    if ckey is None:
        return None, None
    data = await state.cache.get(ckey)
    answer = decode_answer(data) if data is not None else None
    metrics.cache(answer is not None)
    return answer, ckey


def _cached_reply(ctx: RequestContext, answer: dict[str, Any]) -> Reply:
    headers = [(b"x-seekserve-cache", b"hit")]
    log = {"cache": "hit", "model": ctx.body["model"]}
    if not ctx.stream:
        return Reply(200, [_JSON, *headers], json.dumps(answer).encode(), log=log)

    usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))

    async def replay() -> AsyncIterator[bytes]:
        for chunk in answer_as_chunks(answer):
            if chunk.get("choices") or usage:  # the usage chunk only when the request asks for it
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return Reply(200, [*_SSE, *headers], stream=replay(), log=log)


async def _after_body(state: GatewayState, key: KeyConfig | None, ckey: str | None, data: bytes) -> None:
    """Charge a whole answer's tokens and store it in the cache."""
    if (key is None or key.tpm is None) and ckey is None:
        return
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(answer, dict):  # a backend's body of another shape: passed on, not read
        return
    if key is not None and key.tpm is not None:
        usage = answer.get("usage")
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and total > 0:
            await state.limiter.consume_tokens(key, total)
    if ckey is not None and state.cache is not None and answer.get("choices"):
        await state.cache.set(ckey, encode_answer(answer))


async def _charged(
    state: GatewayState,
    key: KeyConfig | None,
    ckey: str | None,
    events: AsyncIterator[bytes],
    stream: StreamState,
) -> AsyncIterator[bytes]:
    """`events`, charging the key's tpm as tokens flow and caching the answer once it is complete."""
    charged = 0
    tpm = key is not None and key.tpm is not None
    complete = False
    try:
        async for data in events:
            if tpm and stream.completion_tokens - charged >= _TPM_CHARGE_EVERY:
                assert key is not None, "tpm implies a key"
                if not charged and stream.prompt_token_ids:
                    await state.limiter.consume_tokens(key, len(stream.prompt_token_ids))
                await state.limiter.consume_tokens(key, stream.completion_tokens - charged)
                charged = stream.completion_tokens
            complete = data == b"data: [DONE]\n\n"
            yield data
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # the relay releases its backend now
        if tpm and key is not None and stream.completion_tokens > charged:
            await state.limiter.consume_tokens(key, stream.completion_tokens - charged)
    if complete and ckey is not None and state.cache is not None and stream.chunks is not None:
        answer = assemble_answer(stream.chunks)
        if answer is not None:
            await state.cache.set(ckey, encode_answer(answer))


def _query_writer(proxy: Proxy, key: KeyConfig | None, model: str) -> QueryWriter:
    """Chats on `model` for written search queries: greedy, short, not streamed, under the
    request's own key (its model permissions apply; its rate limit was charged once already)."""

    async def write(messages: list[dict[str, str]]) -> str:
        if not proxy.state.keys.allows(key, model):
            raise PermissionError(f"the key may not use the query model {model!r}")
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": QUERY_MAX_TOKENS,
            "temperature": 0,
            "stop": list(QUERY_STOP),
        }
        opened = await proxy.open(RequestContext("/chat/completions", body, json.dumps(body).encode(), key))
        answer = decode_answer(opened.first) or {}
        message = (answer.get("choices") or [{}])[0].get("message") or {}
        content = message.get("content")
        return content if isinstance(content, str) else ""

    return write


def request_id(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id (its first 128 characters, as the server keeps), or a new one."""
    return headers.get("x-request-id", "").strip()[:_MAX_REQUEST_ID] or uuid.uuid4().hex


def log_access(record: dict[str, Any], started: float) -> None:
    record["duration_s"] = round(time.monotonic() - started, 6)
    access_log.info(json.dumps(record, separators=(",", ":")))
