"""Server-sent events as OpenAI streams them: `data: {json}` per chunk, then `data: [DONE]`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["DONE", "EventStreamResponse", "sse_data"]

DONE = "data: [DONE]\n\n"


def sse_data(payload: BaseModel) -> str:
    return f"data: {payload.model_dump_json()}\n\n"


class EventStreamResponse(StreamingResponse):
    """An SSE response that runs `on_close` however the stream ends: done, failed, or client gone.

    Starlette cancels the body iterator when the client disconnects, possibly before it has
    started, so cleanup that must happen (aborting engine requests) lives here, not in the iterator.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]) -> None:
        # no-transform and X-Accel-Buffering keep proxies (nginx) from holding chunks back.
        headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
        super().__init__(events, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
