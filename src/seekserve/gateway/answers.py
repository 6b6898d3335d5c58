"""The value a response cache stores: one complete answer, replayable as a stream.

The proxy stores the complete non-streaming body of an answer (`encode_answer`). A streamed answer
is stored once it has completed, assembled from its chunks (`assemble_answer`); a cached answer is
returned whole to a non-streaming request and replayed as chunks (`answer_as_chunks`) to a
streaming one, so one entry serves both. Both directions work on plain dicts (the parsed JSON),
never on pydantic models: this runs on the gateway's hot path.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["answer_as_chunks", "assemble_answer", "decode_answer", "encode_answer"]


_CHUNK_OBJECT = {"chat.completion": "chat.completion.chunk", "text_completion": "text_completion"}
_ASSEMBLED_OBJECT = {chunk: whole for whole, chunk in _CHUNK_OBJECT.items()}
_BODY_FIELDS = frozenset({"object", "choices", "usage"})
_CHOICE_FIELDS = frozenset({"index", "message", "delta", "text", "logprobs", "finish_reason"})
_UNASSEMBLED_DELTAS = frozenset({"tool_calls", "function_call"})


def encode_answer(body: dict[str, Any]) -> bytes:
    """The bytes stored for a complete answer body."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_answer(data: bytes) -> dict[str, Any] | None:
    """The body `encode_answer` stored; None when `data` is not one (corrupt, truncated, foreign)."""
    try:
        body = json.loads(data.decode("utf-8", "surrogatepass"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
    if not isinstance(body, dict) or body.get("object") not in _CHUNK_OBJECT:
        return None
    return body if isinstance(body.get("choices"), list) else None


def answer_as_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream chunks that replay a complete chat.completion / text_completion `body`.

    Chat, per choice: a chunk with delta {"role": "assistant"} plus the message's other fields
    (reasoning_content), one with the content (and the choice's logprobs), one with the tool calls
    if any, one with the finish_reason (and stop_reason). Completions: one chunk per choice. Then,
    when the body has usage, a chunk with choices [] and the usage (the proxy drops it unless the
    request asked for stream_options.include_usage). Every chunk has the body's id, created, model.
    """
    chat = body.get("object") == "chat.completion"
    head = {name: value for name, value in body.items() if name not in _BODY_FIELDS}
    head["object"] = _CHUNK_OBJECT["chat.completion" if chat else "text_completion"]
    chunks: list[dict[str, Any]] = []
    for choice in body["choices"]:
        parts = _chat_choice_chunks(choice) if chat else [_text_choice_chunk(choice)]
        chunks.extend({**head, "choices": [part]} for part in parts)
    if body.get("usage") is not None:
        chunks.append({**head, "choices": [], "usage": body["usage"]})
    return chunks


def _extras(choice: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in choice.items() if name not in _CHOICE_FIELDS}


def _chat_part(index: int, delta: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None, **fields}


def _chat_choice_chunks(choice: dict[str, Any]) -> list[dict[str, Any]]:
    index, message = choice["index"], choice.get("message") or {}
    first: dict[str, Any] = {"role": "assistant"}
    first.update(
        (name, value)
        for name, value in message.items()
        if name not in ("role", "content", "tool_calls") and value is not None
    )
    parts = [_chat_part(index, first)]
    content, logprobs = message.get("content"), choice.get("logprobs")
    if content or logprobs is not None:
        parts.append(_chat_part(index, {"content": content or ""}, logprobs=logprobs))
    if message.get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        parts.append(_chat_part(index, {"tool_calls": calls}))
    parts.append(_chat_part(index, {}, finish_reason=choice.get("finish_reason"), **_extras(choice)))
    return parts


def _text_choice_chunk(choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": choice["index"],
        "text": choice.get("text", ""),
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice.get("finish_reason"),
        **_extras(choice),
    }


class _Choice:
    """One choice being assembled from stream chunks."""

    __slots__ = ("extras", "finish_reason", "logprobs", "texts")

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {}  # "content", "reasoning_content" or "text" -> pieces
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: Any = None
        self.extras: dict[str, Any] = {}  # stop_reason and other choice fields, last value wins


def assemble_answer(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The complete body (object chat.completion / text_completion) a stream of `chunks` amounts to.

    Per choice index: chat deltas' string fields (content, reasoning_content) concatenated,
    completions' text concatenated, logprobs lists concatenated, the finish_reason; the usage of the
    last chunk carrying one (absent when none did: ask upstream for stream_options.include_usage).
    None when the stream cannot be assembled faithfully: tool calls, a choice without a
    finish_reason (a cut-off stream), mixed or unknown objects, an error chunk, malformed fields.
    """
    kind = chunks[0].get("object") if chunks else None
    if not isinstance(kind, str) or kind not in _ASSEMBLED_OBJECT:
        return None
    chat = kind == "chat.completion.chunk"
    choices: dict[int, _Choice] = {}
    usage = None
    for chunk in chunks:
        parts = chunk.get("choices")
        if chunk.get("object") != kind or not isinstance(parts, list):
            return None
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        if not all(_merge_part(choices, part, chat) for part in parts):
            return None
    if not choices or any(c.finish_reason is None for c in choices.values()):
        return None
    body = {name: value for name, value in chunks[0].items() if name not in _BODY_FIELDS}
    body["object"] = _ASSEMBLED_OBJECT[kind]
    body["choices"] = [_assembled_choice(i, choices[i], chat) for i in sorted(choices)]
    if usage is not None:
        body["usage"] = usage
    return body


def _merge_part(choices: dict[int, _Choice], part: Any, chat: bool) -> bool:
    if not isinstance(part, dict) or type(part.get("index")) is not int:
        return False
    state = choices.get(part["index"])
    if state is None:
        state = choices[part["index"]] = _Choice()
    if chat:
        delta = part.get("delta")
        if not isinstance(delta, dict) or not _merge_delta(state.texts, delta):
            return False
    elif isinstance(part.get("text"), str):
        state.texts.setdefault("text", []).append(part["text"])
    else:
        return False
    if part.get("logprobs") is not None:
        state.logprobs = _merge_logprobs(state.logprobs, part["logprobs"])
        if state.logprobs is None:
            return False
    if part.get("finish_reason") is not None:
        state.finish_reason = part["finish_reason"]
    for name, value in part.items():
        if name not in _CHOICE_FIELDS and (value is not None or name not in state.extras):
            state.extras[name] = value
    return True


def _merge_delta(texts: dict[str, list[str]], delta: dict[str, Any]) -> bool:
    for name, value in delta.items():
        if name == "role":
            if value not in (None, "assistant"):
                return False
        elif name in _UNASSEMBLED_DELTAS:
            if value:
                return False
        elif isinstance(value, str):
            texts.setdefault(name, []).append(value)
        elif value is not None:
            return False
    return True


def _merge_logprobs(held: dict[str, Any] | None, part: Any) -> dict[str, Any] | None:
    """Chat {"content": [...]} or completions {"tokens": [...], ...}: lists concatenated, the rest equal."""
    if not isinstance(part, dict):
        return None
    merged: dict[str, Any] = {} if held is None else held
    for name, value in part.items():
        old = merged.get(name)
        if isinstance(value, list) and old is None:
            merged[name] = list(value)
        elif isinstance(value, list) and isinstance(old, list):
            old.extend(value)
        elif name not in merged:
            merged[name] = value
        elif value is not None and old != value:
            return None
    return merged


def _assembled_choice(index: int, state: _Choice, chat: bool) -> dict[str, Any]:
    texts = {name: "".join(pieces) for name, pieces in state.texts.items()}
    if chat:
        message = {"role": "assistant", "content": texts.pop("content", ""), **texts}
        head: dict[str, Any] = {"index": index, "message": message}
    else:
        head = {"index": index, "text": texts.get("text", "")}
    return {**head, "logprobs": state.logprobs, "finish_reason": state.finish_reason, **state.extras}
