"""What both generation endpoints share: opening a request, and answering it whole or streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request, Response
from pydantic import BaseModel

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.errors import SeekserveError
from seekserve.metrics import RequestTracker
from seekserve.server.access_log import AccessRecord, access_record
from seekserve.server.errors import error_body, error_label
from seekserve.server.generation import Generation, run_unless_disconnected
from seekserve.server.protocol import SamplingRequest
from seekserve.server.responses import Usage, usage_of
from seekserve.server.sse import DONE, EventStreamResponse, sse_data
from seekserve.server.state import ServerState

__all__ = ["ChunkMaker", "Opened", "open_request", "respond"]


class ChunkMaker(Protocol):
    """Turns engine outputs into SSE chunks of one endpoint's shape."""

    def first(self) -> list[str]:
        """Chunks sent before any output (the assistant role, an echoed prompt)."""
        ...

    def update(self, prompt_index: int, out: RequestOutput) -> list[str]:
        """Chunks for the deltas of one output."""
        ...

    def chunk(self, choices: list[Any], usage: Usage | None = None) -> str: ...


@dataclass(frozen=True)
class Opened:
    """A request past the checks every endpoint makes first."""

    state: ServerState
    record: AccessRecord
    engine: AsyncEngine
    model: str
    """The served model's name, for the response."""

    async def generate(
        self, response_id: str, prompts: list[list[int]], params: SamplingParams
    ) -> Generation:
        self.record.id = response_id
        timeout_s = self.state.config.request_timeout_s
        metrics = self.state.metrics
        arrival_time = self.record.arrival_time
        tracker = None if metrics is None else RequestTracker(metrics, arrival_time)
        return await Generation.start(
            self.engine, response_id, prompts, params, arrival_time, timeout_s, tracker
        )


def open_request(request: Request, body: SamplingRequest) -> Opened:
    """Note the request in the access log; raise if the engine is not ready or the model is not ours."""
    state: ServerState = request.app.state.server
    record = access_record(request)
    record.model, record.stream, record.user = body.model, body.stream, body.user
    engine = state.ready_engine()
    return Opened(state, record, engine, state.check_model(body.model))


async def respond(
    request: Request,
    opened: Opened,
    gen: Generation,
    stream: ChunkMaker | None,
    include_usage: bool,
    answer: Callable[[list[RequestOutput]], BaseModel],
) -> Response:
    """Stream with `stream` when given, else wait for every output and send `answer(finals)`."""
    if stream is not None:
        return EventStreamResponse(_events(stream, gen, opened.record, include_usage), gen.aclose)
    try:
        finals = await run_unless_disconnected(request, gen.final_outputs())
    finally:
        await gen.aclose()
        opened.record.observe(gen.latest)
    return Response(answer(finals).model_dump_json(), media_type="application/json")


async def _events(
    maker: ChunkMaker, gen: Generation, record: AccessRecord, include_usage: bool
) -> AsyncIterator[str]:
    try:
        for chunk in maker.first():
            yield chunk
        async for prompt_index, out in gen.outputs():
            for chunk in maker.update(prompt_index, out):
                yield chunk
        if include_usage:
            yield maker.chunk([], usage=usage_of(gen.latest))
    except SeekserveError as e:  # timed out, or the engine died: the stream ends with the error
        record.error = error_label(e)
        yield sse_data(error_body(e))
    except (asyncio.CancelledError, GeneratorExit):
        record.client_disconnected = True
        raise
    finally:
        record.observe(gen.latest)
    yield DONE
