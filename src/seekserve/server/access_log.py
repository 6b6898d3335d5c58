"""Structured access log: one JSON line per HTTP request on the `seekserve.access` logger.

    {"ts": "2025-01-01T12:00:00.123Z", "request_id": "req-…", "id": "chatcmpl-…", "method": "POST",
     "path": "/v1/chat/completions", "status": 200, "duration_s": 1.234, "ttft_s": 0.051,
     "prompt_tokens": 12, "completion_tokens": 64, "finish_reasons": ["length"], ...}

The middleware opens an `AccessRecord` per request (handlers fill in tokens, timings and errors
through `request.state.access`), times it until the last byte is sent (after a whole stream), then
logs it and counts failed API requests in the metrics. Prompt text is logged only with `log_prompts`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seekserve.engine.outputs import RequestOutput
from seekserve.metrics import ErrorType, ServerMetrics

__all__ = ["AccessLogMiddleware", "AccessRecord", "access_record", "error_type"]

access_log = logging.getLogger("seekserve.access")

_API_PATHS = ("/v1/chat/completions", "/v1/completions")
_STATUS_CLIENT_GONE = 499
_ERROR_TYPES: dict[str, ErrorType] = {
    "request_timeout": "timeout",
    "client_closed_request": "aborted",
    "server_overloaded": "rejected_overload",
    "model_loading": "rejected_overload",
    "engine_dead": "internal",
    "internal_error": "internal",
}


@dataclass
class AccessRecord:
    """What the access log and the metrics learn about one HTTP request."""

    request_id: str
    """The client's X-Request-Id, or a new one; echoed in the response's X-Request-Id header."""
    method: str
    path: str
    client: str | None
    arrival_time: float
    """time.monotonic() when the request arrived; the engine measures TTFT from it too."""
    status: int = 0
    id: str | None = None
    """The response's `id` (chatcmpl-…, cmpl-…), also the engine's request id."""
    model: str | None = None
    stream: bool | None = None
    user: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    ttft_s: float | None = None
    queue_s: float | None = None
    finish_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    """The OpenAI error code (or type) of a failed request."""
    client_disconnected: bool = False
    prompt: Any = None
    """The prompt or messages, kept only when the server logs prompts."""

    def observe(self, outputs: list[RequestOutput]) -> None:
        """Take token counts, timings and finish reasons from the requests' last outputs."""
        if not outputs:
            return
        self.prompt_tokens = sum(len(o.prompt_token_ids) for o in outputs)
        self.completion_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
        self.finish_reasons = [c.finish_reason for o in outputs for c in o.outputs if c.finish_reason]
        metrics = [o.metrics for o in outputs if o.metrics is not None]
        self.cached_tokens = sum(m.num_cached_tokens for m in metrics)
        first_tokens = [m.first_token_time for m in metrics if m.first_token_time is not None]
        if first_tokens:
            self.ttft_s = min(first_tokens) - self.arrival_time
        scheduled = [m.first_scheduled_time for m in metrics if m.first_scheduled_time is not None]
        if scheduled:
            self.queue_s = min(scheduled) - self.arrival_time

    def to_json(self, duration_s: float) -> str:
        entry = {k: v for k, v in asdict(self).items() if v is not None and k != "arrival_time"}
        if not self.finish_reasons:
            entry.pop("finish_reasons")
        if not self.client_disconnected:
            entry.pop("client_disconnected")
        for key in ("ttft_s", "queue_s"):
            if key in entry:
                entry[key] = round(entry[key], 6)
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json.dumps({"ts": ts, **entry, "duration_s": round(duration_s, 6)}, ensure_ascii=False)


def access_record(request: Request) -> AccessRecord:
    """The record of `request`, opened by the middleware (or a fresh one where it is not installed)."""
    record = getattr(request.state, "access", None)
    if record is None:
        record = _open_record(request.scope)
        request.state.access = record
    return record


class AccessLogMiddleware:
    """Pure ASGI middleware (it must not buffer streams): times, logs and counts every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = _open_record(scope)
        scope.setdefault("state", {})["access"] = record

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", record.request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            record.status, record.error = record.status or 500, record.error or "internal_error"
            raise
        finally:
            self._close(record)

    def _close(self, record: AccessRecord) -> None:
        duration_s = time.monotonic() - record.arrival_time
        if record.client_disconnected:
            record.status = _STATUS_CLIENT_GONE
            record.error = record.error or "client_closed_request"
        access_log.info(record.to_json(duration_s))
        if self.metrics is not None and record.error is not None and record.path in _API_PATHS:
            self.metrics.error(error_type(record.error, record.status))


def error_type(label: str, status: int) -> ErrorType:
    """The `request_errors` type of a failed API request, from its error label and HTTP status.

    A stream that fails after its 200 has gone out keeps that status, so the label decides first.
    The model still loading counts as a rejection for capacity, like a full queue.
    """
    kind = _ERROR_TYPES.get(label)
    if kind is not None:
        return kind
    return "invalid_request" if 400 <= status < 500 else "internal"


def _open_record(scope: Scope) -> AccessRecord:
    headers = dict(scope.get("headers") or [])
    given = headers.get(b"x-request-id", b"").decode("latin-1").strip()
    client = scope.get("client")
    return AccessRecord(
        request_id=given[:128] or f"req-{uuid.uuid4().hex}",
        method=scope.get("method", ""),
        path=scope.get("path", ""),
        client=f"{client[0]}:{client[1]}" if client else None,
        arrival_time=time.monotonic(),
    )
