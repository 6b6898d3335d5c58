"""Request bodies of the OpenAI-compatible API, in OpenAI's field names and ranges.

Validation is strict: a field of the wrong type (a string for a number, a float for an integer)
or out of range is rejected with 400, as OpenAI does; unknown fields are ignored, as OpenAI does.
Text anywhere in a body must be Unicode: JSON lets a string hold a lone UTF-16 surrogate
("\\ud800" without its pair), which no tokenizer, log or response can encode, so it is a 400.
Fields beyond OpenAI's (`top_k`, `min_p`, `repetition_penalty`, `ignore_eos`, `min_tokens`,
`stop_token_ids`, `return_token_ids`, `add_generation_prompt`, `continue_final_message`) have
vLLM's names and meanings. Response bodies are in `responses.py`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from seekserve.engine.sampling_params import MAX_LOGPROBS, SamplingParams

__all__ = [
    "MAX_CHOICES",
    "MAX_N",
    "ApproximateLocation",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ContentPart",
    "SamplingDefaults",
    "SamplingRequest",
    "StreamOptions",
    "UserLocation",
    "WebSearchOptions",
]

MAX_N = 128
"""Most completions one request may ask for (OpenAI's limit)."""
MAX_CHOICES = 2048
"""Most choices one request may ask for in all: a batch of prompts times `n`, each one sequence."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_STOP = 16

TokenId = Annotated[int, Field(ge=0, le=_INT64_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _unicode_text(cls, value: Any, info: ValidationInfo) -> Any:
        _check_text(value, info.field_name or "", top=True)
        return value


def _check_text(value: Any, where: str, top: bool = False) -> None:
    """Raise ValueError when a string in `value` (or in its lists and dicts) is not valid Unicode.

    Runs on the raw JSON value before the field's type is checked, so a union (`content`: a string
    or a list of parts) reports one error, not one per member."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            at = "" if top else f" at {where}"
            raise ValueError(
                f"the text{at} holds a lone UTF-16 surrogate ({value[e.start]!r}) at character {e.start}, "
                "which is not Unicode: send the character itself, or both halves of its surrogate pair"
            ) from None
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_text(item, f"{where}.{i}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, f"{where}.{key}")


class StreamOptions(_Strict):
    include_usage: bool = False
    """Send a last chunk with the request's token usage (its `choices` is empty)."""


class ContentPart(_Strict):
    """One part of a message's content; only text parts are supported."""

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text":
            raise ValueError(f"content parts of type {self.type!r} are not supported: send text parts only")
        if self.text is None:
            raise ValueError("a text content part needs a `text` field")
        return self


class ChatMessage(_Strict):
    """One message of a conversation; `developer` is treated as `system`."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)

    def for_template(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class ApproximateLocation(_Strict):
    city: str | None = None
    country: str | None = None
    """Two-letter ISO country code (`GB`, `CN`): the search language and region hint."""
    region: str | None = None
    timezone: str | None = None
    """IANA time zone (`Europe/London`): the date the search prompt gives."""


class UserLocation(_Strict):
    type: Literal["approximate"]
    approximate: ApproximateLocation


class WebSearchOptions(_Strict):
    """OpenAI's `web_search_options` of a chat request: its presence asks for web search."""

    search_context_size: Literal["low", "medium", "high"] = "medium"
    """How many results, and how much of their text, go into the prompt."""
    user_location: UserLocation | None = None


@dataclass(frozen=True)
class SamplingDefaults:
    """Sampling values used where a request leaves a field out (from the model's generation_config)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0


class SamplingRequest(_Strict):
    """Fields both generation endpoints share."""

    model: str | None = None
    """The served model's name; None means the one this server serves."""
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, le=2**31 - 1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    stop: str | Annotated[list[str], Field(max_length=_MAX_STOP)] | None = None
    stop_token_ids: Annotated[list[TokenId], Field(max_length=_MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX - MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    return_token_ids: bool | None = None
    """Also send token ids (vLLM's field): each choice's generated `token_ids` and the prompt's
    `prompt_token_ids` (see responses.py for where each goes). Absent from the answer unless true."""

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling_params(
        self, defaults: SamplingDefaults, max_tokens: int | None, logprobs: int | None
    ) -> SamplingParams:
        """The engine's parameters; raises InvalidRequestError on combinations it rejects."""

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            n=self.n,
            temperature=pick(self.temperature, defaults.temperature),
            top_p=pick(self.top_p, defaults.top_p),
            top_k=pick(self.top_k, defaults.top_k),
            min_p=pick(self.min_p, defaults.min_p),
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=pick(self.repetition_penalty, defaults.repetition_penalty),
            stop=stop,
            stop_token_ids=list(self.stop_token_ids or []),
            max_tokens=max_tokens,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
        )


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(None, ge=1)
    """Most tokens to generate (deprecated by OpenAI in favour of max_completion_tokens)."""
    max_completion_tokens: int | None = Field(None, ge=1)
    """Most tokens to generate; wins over max_tokens. None: up to the context length."""
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    """End the prompt with the template's opening of an assistant turn (vLLM's field)."""
    continue_final_message: bool = False
    """Leave the last message, an assistant's, open so the answer continues it (vLLM's field): the
    template is applied without a generation prompt and cut right after that message's content.
    Needs add_generation_prompt=false."""
    web_search_options: WebSearchOptions | None = None
    """Ground the answer in web search results (OpenAI's field); see docs/search.md."""
    web_search: bool | None = None
    """seekserve's shorthand: true searches with default options, false never searches; None leaves
    it to `web_search_options` and the server's --web-search."""

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.continue_final_message:
            self._check_continuable()
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        if self.tools and self.tool_choice != "none":
            raise ValueError("tool calling is not supported by this server: leave out `tools`")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(f"response_format type {kind!r} is not supported: only 'text' is")
        return self

    def _check_continuable(self) -> None:
        if self.add_generation_prompt:
            raise ValueError(
                "continue_final_message=true and add_generation_prompt=true cannot be used together "
                "(one continues the last message, the other opens a new one): "
                "send add_generation_prompt=false"
            )
        role = self.messages[-1].role
        if role != "assistant":
            raise ValueError(
                f"continue_final_message=true needs the last message to be the assistant's, not {role!r}: "
                "end the messages with the partial assistant message to continue"
            )

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        """Alternatives per position the engine must return; None when no log-probabilities are wanted."""
        return (self.top_logprobs or 0) if self.logprobs else None


Prompt = str | Annotated[list[TokenId], Field(min_length=1)]


class CompletionRequest(SamplingRequest):
    """POST /v1/completions."""

    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1)]
    """A text, a list of token ids, or a batch of either; each gets `n` choices."""
    max_tokens: int | None = Field(16, ge=1)
    """Most tokens to generate (16 by default, as OpenAI's); null: up to the context length."""
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    """Put the prompt before each choice's text."""
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=MAX_N)
    logit_bias: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> CompletionRequest:
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported: leave it out")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError(f"best_of={self.best_of} is not supported: leave it out or make it equal to n")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported: leave it out")
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs is not supported: it needs the prompt's log-probabilities")
        choices = len(self.prompts) * self.n
        if choices > MAX_CHOICES:
            raise ValueError(
                f"{len(self.prompts)} prompts with n={self.n} ask for {choices} choices; one request may ask "
                f"for at most {MAX_CHOICES}: split the batch over several requests"
            )
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """The prompts of the request, a batch of one where a single prompt was sent."""
        prompt = self.prompt
        if isinstance(prompt, str) or isinstance(prompt[0], int):
            return [typing.cast(str | list[int], prompt)]
        return typing.cast(list[str | list[int]], list(prompt))
