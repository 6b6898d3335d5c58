"""POST /v1/chat/completions: messages through the model's chat template, answers whole or streamed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from jinja2 import TemplateError

from seekserve.engine.outputs import CompletionOutput, RequestOutput
from seekserve.errors import InvalidRequestError, SeekserveError
from seekserve.server.access_log import AccessRecord, access_record
from seekserve.server.errors import error_body, error_label
from seekserve.server.generation import Generation, run_unless_disconnected
from seekserve.server.logprobs import LogprobFormatter
from seekserve.server.protocol import ChatCompletionRequest, ChatMessage
from seekserve.server.reasoning import ReasoningSplitter, prompt_opens_reasoning, split_reasoning
from seekserve.server.responses import (
    ERROR_RESPONSES,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatMessageOut,
    Usage,
    usage_of,
)
from seekserve.server.sse import DONE, EventStreamResponse, sse_data
from seekserve.server.state import ServerState

__all__ = ["render_prompt", "router"]

router = APIRouter()


@dataclass(frozen=True)
class _Chat:
    """What shaping one request's answer needs."""

    id: str
    created: int
    model: str
    prompt: str
    split_reasoning: bool
    logprobs: LogprobFormatter | None
    include_usage: bool


def render_prompt(tokenizer: Any, messages: list[ChatMessage]) -> tuple[str, list[int]]:
    """The chat template applied to `messages` (ending with the assistant's turn), and its tokens."""
    conversation = [m.for_template() for m in messages]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    except TemplateError as e:
        raise InvalidRequestError(f"the model's chat template rejected the messages: {e}", "messages") from e
    except ValueError as e:  # no chat template
        raise InvalidRequestError(
            f"this model cannot chat ({e}); send the prompt to /v1/completions instead", "messages"
        ) from e
    # The template writes any special tokens (BOS) itself.
    return text, list(tokenizer.encode(text, add_special_tokens=False))


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer a conversation; with `stream`, as server-sent events ending in `data: [DONE]`."""
    state: ServerState = request.app.state.server
    record = access_record(request)
    record.model, record.stream, record.user = body.model, body.stream, body.user
    engine = state.ready_engine()
    model = state.check_model(body.model)
    if state.config.log_prompts:
        record.prompt = [m.for_template() for m in body.messages]
    prompt, token_ids = await asyncio.to_thread(render_prompt, engine.tokenizer, body.messages)
    max_tokens = body.requested_max_tokens
    state.check_length(len(token_ids), max_tokens, explicit=True)
    params = body.sampling_params(state.defaults, max_tokens, body.num_logprobs)
    chat = _Chat(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model,
        prompt=prompt,
        split_reasoning=state.config.reasoning_parser != "none",
        logprobs=state.logprobs if body.logprobs else None,
        include_usage=body.include_usage,
    )
    record.id = chat.id
    timeout_s = state.config.request_timeout_s
    gen = await Generation.start(engine, chat.id, [token_ids], params, record.arrival_time, timeout_s)
    if body.stream:
        return EventStreamResponse(_stream(chat, gen, record, params.n), gen.aclose)
    try:
        finals = await run_unless_disconnected(request, gen.final_outputs())
    finally:
        await gen.aclose()
        record.observe(gen.latest)
    return Response(_answer(chat, finals[0]).model_dump_json(), media_type="application/json")


def _answer(chat: _Chat, final: RequestOutput) -> ChatCompletionResponse:
    choices = []
    for c in final.outputs:
        reasoning, content = split_reasoning(c.text, chat.prompt) if chat.split_reasoning else (None, c.text)
        choices.append(
            ChatChoice(
                index=c.index,
                message=ChatMessageOut(content=content, reasoning_content=reasoning),
                logprobs=chat.logprobs.chat(c.logprobs or []) if chat.logprobs else None,
                finish_reason=c.finish_reason,
                stop_reason=c.stop_reason,
            )
        )
    return ChatCompletionResponse(
        id=chat.id, created=chat.created, model=chat.model, choices=choices, usage=usage_of([final])
    )


class _ChunkMaker:
    """Per-choice streaming state: the reasoning splitters and which choices have finished."""

    def __init__(self, chat: _Chat, n: int) -> None:
        self.chat = chat
        opens = prompt_opens_reasoning(chat.prompt)
        self.splitters = [ReasoningSplitter(opens) for _ in range(n)] if chat.split_reasoning else None
        self.finished = [False] * n

    def chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        c = self.chat
        return sse_data(
            ChatCompletionChunk(id=c.id, created=c.created, model=c.model, choices=choices, usage=usage)
        )

    def first(self) -> list[str]:
        return [
            self.chunk([ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content=""))])
            for i in range(len(self.finished))
        ]

    def update(self, out: RequestOutput) -> list[str]:
        return [self.chunk([choice]) for c in out.outputs for choice in self._choices(c)]

    def _choices(self, c: CompletionOutput) -> list[ChatChunkChoice]:
        if self.finished[c.index]:
            return []
        reasoning, content = "", c.delta_text
        if self.splitters is not None:
            splitter = self.splitters[c.index]
            reasoning, content = splitter.feed(c.delta_text)
            if c.finished:
                rest = splitter.finish()
                reasoning, content = reasoning + rest.reasoning, content + rest.content
        logprobs = (
            self.chat.logprobs.chat(c.delta_logprobs) if self.chat.logprobs and c.delta_logprobs else None
        )
        choices = []
        if reasoning or content or logprobs:
            delta = ChatDelta(content=content or None, reasoning_content=reasoning or None)
            choices.append(ChatChunkChoice(index=c.index, delta=delta, logprobs=logprobs))
        if c.finished:
            self.finished[c.index] = True
            choices.append(
                ChatChunkChoice(
                    index=c.index, delta=ChatDelta(), finish_reason=c.finish_reason, stop_reason=c.stop_reason
                )
            )
        return choices


async def _stream(chat: _Chat, gen: Generation, record: AccessRecord, n: int) -> AsyncIterator[str]:
    maker = _ChunkMaker(chat, n)
    try:
        for chunk in maker.first():
            yield chunk
        async for _, out in gen.outputs():
            for chunk in maker.update(out):
                yield chunk
        if chat.include_usage:
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
