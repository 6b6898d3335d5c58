"""Response bodies of the OpenAI-compatible API, in OpenAI's exact shapes.

Fields that OpenAI leaves out when empty (`reasoning_content`, `usage` on stream chunks where
it was not asked for, a delta's `role`/`content`) are left out here too; fields OpenAI sends as
null (`logprobs`, `finish_reason` while streaming) are sent as null.

With `return_token_ids` the answers carry token ids where vLLM puts them; without it those fields
are absent. Completions: each choice has `prompt_token_ids` and `token_ids`; a stream sends
`prompt_token_ids` in each choice's first chunk. Chat: the body (or, streamed, each choice's first
chunk, the one with the role) has `prompt_token_ids`, each choice has `token_ids`. Token ids
always include the stop token that ended a choice, as vLLM's do.

Streamed, every choice chunk has `token_ids`: the tokens generated since the choice's previous
chunk, so each generated token is in exactly one chunk, in order (`[]` on a chunk that only
finishes the choice). A chunk's text may lag its ids: text held back because it ends in an
incomplete UTF-8 character, could begin a stop string, or (chat) could begin a `<think>` tag
arrives in a later chunk, so a chunk may carry ids with empty text. The concatenated ids of a
choice equal the whole answer's `token_ids`, as the concatenated text equals its text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from seekserve.engine.outputs import RequestOutput

__all__ = [
    "ERROR_RESPONSES",
    "Annotation",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionResponse",
    "ChatDelta",
    "ChatLogprobs",
    "ChatMessageOut",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "CompletionResponse",
    "ErrorBody",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "PromptTokensDetails",
    "SearchResultOut",
    "TokenLogprob",
    "TopLogprob",
    "UrlCitationBody",
    "Usage",
    "usage_of",
]


def _omit_none(value: object) -> bool:
    return value is None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 408, 413, 429, 503)
}
"""The error statuses of the generation endpoints, for the OpenAPI schema."""


class PromptTokensDetails(BaseModel):
    cached_tokens: int
    """Prompt tokens whose KV came from the prefix cache."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = Field(default=None, exclude_if=_omit_none)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None = None


class UrlCitationBody(BaseModel):
    start_index: int
    end_index: int
    """Exclusive: content[start_index:end_index] is the citation mark."""
    title: str
    url: str


class Annotation(BaseModel):
    """OpenAI's `url_citation` annotation of a message (web search)."""

    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitationBody


class SearchResultOut(BaseModel):
    """One source of a grounded answer (seekserve's field): search_results[X - 1] is the source that
    the answer's citation mark X names."""

    url: str
    title: str
    snippet: str
    rank: int
    """Its place in the search provider's results (1: the best)."""


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str | None = Field(default=None, exclude_if=_omit_none)
    """The model's reasoning (text inside <think>...</think>), DeepSeek's field; absent when none."""
    annotations: list[Annotation] | None = Field(default=None, exclude_if=_omit_none)
    """The answer's citations of search results; present (maybe empty) when the request searched."""


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None
    stop_reason: int | str | None = Field(default=None, exclude_if=_omit_none)
    """The stop string or stop token id that ended the choice; absent for end-of-sequence."""
    token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """The generated token ids (`return_token_ids`); absent otherwise."""


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    prompt_token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """The templated prompt's token ids (`return_token_ids`); absent otherwise."""
    search_results: list[SearchResultOut] | None = Field(default=None, exclude_if=_omit_none)
    """The sources put in the prompt, when the request searched ([] when the search failed)."""
    search_error: str | None = Field(default=None, exclude_if=_omit_none)
    """Why the answer goes without search results, when the request searched and it failed."""


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=_omit_none)
    content: str | None = Field(default=None, exclude_if=_omit_none)
    reasoning_content: str | None = Field(default=None, exclude_if=_omit_none)
    annotations: list[Annotation] | None = Field(default=None, exclude_if=_omit_none)
    """On the chunk that finishes a choice of a request that searched: all its citations."""


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = Field(default=None, exclude_if=_omit_none)
    token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """Token ids generated since this choice's previous chunk (`return_token_ids`); may run ahead
    of the text (see the module docstring)."""


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(default=None, exclude_if=_omit_none)
    prompt_token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """The templated prompt's token ids, on each choice's first chunk only (`return_token_ids`)."""
    search_results: list[SearchResultOut] | None = Field(default=None, exclude_if=_omit_none)
    """As the whole answer's, on each choice's first chunk only, when the request searched."""
    search_error: str | None = Field(default=None, exclude_if=_omit_none)
    """As the whole answer's, on each choice's first chunk only."""


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    """A choice of an answer, or of a stream chunk (then `text` and `token_ids` are deltas)."""

    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None
    stop_reason: int | str | None = Field(default=None, exclude_if=_omit_none)
    prompt_token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """The prompt's token ids (`return_token_ids`); streamed, on the choice's first chunk only."""
    token_ids: list[int] | None = Field(default=None, exclude_if=_omit_none)
    """Generated token ids (`return_token_ids`): all of them, or streamed, those since the choice's
    previous chunk, which may run ahead of the text (see the module docstring). With `echo` they
    are still the generated ones only."""


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(default=None, exclude_if=_omit_none)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "seekserve"
    max_model_len: int
    """Longest sequence (prompt plus output) in tokens."""
    chat_template: Literal["model", "default"]
    """"model" when the model ships a chat template; "default" when it has none (a base model) and
    chat requests use seekserve's plain `User:`/`Assistant:` transcript template instead."""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def usage_of(outputs: list[RequestOutput]) -> Usage:
    """Token usage of finished (or last seen) engine outputs: prompts once each, every choice's tokens."""
    prompt = sum(len(o.prompt_token_ids) for o in outputs)
    completion = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    cached = sum(o.metrics.num_cached_tokens for o in outputs if o.metrics is not None)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
