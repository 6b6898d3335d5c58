"""A streaming OpenAI-compatible client built for load generation.

One `aiohttp` session (one connection pool) carries every request of a run; each request is a
streamed POST whose body is read piece by piece into `SSEParser` and timed as it arrives. aiohttp
is used because its C HTTP parser and flat connection pool keep the client's own cost per request
far below the servers it measures (thousands of requests per second from one process).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest
from seekserve.bench.metrics import RequestRecord
from seekserve.bench.sse import SSEEvent, SSEParser

__all__ = ["OpenAIClient", "api_url"]

_ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


def api_url(base_url: str, path: str) -> str:
    """The URL of an API path ("/models", "/chat/completions") under a base URL with or without /v1."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + path


class _StreamError(Exception):
    """A stream that broke the protocol; `kind` is its error kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class _Stream:
    """What one response stream delivered so far."""

    token_times: list[float] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finished: bool = False
    done: bool = False

    def on_event(self, event: SSEEvent, now: float) -> None:
        if event.data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(event.data)
        except ValueError:
            raise _StreamError("bad_event", f"an event is not JSON: {event.data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise _StreamError("bad_event", f"an event is not a JSON object: {event.data[:200]!r}")
        if chunk.get("error") is not None:
            raise _StreamError("stream_error", _error_message(chunk))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        has_text = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = choice.get("text") or delta.get("content") or delta.get("reasoning_content")
            has_text = has_text or bool(text or delta.get("reasoning"))
            self.finished = self.finished or choice.get("finish_reason") is not None
        if has_text:
            self.token_times.append(now)


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error if error is not None else body)[:500]


class OpenAIClient:
    """Sends `BenchRequest`s to one server and returns what each one measured.

    Use as an async context manager; `send` may be called from many tasks at once.
    """

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.url = api_url(config.base_url, _ENDPOINT_PATHS[config.endpoint])
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpenAIClient:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_concurrency or 0, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s),
            headers=headers,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def payload(self, request: BenchRequest) -> dict[str, Any]:
        """The JSON body for a request."""
        config = self.config
        body: dict[str, Any] = {
            "model": config.model,
            "max_tokens": request.output_len,
            "temperature": config.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if config.top_p < 1:
            body["top_p"] = config.top_p
        if config.endpoint == "chat":
            prompt = request.prompt
            body["messages"] = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = request.prompt
        if config.ignore_eos:
            body["ignore_eos"] = True
            body["min_tokens"] = request.output_len
        body.update(config.extra_body)
        return body

    async def send(
        self, request: BenchRequest, index: int, t0: float, scheduled_s: float = 0.0
    ) -> RequestRecord:
        """Send one request and stream its response; never raises for a failed request.

        Times in the record are seconds since `t0` (a `time.perf_counter()` value).
        """
        assert self._session is not None, "OpenAIClient is used outside `async with`"
        stream, start = _Stream(), time.perf_counter()
        error: tuple[str, str] | None = None
        try:
            async with self._session.post(self.url, json=self.payload(request)) as response:
                if response.status != 200:
                    error = (f"http_{response.status}", await _read_error(response))
                else:
                    await _read_stream(response, stream)
        except _StreamError as e:
            error = (e.kind, str(e))
        except TimeoutError:
            error = ("timeout", f"no complete response within {self.config.request_timeout_s:g} s")
        except aiohttp.ClientConnectorError as e:
            error = ("connection", f"cannot connect to {self.url}: {e.os_error}")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            error = ("disconnected", f"the server closed the stream: {e}")
        except aiohttp.ClientError as e:
            error = ("client_error", f"{type(e).__name__}: {e}")
        end = time.perf_counter()
        if error is None and not (stream.done or stream.finished):
            error = ("incomplete", "the stream ended without a finish_reason or [DONE]")
        usage = stream.usage or {}
        prompt_tokens = usage.get("prompt_tokens", request.prompt_len)
        return RequestRecord(
            index=index,
            start_s=start - t0,
            end_s=end - t0,
            token_times_s=tuple(t - t0 for t in stream.token_times),
            output_tokens=usage.get("completion_tokens", len(stream.token_times)),
            prompt_tokens=prompt_tokens,
            expected_output_tokens=request.output_len if self.config.ignore_eos else None,
            usage_reported="completion_tokens" in usage,
            error=error[0] if error else None,
            error_message=error[1] if error else "",
            scheduled_s=scheduled_s,
        )


async def _read_stream(response: aiohttp.ClientResponse, stream: _Stream) -> None:
    parser = SSEParser()
    async for piece in response.content.iter_any():
        now = time.perf_counter()
        for event in parser.feed(piece):
            stream.on_event(event, now)
    now = time.perf_counter()
    for event in parser.flush():
        stream.on_event(event, now)


async def _read_error(response: aiohttp.ClientResponse) -> str:
    text = await response.text(errors="replace")
    try:
        return _error_message(json.loads(text))
    except ValueError:
        return text[:500] or response.reason or ""
