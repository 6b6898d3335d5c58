"""Request body size limit, enforced before any handler parses the body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seekserve.errors import RequestTooLargeError
from seekserve.server.errors import error_response

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Answers 413 for bodies over `max_body_bytes`, by Content-Length or by counting as they arrive.

    The body is read here in full (handlers read it whole anyway) and replayed to the app; after
    it, `receive` is the server's again, so handlers still learn when the client disconnects.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._reject(scope, receive, send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await self._reject(scope, receive, send, None)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        error = RequestTooLargeError(self.max_body_bytes, size)
        state = scope.get("state", {})
        record = state.get("access") if isinstance(state, dict) else None
        if record is not None:
            record.error = "request_too_large"
        await error_response(error)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
