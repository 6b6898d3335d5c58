"""POST /v1/completions: raw prompts (text or token ids, one or a batch), answers whole or streamed."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.outputs import CompletionOutput, RequestOutput
from seekserve.server.endpoint import open_request, respond
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
from seekserve.server.sse import sse_data

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
    prompt_token_ids: list[list[int]] | None
    """Per prompt, its token ids where the answer carries token ids (`return_token_ids`), else None."""

    def index(self, prompt_index: int, choice: CompletionOutput) -> int:
        return prompt_index * self.n + choice.index

    def prefix(self, prompt_index: int) -> str:
        return self.echo[prompt_index] if self.echo is not None else ""


def _tokenize(
    engine: AsyncEngine, prompts: list[str | list[int]], echo: bool
) -> tuple[list[list[int]], list[str]]:
    """Token ids of each prompt and, when echoing, its text."""
    token_ids = [engine.encode(p) if isinstance(p, str) else list(p) for p in prompts]
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
    opened = open_request(request, body)
    state, prompts = opened.state, body.prompts
    if state.config.log_prompts:
        opened.record.prompt = prompts
    if body.echo or any(isinstance(p, str) for p in prompts):
        token_ids, texts = await asyncio.to_thread(_tokenize, opened.engine, prompts, body.echo)
    else:
        token_ids, texts = _tokenize(opened.engine, prompts, echo=False)  # token ids only: no thread hop
    explicit = "max_tokens" in body.model_fields_set
    for ids in token_ids:
        state.check_length(len(ids), body.max_tokens, explicit, param="prompt")
    params = body.sampling_params(state.defaults, body.max_tokens, body.logprobs)
    completion = _Completion(
        id=f"cmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=opened.model,
        n=body.n,
        echo=texts if body.echo else None,
        logprobs=state.logprobs if body.logprobs is not None else None,
        prompt_token_ids=token_ids if body.return_token_ids else None,
    )
    gen = await opened.generate(completion.id, token_ids, params)
    maker = _ChunkMaker(completion, len(token_ids)) if body.stream else None
    return await respond(
        request, opened, gen, maker, body.include_usage, lambda finals: _answer(completion, finals)
    )


def _answer(completion: _Completion, finals: list[RequestOutput]) -> CompletionResponse:
    choices = []
    with_ids = completion.prompt_token_ids is not None
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
                    prompt_token_ids=final.prompt_token_ids if with_ids else None,
                    token_ids=c.token_ids if with_ids else None,
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
    """Per-choice streaming state: text offsets for logprobs, which choices have had their first
    chunk (it carries the prompt's token ids) and which have finished."""

    def __init__(self, completion: _Completion, num_prompts: int) -> None:
        self.completion = completion
        num_choices = num_prompts * completion.n
        self.offsets = [len(completion.prefix(i // completion.n)) for i in range(num_choices)]
        self.started = [False] * num_choices
        self.finished = [False] * num_choices

    def chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        c = self.completion
        return sse_data(
            CompletionChunk(id=c.id, created=c.created, model=c.model, choices=choices, usage=usage)
        )

    def _token_ids(self, index: int, delta: list[int]) -> tuple[list[int] | None, list[int] | None]:
        """(prompt ids, generated ids) of a choice's next chunk; the prompt's only in its first."""
        prompts = self.completion.prompt_token_ids
        if prompts is None:
            return None, None
        first, self.started[index] = not self.started[index], True
        return (prompts[index // self.completion.n] if first else None), delta

    def first(self) -> list[str]:
        """The echoed prompts, one chunk per choice, before any generated text."""
        chunks = []
        for i in range(len(self.finished)):
            prefix = self.completion.prefix(i // self.completion.n)
            if prefix:
                prompt_ids, ids = self._token_ids(i, [])
                choice = CompletionChoice(
                    index=i, text=prefix, finish_reason=None, prompt_token_ids=prompt_ids, token_ids=ids
                )
                chunks.append(self.chunk([choice]))
        return chunks

    def update(self, prompt_index: int, out: RequestOutput) -> list[str]:
        chunks = []
        for c in out.outputs:
            index = self.completion.index(prompt_index, c)
            # A step's token is a chunk even while its text is held back (empty `text`), as vLLM and
            # OpenAI stream: a client's inter-token gaps are then the server's steps.
            news = c.delta_text or c.delta_logprobs or c.finished or c.delta_token_ids
            if self.finished[index] or not news:
                continue
            logprobs = None
            if self.completion.logprobs is not None:
                logprobs = self.completion.logprobs.completion(c.delta_logprobs, self.offsets[index])
                self.offsets[index] += sum(len(t) for t in logprobs.tokens)
            self.finished[index] = c.finished
            prompt_ids, ids = self._token_ids(index, c.delta_token_ids)
            choice = CompletionChoice(
                index=index,
                text=c.delta_text,
                logprobs=logprobs,
                finish_reason=c.finish_reason,
                stop_reason=c.stop_reason,
                prompt_token_ids=prompt_ids,
                token_ids=ids,
            )
            chunks.append(self.chunk([choice]))
        return chunks
