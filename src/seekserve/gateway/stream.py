"""Relaying a stream to the client, and continuing it on another backend when its backend fails.

The gateway asks seekserve and vLLM backends for `return_token_ids`, so each chunk tells which
token ids its text came from. When the stream breaks after text reached the client, the
generation goes on elsewhere as a completion of `prompt_token_ids + generated ids` with
`max_tokens` reduced: the new backend's first token is the one the old backend would have
produced next, so a greedy answer is exactly the uninterrupted one. Chat streams continue through
/v1/completions on the same token ids (the chat template is already in `prompt_token_ids`) and
the completion chunks are turned back into chat deltas, into `reasoning_content` until `</think>`
when the stream was still reasoning.

Token ids whose text the backend held back (a chunk with ids but no text: an incomplete UTF-8
character) are not taken as generated: the continuation makes them again, and its detokenizer
emits their text. SGLang backends continue as text (`continue_final_message`, or the prompt plus
the text sent): exact as long as the text re-tokenizes to the same ids. Remote APIs are not
continued: the client gets an error event. Only `n = 1` without logprobs or tools is continued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from seekserve.gateway.config import EngineKind

__all__ = ["StreamState", "continuation_request", "error_event", "malformed"]

_THINK_END = "</think>"
# Request fields that carry over to a continuation: sampling and stopping, not the prompt's shape.
_CARRIED = (
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "skip_special_tokens",
    "include_stop_str_in_output", "min_tokens", "user",
)  # fmt: skip


@dataclass
class StreamState:
    """What one client stream has received so far, enough to continue it anywhere."""

    chat: bool
    client_token_ids: bool
    """The client asked for token ids itself: they are passed on, not stripped."""
    id: str | None = None
    model: str | None = None
    created: int | None = None
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] = field(default_factory=list)
    """Ids whose text the client has (see the module docstring on held-back text)."""
    pending_ids: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    """Content sent (completions: text), for text continuation and the cache."""
    reasoning: list[str] = field(default_factory=list)
    num_text_chunks: int = 0
    reasoning_phase: bool = False
    finished: bool = False
    continuable: bool = True
    """False once anything appears that a continuation cannot reproduce (n > 1, tool calls, logprobs)."""
    chunks: list[dict[str, Any]] | None = None
    """Every chunk sent, kept only when the answer will be cached."""
    usage: dict[str, Any] | None = None
    completion_tokens: int = 0
    """Tokens generated so far (ids counted, else text chunks): what the rate limiter is charged."""
    carried_ids: int = 0
    """Generated ids handed to the current continuation as prompt."""

    @property
    def started(self) -> bool:
        """Has the client received any chunk? Before that a failure is retried from scratch."""
        return self.id is not None

    def rewrite(self, chunk: dict[str, Any], continued_from_completions: bool) -> dict[str, Any]:
        """Record `chunk` (an upstream event, parsed) and return the chunk the client gets."""
        if continued_from_completions and self.chat:
            chunk = self._as_chat(chunk)
        if self.id is None:
            self.id, self.model, self.created = chunk.get("id"), chunk.get("model"), chunk.get("created")
        else:
            chunk["id"], chunk["model"], chunk["created"] = self.id, self.model, self.created
        prompt_ids = (
            chunk.pop("prompt_token_ids", None)
            if not self.client_token_ids
            else chunk.get("prompt_token_ids")
        )
        choices = chunk.get("choices") or ()
        if len(choices) > 1 or any(c.get("index", 0) for c in choices):
            self.continuable = False
        for choice in choices:
            self._record_choice(choice, prompt_ids)
        if chunk.get("usage"):
            self.usage = chunk["usage"] = self._fix_usage(chunk["usage"])
        if self.chunks is not None:
            self.chunks.append(chunk)
        return chunk

    def _record_choice(self, choice: dict[str, Any], prompt_ids: list[int] | None) -> None:
        ids = choice.get("token_ids") if self.client_token_ids else choice.pop("token_ids", None)
        own_prompt = (
            choice.get("prompt_token_ids") if self.client_token_ids else choice.pop("prompt_token_ids", None)
        )
        if self.prompt_token_ids is None and (prompt_ids or own_prompt):
            self.prompt_token_ids = list(prompt_ids or own_prompt or ())
        if choice.get("logprobs"):
            self.continuable = False
        if self.chat:
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                self.continuable = False
            content, reasoning = (
                delta.get("content"),
                delta.get("reasoning_content") or delta.get("reasoning"),
            )
            if reasoning:
                self.reasoning.append(reasoning)
                self.reasoning_phase = True
            if content:
                self.text.append(content)
                self.reasoning_phase = False
            has_text = bool(content or reasoning)
        else:
            text = choice.get("text")
            if text:
                self.text.append(text)
            has_text = bool(text)
        if ids:
            self.completion_tokens += len(ids)
            self.pending_ids.extend(ids)
        if has_text:
            self.num_text_chunks += 1
            if not ids and self.prompt_token_ids is None:
                self.completion_tokens += 1
            self.token_ids.extend(self.pending_ids)
            self.pending_ids.clear()
        if choice.get("finish_reason"):
            self.finished = True

    def _fix_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        """A continuation's usage counts the ids it was given as prompt: give them back to completion."""
        carried = self.carried_ids
        if carried and self.prompt_token_ids is not None:
            usage["prompt_tokens"] = len(self.prompt_token_ids)
            usage["completion_tokens"] = usage.get("completion_tokens", 0) + carried
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage

    def _as_chat(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """A /v1/completions chunk of a continued chat stream, as a chat.completion.chunk."""
        choices = []
        for choice in chunk.get("choices") or ():
            text = choice.get("text") or ""
            delta: dict[str, Any] = {}
            if self.reasoning_phase and text:
                before, marker, after = text.partition(_THINK_END)
                if before:
                    delta["reasoning_content"] = before
                if marker:
                    self.reasoning_phase = False
                    after = after.lstrip("\n")
                    if after:
                        delta["content"] = after
            elif text:
                delta["content"] = text
            out = {"index": choice.get("index", 0), "delta": delta, "logprobs": None}
            out["finish_reason"] = choice.get("finish_reason")
            if "token_ids" in choice:
                out["token_ids"] = choice["token_ids"]
            choices.append(out)
        chunk["object"] = "chat.completion.chunk"
        chunk["choices"] = choices
        return chunk

    def missing_usage(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The usage chunk of a stream that broke after its last choice but before its usage chunk, when
        the client asked for one (`stream_options.include_usage`); None when it was sent, not asked for,
        or the prompt's length is unknown (no token ids: a remote API)."""
        if self.usage is not None or self.prompt_token_ids is None:
            return None
        if not (body.get("stream_options") or {}).get("include_usage"):
            return None
        prompt, completion = len(self.prompt_token_ids), self.completion_tokens
        self.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage,
        }
        if self.chunks is not None:
            self.chunks.append(chunk)
        return chunk

    def mark_continued(self) -> None:
        """A continuation is about to start: its prompt carries the generated ids counted so far."""
        self.carried_ids = len(self.token_ids)
        self.completion_tokens = len(self.token_ids)
        self.pending_ids.clear()


def malformed(chunk: Any) -> str | None:
    """What makes `chunk` (a parsed upstream event) something StreamState cannot record, or None.

    A backend is not trusted to send well-formed chunks: an event of the wrong shape breaks the
    stream (it is continued elsewhere or ends with an error event), never the gateway."""
    if not isinstance(chunk, dict):
        return f"a JSON {type(chunk).__name__}, not an object"
    choices = chunk.get("choices")
    if choices is not None and not isinstance(choices, list):
        return "`choices` is not a list"
    usage = chunk.get("usage")
    if usage is not None and not (isinstance(usage, dict) and _is_int(usage.get("completion_tokens", 0))):
        return "`usage` is not an object of token counts"
    if not _is_ids(chunk.get("prompt_token_ids")):
        return "`prompt_token_ids` is not a list of token ids"
    for choice in choices or ():
        problem = _malformed_choice(choice)
        if problem is not None:
            return problem
    return None


def _malformed_choice(choice: Any) -> str | None:
    if not isinstance(choice, dict):
        return "a choice is not an object"
    if not _is_int(choice.get("index", 0)):
        return "a choice's `index` is not an integer"
    delta = choice.get("delta")
    if delta is not None and not isinstance(delta, dict):
        return "a choice's `delta` is not an object"
    texts = [choice.get("text"), choice.get("finish_reason")]
    texts += [delta.get(k) for k in ("content", "reasoning_content", "reasoning")] if delta else []
    if any(t is not None and not isinstance(t, str) for t in texts):
        return "a choice's text or finish_reason is not a string"
    if not (_is_ids(choice.get("token_ids")) and _is_ids(choice.get("prompt_token_ids"))):
        return "a choice's token ids are not a list of token ids"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ids(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value))


def continuation_request(
    state: StreamState, body: dict[str, Any], engine: EngineKind
) -> tuple[str, dict[str, Any]] | None:
    """(path, body) that continues `state` on a backend of kind `engine`; None when none can."""
    if not state.continuable or state.finished:
        return None
    generated = len(state.token_ids) if state.prompt_token_ids is not None else state.num_text_chunks
    new: dict[str, Any] = {k: body[k] for k in _CARRIED if k in body}
    new["model"] = body["model"]
    new["stream"] = True
    if "stream_options" in body:
        new["stream_options"] = body["stream_options"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        if not _is_int(max_tokens) or max_tokens - generated <= 0:
            return None
        new["max_tokens"] = max_tokens - generated
    if engine in (EngineKind.SEEKSERVE, EngineKind.VLLM) and state.prompt_token_ids is not None:
        new["prompt"] = state.prompt_token_ids + state.token_ids
        new["return_token_ids"] = True
        return "/completions", new
    if engine is EngineKind.SGLANG and not state.reasoning:
        if state.chat:
            partial = {"role": "assistant", "content": "".join(state.text)}
            new["messages"] = [*body["messages"], partial]
            new["continue_final_message"], new["add_generation_prompt"] = True, False
            return "/chat/completions", new
        if isinstance(body.get("prompt"), str):
            new["prompt"] = body["prompt"] + "".join(state.text)
            return "/completions", new
    return None


def error_event(message: str, kind: str = "server_error", code: str | None = "upstream_failed") -> bytes:
    """An OpenAI error object as an SSE event: the stream's last event when nothing can continue it."""
    error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"
