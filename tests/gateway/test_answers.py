from __future__ import annotations

from typing import Any

import pytest

from seekserve.gateway.answers import answer_as_chunks, assemble_answer, decode_answer, encode_answer

HEAD = {"id": "chatcmpl-1", "created": 1700000000, "model": "r1"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}


def chat_answer(*choices: dict[str, Any], usage: dict[str, Any] | None = USAGE) -> dict[str, Any]:
    body = {**HEAD, "object": "chat.completion", "choices": list(choices)}
    return body if usage is None else {**body, "usage": usage}


def chat_choice(index: int, content: str | None, **fields: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, **fields.pop("message", {})}
    return {"index": index, "message": message, "logprobs": None, "finish_reason": "stop", **fields}


def chunk(*choices: dict[str, Any], obj: str = "chat.completion.chunk", **fields: Any) -> dict[str, Any]:
    return {**HEAD, "object": obj, "choices": list(choices), **fields}


def delta(index: int, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish_reason}


def test_chat_answer_replays_as_role_content_finish_and_usage_chunks() -> None:
    body = chat_answer(chat_choice(0, "Paris.", message={"reasoning_content": "Capital?"}, stop_reason=7))
    assert answer_as_chunks(body) == [
        chunk(delta(0, role="assistant", reasoning_content="Capital?")),
        chunk(delta(0, content="Paris.")),
        chunk({**delta(0, "stop"), "stop_reason": 7}),
        chunk(usage=USAGE),
    ]


def test_chat_round_trip_with_reasoning_logprobs_and_two_choices() -> None:
    logprobs = {"content": [{"token": "A", "logprob": -0.5, "bytes": [65], "top_logprobs": []}]}
    body = chat_answer(
        chat_choice(0, "A", message={"reasoning_content": "think 0"}, logprobs=logprobs),
        chat_choice(
            1, "", message={"reasoning_content": "think 1"}, finish_reason="length", stop_reason=None
        ),
    )
    assert assemble_answer(answer_as_chunks(body)) == body


def test_completions_round_trip_with_two_choices() -> None:
    logprobs = {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{}, {}],
        "text_offset": [0, 1],
    }
    body: dict[str, Any] = {
        **HEAD,
        "object": "text_completion",
        "choices": [
            {"index": 0, "text": "ab", "logprobs": logprobs, "finish_reason": "length"},
            {"index": 1, "text": "深度", "logprobs": None, "finish_reason": "stop", "stop_reason": "\n"},
        ],
        "usage": USAGE,
    }
    chunks = answer_as_chunks(body)
    assert [c["object"] for c in chunks] == ["text_completion"] * 3
    assert chunks[1]["choices"] == [body["choices"][1]]
    assert assemble_answer(chunks) == body


def test_assembles_an_interleaved_stream() -> None:
    """As seekserve streams n=2: an opening chunk per choice, deltas interleaved, then the usage."""
    chunks = [
        chunk(delta(0, role="assistant", content="")),
        chunk(delta(1, role="assistant", content="")),
        chunk(delta(0, reasoning_content="hm")),
        chunk(delta(1, content="Hel")),
        chunk(delta(0, reasoning_content="m", content="Yes")),
        chunk(delta(1, content="lo")),
        chunk(delta(1, "stop")),
        chunk(delta(0, content="!"), delta(0, "length")),
        chunk(usage=USAGE),
    ]
    assert assemble_answer(chunks) == chat_answer(
        chat_choice(0, "Yes!", message={"reasoning_content": "hmm"}, finish_reason="length"),
        chat_choice(1, "Hello"),
    )


def test_stream_without_usage_assembles_without_usage() -> None:
    chunks = [chunk(delta(0, role="assistant", content="ok")), chunk(delta(0, "stop"))]
    assert assemble_answer(chunks) == chat_answer(chat_choice(0, "ok"), usage=None)


def test_completion_logprobs_are_concatenated() -> None:
    def part(text: str, offset: int, finish: str | None) -> dict[str, Any]:
        lp = {"tokens": [text], "token_logprobs": [-1.0], "top_logprobs": None, "text_offset": [offset]}
        return {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}

    chunks = [
        chunk(part("a", 0, None), obj="text_completion"),
        chunk(part("b", 1, "stop"), obj="text_completion"),
    ]
    merged = assemble_answer(chunks)
    assert merged is not None
    assert merged["choices"][0]["text"] == "ab"
    assert merged["choices"][0]["logprobs"] == {
        "tokens": ["a", "b"],
        "token_logprobs": [-1.0, -1.0],
        "top_logprobs": None,
        "text_offset": [0, 1],
    }


TOOL_CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [chunk(delta(0, role="assistant", content="cut off"))],
        [chunk(delta(0, role="assistant", tool_calls=[TOOL_CALL])), chunk(delta(0, "tool_calls"))],
        [chunk(delta(0, role="user", content="x")), chunk(delta(0, "stop"))],
        [
            chunk(delta(0, content="x")),
            chunk({"index": 0, "text": "y", "finish_reason": "stop"}, obj="text_completion"),
        ],
        [{"error": {"message": "upstream failed", "type": "server_error"}}],
        [chunk(delta(0, content="x")), chunk({"delta": {}, "finish_reason": "stop"})],
        [chunk(delta(0, content=["x"])), chunk(delta(0, "stop"))],
        [
            chunk({**delta(0, "stop", content="x"), "logprobs": {"content": [1]}}),
            chunk({**delta(0), "logprobs": 3}),
        ],
        [chunk(usage=USAGE)],
    ],
    ids=[
        "empty",
        "no-finish",
        "tool-calls",
        "not-assistant",
        "mixed-objects",
        "error-chunk",
        "no-index",
        "non-string-delta",
        "bad-logprobs",
        "usage-only",
    ],
)
def test_streams_that_cannot_be_assembled_faithfully(chunks: list[dict[str, Any]]) -> None:
    assert assemble_answer(chunks) is None


def test_empty_tool_calls_list_is_not_a_tool_call() -> None:
    chunks = [chunk(delta(0, role="assistant", content="ok", tool_calls=[])), chunk(delta(0, "stop"))]
    assert assemble_answer(chunks) == chat_answer(chat_choice(0, "ok"), usage=None)


def test_tool_calls_replay_as_one_delta() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = chat_answer(
        chat_choice(0, None, message={"tool_calls": [call]}, finish_reason="tool_calls"), usage=None
    )
    assert answer_as_chunks(body) == [
        chunk(delta(0, role="assistant")),
        chunk(delta(0, tool_calls=[TOOL_CALL])),
        chunk(delta(0, "tool_calls")),
    ]


def test_encode_decode_round_trip() -> None:
    body = chat_answer(chat_choice(0, "深度求索 \ud800"))
    data = encode_answer(body)
    assert "深度求索".encode() in data
    assert decode_answer(data) == body


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"\xff\xfe", b"[]", b'{"object":"list","choices":[]}', b'{"object":"chat.completion"}'],
)
def test_decode_answer_refuses_what_is_not_an_answer(data: bytes) -> None:
    assert decode_answer(data) is None
