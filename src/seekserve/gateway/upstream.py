"""One HTTP exchange with a backend: send, classify what went wrong, read the SSE stream.

    UpstreamError                   the backend did not give a usable answer
     ├── UpstreamUnreachable        connect error or reset before the response headers (retryable)
     ├── UpstreamTimeout            no headers, or no first event, within timeouts.first_byte_s (retryable)
     ├── UpstreamStatus             an HTTP error status; retryable: retry.RETRYABLE_STATUSES
     └── StreamBroken               the stream stopped after events reached the gateway: reset, a silence
                                    longer than timeouts.inter_token_s, or the end without `data: [DONE]`

Whether a failure may be retried from scratch is the proxy's call: only while the client has
received nothing. After that a broken stream is continued (stream.py), never restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from seekserve.gateway.backends import Backend
from seekserve.gateway.config import TimeoutConfig
from seekserve.gateway.retry import RETRYABLE_STATUSES

__all__ = [
    "DONE",
    "StreamBroken",
    "UpstreamError",
    "UpstreamStatus",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "open_session",
    "read_body",
    "send",
    "sse_events",
]

DONE = b"[DONE]"
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError)
_MAX_ERROR_BODY = 64 * 1024
_MAX_LINE_BYTES = 8 * 1024 * 1024
"""Longest SSE line held while its end is awaited: a backend that never ends a line is cut off, not kept."""


class UpstreamError(Exception):
    retryable = True

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"backend {backend}: {message}")
        self.backend = backend
        self.detail = message
        """What went wrong, without the backend's name."""


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamStatus(UpstreamError):
    def __init__(self, backend: str, status: int, body: bytes, retry_after: str | None) -> None:
        super().__init__(backend, f"HTTP {status}: {body[:200].decode(errors='replace')}")
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.retryable = status in RETRYABLE_STATUSES


class StreamBroken(UpstreamError):
    pass


def open_session(timeouts: TimeoutConfig) -> aiohttp.ClientSession:
    """The gateway's one pooled client session (keep-alive to every backend, no connection limit:
    each backend's `max_concurrency` bounds what is sent)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)


async def send(
    session: aiohttp.ClientSession,
    backend: Backend,
    path: str,
    body: bytes,
    timeouts: TimeoutConfig,
) -> aiohttp.ClientResponse:
    """POST `body` to the backend's `path` (/chat/completions, /completions); return the open response
    once its headers say 2xx. The caller must release it (`response.release()` or read it whole)."""
    headers = {"Content-Type": "application/json"}
    if backend.config.api_key:
        headers["Authorization"] = f"Bearer {backend.config.api_key}"
    name = backend.name
    try:
        async with asyncio.timeout(timeouts.first_byte_s):
            response = await session.post(backend.config.url + path, data=body, headers=headers)
    except TimeoutError:
        raise UpstreamTimeout(name, f"no response headers within {timeouts.first_byte_s:g} s") from None
    except _CONNECTION_ERRORS as exc:
        raise UpstreamUnreachable(name, f"{type(exc).__name__}: {exc}") from None
    if response.status >= 400:
        try:
            async with asyncio.timeout(timeouts.inter_token_s):
                data = await response.content.read(_MAX_ERROR_BODY)
        except (TimeoutError, *_CONNECTION_ERRORS):
            data = b""
        response.release()
        raise UpstreamStatus(name, response.status, data, response.headers.get("Retry-After"))
    return response


async def read_body(response: aiohttp.ClientResponse, backend: Backend) -> bytes:
    """The whole non-streaming body, within the backend's timeout_s; a cut body is UpstreamUnreachable
    (the client has seen nothing yet, so the request can be sent again)."""
    try:
        async with asyncio.timeout(backend.config.timeout_s):
            return await response.read()
    except TimeoutError:
        raise UpstreamTimeout(
            backend.name, f"body not complete within {backend.config.timeout_s:g} s"
        ) from None
    except _CONNECTION_ERRORS as exc:
        raise UpstreamUnreachable(backend.name, f"body cut: {type(exc).__name__}") from None
    finally:
        response.release()


async def sse_events(
    response: aiohttp.ClientResponse, backend: Backend, timeouts: TimeoutConfig
) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of an SSE stream, up to and excluding `[DONE]`, in batches: every event
    that arrived in one network read, so a burst of tokens costs one write to the client, not one each.

    The first event must come within first_byte_s, each next one within inter_token_s of the last;
    a stall, a reset, an end without `[DONE]` or a line longer than 8 MiB raises StreamBroken.
    Comment lines (keep-alives) reset no timer: a backend that only sends keep-alives is stalled.
    """
    content = response.content
    loop = asyncio.get_running_loop()
    limit = timeouts.first_byte_s
    deadline = loop.time() + limit
    name = backend.name
    pending = b""
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await content.readany()
            except TimeoutError:
                raise StreamBroken(name, f"no event for {limit:g} s (stalled)") from None
            except _CONNECTION_ERRORS as exc:
                raise StreamBroken(name, f"stream cut: {type(exc).__name__}") from None
            if not data:
                raise StreamBroken(name, "stream ended without [DONE]")
            *lines, pending = (pending + data).split(b"\n")
            if len(pending) > _MAX_LINE_BYTES:
                raise StreamBroken(name, f"an event line runs past {_MAX_LINE_BYTES} bytes without ending")
            batch = [line[5:].strip() for line in lines if line.startswith(b"data:")]
            if not batch:
                continue
            if batch[-1] == DONE or DONE in batch:
                batch = batch[: batch.index(DONE)]
                if batch:
                    yield batch
                await _drain(response, timeouts.inter_token_s)
                return
            limit = timeouts.inter_token_s
            deadline = loop.time() + limit
            yield batch
    finally:
        response.release()  # closes the connection unless the body was read to its end


async def _drain(response: aiohttp.ClientResponse, limit_s: float) -> None:
    """Read what follows [DONE] (the chunked terminator) so the connection goes back to the pool."""
    try:
        async with asyncio.timeout(limit_s):
            while await response.content.readany():
                pass
    except (TimeoutError, *_CONNECTION_ERRORS):
        return
