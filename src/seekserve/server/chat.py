"""POST /v1/chat/completions: messages through the model's chat template, answers whole or streamed."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from jinja2.exceptions import SecurityError, TemplateError

from seekserve.engine.outputs import CompletionOutput, RequestOutput
from seekserve.errors import InvalidRequestError
from seekserve.models.chat_template import TEMPLATE_FAILURES
from seekserve.search.citations import CitationStream, UrlCitation, find_citations
from seekserve.server.endpoint import open_request, respond
from seekserve.server.logprobs import LogprobFormatter
from seekserve.server.protocol import ChatCompletionRequest, ChatMessage
from seekserve.server.reasoning import ReasoningSplitter, prompt_opens_reasoning, split_reasoning
from seekserve.server.responses import (
    ERROR_RESPONSES,
    Annotation,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatMessageOut,
    Usage,
    usage_of,
)
from seekserve.server.search import GroundedPrompt, grounded_prompt
from seekserve.server.sse import sse_data

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
    prompt_token_ids: list[int] | None
    """The prompt's token ids where the answer carries token ids (`return_token_ids`), else None."""
    search: GroundedPrompt | None = None
    """The request's search (sources, citation style, error); None where it did not search."""


def render_prompt(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> tuple[str, list[int]]:
    """The chat template applied to `messages`, and its tokens.

    By default the prompt ends by opening the assistant's turn; with `continue_final_message` it
    ends right after the last message's content instead, so generation continues that message.
    """
    conversation = [m.for_template() for m in messages]
    try:
        text = tokenizer.apply_chat_template(
            conversation,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
        )
        # The template writes any special tokens (BOS) itself.
        return text, list(tokenizer.encode(text, add_special_tokens=False))
    except SecurityError as e:
        raise InvalidRequestError(
            f"the model's chat template reached for Python internals on these messages, which the template "
            f"sandbox refuses ({e}): the template is unsafe; send the prompt to /v1/completions instead",
            "messages",
        ) from e
    except TemplateError as e:
        raise InvalidRequestError(f"the model's chat template rejected the messages: {e}", "messages") from e
    except ValueError as e:
        if continue_final_message:  # the template drops or rewrites the message's content
            raise InvalidRequestError(
                f"the model's chat template cannot continue the last message ({str(e)[:300]}); "
                "send the prompt to /v1/completions instead",
                "messages",
            ) from e
        # no chat template
        raise InvalidRequestError(
            f"this model cannot chat ({e}); send the prompt to /v1/completions instead", "messages"
        ) from e
    except TEMPLATE_FAILURES as e:  # a Python error in one of the template's expressions
        raise InvalidRequestError(
            f"the model's chat template failed on these messages ({type(e).__name__}: {str(e)[:300]}); "
            "send the prompt to /v1/completions instead",
            "messages",
        ) from e


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer a conversation; with `stream`, as server-sent events ending in `data: [DONE]`."""
    opened = open_request(request, body)
    state = opened.state
    if state.config.log_prompts:
        opened.record.prompt = [m.for_template() for m in body.messages]
    engine = opened.engine
    render = functools.partial(
        render_prompt,
        engine.tokenizer,
        add_generation_prompt=body.add_generation_prompt,
        continue_final_message=body.continue_final_message,
    )
    search = await grounded_prompt(
        body, state.config.web_search, state.search, state.search_metrics, engine, render, opened.model,
    )  # fmt: skip
    if search is not None:
        prompt, token_ids = search.prompt, search.token_ids
    else:
        prompt, token_ids = await asyncio.to_thread(render, body.messages)
    max_tokens = body.requested_max_tokens
    state.check_length(len(token_ids), max_tokens, explicit=True)
    params = body.sampling_params(state.defaults, max_tokens, body.num_logprobs)
    chat = _Chat(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=opened.model,
        prompt=prompt,
        split_reasoning=state.config.reasoning_parser != "none",
        logprobs=state.logprobs if body.logprobs else None,
        prompt_token_ids=token_ids if body.return_token_ids else None,
        search=search,
    )
    gen = await opened.generate(chat.id, [token_ids], params)
    maker = _ChunkMaker(chat, params.n) if body.stream else None
    return await respond(
        request, opened, gen, maker, body.include_usage, lambda finals: _answer(chat, finals[0])
    )


def _annotations(citations: list[UrlCitation]) -> list[Annotation]:
    return [Annotation.model_validate(c.to_openai()) for c in citations]


def _answer(chat: _Chat, final: RequestOutput) -> ChatCompletionResponse:
    with_ids = chat.prompt_token_ids is not None
    search = chat.search
    choices = []
    for c in final.outputs:
        reasoning, content = split_reasoning(c.text, chat.prompt) if chat.split_reasoning else (None, c.text)
        annotations = None
        if search is not None:
            annotations = _annotations(find_citations(content, search.sources, search.style))
        choices.append(
            ChatChoice(
                index=c.index,
                message=ChatMessageOut(content=content, reasoning_content=reasoning, annotations=annotations),
                logprobs=chat.logprobs.chat(c.logprobs or []) if chat.logprobs else None,
                finish_reason=c.finish_reason,
                stop_reason=c.stop_reason,
                token_ids=c.token_ids if with_ids else None,
            )
        )
    return ChatCompletionResponse(
        id=chat.id,
        created=chat.created,
        model=chat.model,
        choices=choices,
        usage=usage_of([final]),
        prompt_token_ids=final.prompt_token_ids if with_ids else None,
        search_results=None if search is None else search.results_out(),
        search_error=None if search is None else search.error,
    )


class _ChunkMaker:
    """Per-choice streaming state: the reasoning splitters and which choices have finished."""

    def __init__(self, chat: _Chat, n: int) -> None:
        self.chat = chat
        opens = prompt_opens_reasoning(chat.prompt)
        self.splitters = [ReasoningSplitter(opens) for _ in range(n)] if chat.split_reasoning else None
        self.finished = [False] * n
        search = chat.search
        self.citations = (
            None if search is None else [CitationStream(search.sources, search.style) for _ in range(n)]
        )

    def chunk(
        self,
        choices: list[ChatChunkChoice],
        usage: Usage | None = None,
        prompt_token_ids: list[int] | None = None,
        first: bool = False,
    ) -> str:
        c = self.chat
        search = c.search if first else None
        return sse_data(
            ChatCompletionChunk(
                id=c.id,
                created=c.created,
                model=c.model,
                choices=choices,
                usage=usage,
                prompt_token_ids=prompt_token_ids,
                search_results=None if search is None else search.results_out(),
                search_error=None if search is None else search.error,
            )
        )

    def first(self) -> list[str]:
        """Each choice's first chunk: the assistant role and, with token ids, the prompt's."""
        ids: list[int] | None = None if self.chat.prompt_token_ids is None else []
        return [
            self.chunk(
                [ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content=""), token_ids=ids)],
                prompt_token_ids=self.chat.prompt_token_ids,
                first=True,
            )
            for i in range(len(self.finished))
        ]

    def update(self, prompt_index: int, out: RequestOutput) -> list[str]:
        return [self.chunk([choice]) for c in out.outputs for choice in self._choices(c)]

    def _choices(self, c: CompletionOutput) -> list[ChatChunkChoice]:
        """The chunks of one choice's update: its delta (if any), then its finish (if finished).

        A step's new tokens make a chunk even while their text is held back (an incomplete UTF-8
        character, a possible stop string): its delta is empty, as vLLM and OpenAI stream, so a
        client's inter-token gaps are the server's steps. Token ids, when asked for, go on the
        delta's chunk, or on the finish chunk where there is no delta.
        """
        if self.finished[c.index]:
            return []
        reasoning, content = self._split(c)
        logprobs = (
            self.chat.logprobs.chat(c.delta_logprobs) if self.chat.logprobs and c.delta_logprobs else None
        )
        ids: list[int] | None = None if self.chat.prompt_token_ids is None else c.delta_token_ids
        citations = None if self.citations is None else self.citations[c.index]
        if citations is not None and content:
            citations.feed(content)
        choices = []
        if reasoning or content or logprobs or (c.delta_token_ids and not c.finished):
            delta = ChatDelta(content=content or None, reasoning_content=reasoning or None)
            choices.append(ChatChunkChoice(index=c.index, delta=delta, logprobs=logprobs, token_ids=ids))
            ids = None if ids is None else []
        if c.finished:
            self.finished[c.index] = True
            choices.append(
                ChatChunkChoice(
                    index=c.index,
                    delta=ChatDelta(
                        annotations=None if citations is None else _annotations(citations.finish())
                    ),
                    finish_reason=c.finish_reason,
                    stop_reason=c.stop_reason,
                    token_ids=ids,
                )
            )
        return choices

    def _split(self, c: CompletionOutput) -> tuple[str, str]:
        """(reasoning, content) of the update's text; all content where reasoning is not split."""
        if self.splitters is None:
            return "", c.delta_text
        splitter = self.splitters[c.index]
        reasoning, content = splitter.feed(c.delta_text)
        if c.finished:
            rest = splitter.finish()
            reasoning, content = reasoning + rest.reasoning, content + rest.content
        return reasoning, content
