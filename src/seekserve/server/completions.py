"""POST /v1/completions: raw prompts (text or token ids, one or a batch), answers whole or streamed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.outputs import CompletionOutput, RequestOutput
from seekserve.errors import SeekserveError
from seekserve.server.access_log import AccessRecord, access_record
from seekserve.server.errors import error_body, error_label
from seekserve.server.generation import Generation, run_unless_disconnected
from seekserve.server.logprobs import LogprobFormatter
from seekserve.server.protocol import CompletionRequest
from seekserve.server.responses import (
    ERROR_RESPONSES,
    CompletionChoice,
    CompletionChunk,
    CompletionResponse,
    Usage,
    usage_of,
)
from seekserve.server.sse import DONE, EventStreamResponse, sse_data
from seekserve.server.state import ServerState

__all__ = ["router"]

router = APIRouter()


@dataclass(frozen=True)
class _Completion:
    """What shaping one request's answer needs."""

    id: str
    created: int
    model: str
    n: int
    echo: list[str] | None
    """Per prompt, the text put before its choices' text (`echo`)."""
    logprobs: LogprobFormatter | None
    include_usage: bool

    def index(self, prompt_index: int, choice: CompletionOutput) -> int:
        return prompt_index * self.n + choice.index

    def prefix(self, prompt_index: int) -> str:
        return self.echo[prompt_index] if self.echo is not None else ""


def _tokenize(
    engine: AsyncEngine, prompts: list[str | list[int]], echo: bool
) -> tuple[list[list[int]], list[str]]:
    """Token ids of each prompt and, when echoing, its text."""
    token_ids = [engine.engine.encode(p) if isinstance(p, str) else list(p) for p in prompts]
    texts = []
    if echo:
        texts = [p if isinstance(p, str) else engine.tokenizer.decode(p) for p in prompts]
    return token_ids, texts


@router.post(
    "/v1/completions",
    response_model=CompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    """Continue each prompt; with `stream`, as server-sent events ending in `data: [DONE]`."""
    state: ServerState = request.app.state.server
    record = access_record(request)
    record.model, record.stream, record.user = body.model, body.stream, body.user
    engine = state.ready_engine()
    model = state.check_model(body.model)
    prompts = body.prompts
    if state.config.log_prompts:
        record.prompt = prompts
    token_ids, texts = await asyncio.to_thread(_tokenize, engine, prompts, body.echo)
    explicit = "max_tokens" in body.model_fields_set
    for ids in token_ids:
        state.check_length(len(ids), body.max_tokens, explicit)
    params = body.sampling_params(state.defaults, body.max_tokens, body.logprobs)
    completion = _Completion(
        id=f"cmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model,
        n=body.n,
        echo=texts if body.echo else None,
        logprobs=state.logprobs if body.logprobs is not None else None,
        include_usage=body.include_usage,
    )
    record.id = completion.id
    timeout_s = state.config.request_timeout_s
    gen = await Generation.start(engine, completion.id, token_ids, params, record.arrival_time, timeout_s)
    if body.stream:
        return EventStreamResponse(_stream(completion, gen, record), gen.aclose)
    try:
        finals = await run_unless_disconnected(request, gen.final_outputs())
    finally:
        await gen.aclose()
        record.observe(gen.latest)
    return Response(_answer(completion, finals).model_dump_json(), media_type="application/json")


def _answer(completion: _Completion, finals: list[RequestOutput]) -> CompletionResponse:
    choices = []
    for prompt_index, final in enumerate(finals):
        prefix = completion.prefix(prompt_index)
        for c in final.outputs:
            logprobs = None
            if completion.logprobs is not None:
                logprobs = completion.logprobs.completion(c.logprobs or [], text_offset=len(prefix))
            choices.append(
                CompletionChoice(
                    index=completion.index(prompt_index, c),
                    text=prefix + c.text,
                    logprobs=logprobs,
                    finish_reason=c.finish_reason,
                    stop_reason=c.stop_reason,
                )
            )
    return CompletionResponse(
        id=completion.id,
        created=completion.created,
        model=completion.model,
        choices=choices,
        usage=usage_of(finals),
    )


class _ChunkMaker:
    """Per-choice streaming state: text offsets for logprobs and which choices have finished."""

    def __init__(self, completion: _Completion, num_prompts: int) -> None:
        self.completion = completion
        num_choices = num_prompts * completion.n
        self.offsets = [len(completion.prefix(i // completion.n)) for i in range(num_choices)]
        self.finished = [False] * num_choices

    def chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        c = self.completion
        return sse_data(
            CompletionChunk(id=c.id, created=c.created, model=c.model, choices=choices, usage=usage)
        )

    def first(self) -> list[str]:
        """The echoed prompts, one chunk per choice, before any generated text."""
        return [
            self.chunk(
                [
                    CompletionChoice(
                        index=i, text=self.completion.prefix(i // self.completion.n), finish_reason=None
                    )
                ]
            )
            for i in range(len(self.finished))
            if self.completion.prefix(i // self.completion.n)
        ]

    def update(self, prompt_index: int, out: RequestOutput) -> list[str]:
        chunks = []
        for c in out.outputs:
            index = self.completion.index(prompt_index, c)
            if self.finished[index] or not (c.delta_text or c.delta_logprobs or c.finished):
                continue
            logprobs = None
            if self.completion.logprobs is not None:
                logprobs = self.completion.logprobs.completion(c.delta_logprobs, self.offsets[index])
                self.offsets[index] += sum(len(t) for t in logprobs.tokens)
            self.finished[index] = c.finished
            choice = CompletionChoice(
                index=index,
                text=c.delta_text,
                logprobs=logprobs,
                finish_reason=c.finish_reason,
                stop_reason=c.stop_reason,
            )
            chunks.append(self.chunk([choice]))
        return chunks


async def _stream(completion: _Completion, gen: Generation, record: AccessRecord) -> AsyncIterator[str]:
    maker = _ChunkMaker(completion, gen.num_prompts)
    try:
        for chunk in maker.first():
            yield chunk
        async for prompt_index, out in gen.outputs():
            for chunk in maker.update(prompt_index, out):
                yield chunk
        if completion.include_usage:
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
