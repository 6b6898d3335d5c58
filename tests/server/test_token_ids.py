"""`return_token_ids`, `add_generation_prompt` and `continue_final_message`, in vLLM's shapes.

The point of token ids is continuing an answer elsewhere: a completions request whose prompt is
the prompt's ids plus the first k generated ids must give exactly the remaining ids and text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from seekserve import LLM, SamplingParams
from seekserve.server.chat import render_prompt
from seekserve.server.protocol import ChatMessage
from server.live import LiveServer, slow_down

PROMPT = "The capital of France is"
IDS = [40, 41, 42, 43, 44, 45]
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "The capital of France is"},
]
GREEDY: dict[str, Any] = {"model": "tiny", "temperature": 0, "ignore_eos": True}
WITH_IDS: dict[str, Any] = {**GREEDY, "return_token_ids": True}
N = 12
STEP_DELAY_S = 0.01
"""Engine step delay for streaming tests: each token then arrives in a chunk of its own."""


def post(server: LiveServer, path: str, body: dict[str, Any], status: int = 200) -> Any:
    with server.http() as http:
        r = http.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def stream(server: LiveServer, path: str, body: dict[str, Any]) -> list[Any]:
    """The stream's chunks, parsed, without the closing [DONE]."""
    with server.http() as http, http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def engine_answer(offline: LLM, prompt: str | list[int], max_tokens: int) -> tuple[list[int], list[int], str]:
    """(prompt ids, generated ids, text) of the offline engine, greedy."""
    out = offline.generate(prompt, SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True))[0]
    return out.prompt_token_ids, out.outputs[0].token_ids, out.outputs[0].text


def chat_prompt_ids(offline: LLM, messages: list[dict[str, Any]], **flags: bool) -> list[int]:
    return render_prompt(offline.get_tokenizer(), [ChatMessage(**m) for m in messages], **flags)[1]


def test_completions_ids_whole_and_streamed_are_the_engines(
    server: LiveServer, offline: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [engine_answer(offline, p, N) for p in (PROMPT, IDS)]
    assert expected[0][0] == offline.get_tokenizer().encode(PROMPT)
    body = {**WITH_IDS, "prompt": [PROMPT, IDS], "n": 2, "max_tokens": N}
    whole = post(server, "/v1/completions", body)
    for choice in whole["choices"]:
        prompt_ids, ids, text = expected[choice["index"] // 2]
        assert (choice["prompt_token_ids"], choice["token_ids"], choice["text"]) == (prompt_ids, ids, text)

    slow_down(server.engine, STEP_DELAY_S, monkeypatch.setattr)
    ids_of: dict[int, list[int]] = {i: [] for i in range(4)}
    texts = dict.fromkeys(range(4), "")
    prompts_of: dict[int, list[list[int]]] = {i: [] for i in range(4)}
    held_back = 0
    for chunk in stream(server, "/v1/completions", body):
        (choice,) = chunk["choices"]
        index = choice["index"]
        if not ids_of[index]:  # the choice's first chunk
            assert "prompt_token_ids" in choice
        if "prompt_token_ids" in choice:
            prompts_of[index].append(choice["prompt_token_ids"])
        ids_of[index] += choice["token_ids"]
        texts[index] += choice["text"]
        held_back += choice["text"] == "" and choice["token_ids"] != []
    for index in range(4):
        prompt_ids, ids, text = expected[index // 2]
        assert (prompts_of[index], ids_of[index], texts[index]) == ([prompt_ids], ids, text)
    assert held_back > 0, "tokens ending in an incomplete character come with empty text"


def test_completions_continuation_from_any_token_is_exact(server: LiveServer, offline: LLM) -> None:
    whole = post(server, "/v1/completions", {**WITH_IDS, "prompt": PROMPT, "max_tokens": N})["choices"][0]
    prompt_ids, ids = whole["prompt_token_ids"], whole["token_ids"]
    decode = offline.get_tokenizer().decode
    inside_a_character = [k for k in range(1, N) if decode(ids[:k]).endswith("\ufffd")]
    assert inside_a_character, "the answer must have cuts inside a character for this test to cover them"
    for k in range(1, N):
        # Without stop strings the text a stream has sent after k tokens is the whole answer to max_tokens=k.
        head = post(server, "/v1/completions", {**GREEDY, "prompt": PROMPT, "max_tokens": k})["choices"][0]
        body = {**WITH_IDS, "prompt": prompt_ids + ids[:k], "max_tokens": N - k}
        rest = post(server, "/v1/completions", body)["choices"][0]
        assert rest["prompt_token_ids"] == prompt_ids + ids[:k]
        assert rest["token_ids"] == ids[k:], f"k={k}"
        assert head["text"] + rest["text"] == whole["text"], f"k={k}"


def test_chat_ids_whole_and_streamed_and_continued_through_completions(
    server: LiveServer, offline: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt_ids = chat_prompt_ids(offline, MESSAGES)
    _, ids, text = engine_answer(offline, prompt_ids, N)
    body = {**WITH_IDS, "messages": MESSAGES, "max_tokens": N, "n": 2}
    whole = post(server, "/v1/chat/completions", body)
    assert whole["prompt_token_ids"] == prompt_ids
    assert [(c["token_ids"], c["message"]["content"]) for c in whole["choices"]] == [(ids, text)] * 2

    slow_down(server.engine, STEP_DELAY_S, monkeypatch.setattr)
    chunks = stream(server, "/v1/chat/completions", body)
    firsts = [c for c in chunks if "prompt_token_ids" in c]
    assert [c["choices"][0]["index"] for c in firsts] == [0, 1]
    for first in firsts:
        assert first["prompt_token_ids"] == prompt_ids
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert first["choices"][0]["token_ids"] == []
    streamed: dict[int, list[int]] = {0: [], 1: []}
    contents = {0: "", 1: ""}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        streamed[choice["index"]] += choice["token_ids"]
        contents[choice["index"]] += choice["delta"].get("content", "")
    assert streamed == {0: ids, 1: ids} and contents == {0: text, 1: text}

    for k in (1, N // 2, N - 1):
        head = post(server, "/v1/chat/completions", {**GREEDY, "messages": MESSAGES, "max_tokens": k})
        rest = post(
            server, "/v1/completions", {**WITH_IDS, "prompt": prompt_ids + ids[:k], "max_tokens": N - k}
        )
        assert rest["choices"][0]["token_ids"] == ids[k:], f"k={k}"
        assert head["choices"][0]["message"]["content"] + rest["choices"][0]["text"] == text, f"k={k}"


def test_continue_final_message_continues_the_partial_answer(server: LiveServer, offline: LLM) -> None:
    tokenizer = offline.get_tokenizer()
    opened, _ = render_prompt(tokenizer, [ChatMessage(**m) for m in MESSAGES])
    assert opened.endswith("<|assistant|>")
    messages = [*MESSAGES, {"role": "assistant", "content": "Paris is"}]
    body = {**WITH_IDS, "messages": messages, "max_tokens": 8}
    r = post(
        server,
        "/v1/chat/completions",
        {**body, "add_generation_prompt": False, "continue_final_message": True},
    )
    # The prompt ends right after the partial message: no end of its turn, no new turn.
    prompt_ids = tokenizer.encode(opened + "Paris is", add_special_tokens=False)
    assert r["prompt_token_ids"] == prompt_ids
    plain = post(server, "/v1/completions", {**WITH_IDS, "prompt": prompt_ids, "max_tokens": 8})["choices"][0]
    assert r["choices"][0]["token_ids"] == plain["token_ids"]
    assert r["choices"][0]["message"]["content"] == plain["text"]

    closed = post(server, "/v1/chat/completions", {**body, "add_generation_prompt": False})
    assert closed["prompt_token_ids"] == tokenizer.encode(opened + "Paris is\n", add_special_tokens=False)
    assert closed["prompt_token_ids"] == chat_prompt_ids(offline, messages, add_generation_prompt=False)


def test_continue_final_message_needs_the_generation_prompt_off_and_an_assistant_message(
    server: LiveServer,
) -> None:
    partial = [*MESSAGES, {"role": "assistant", "content": "Paris is"}]
    both = (
        "invalid request: continue_final_message=true and add_generation_prompt=true cannot be used together "
        "(one continues the last message, the other opens a new one): send add_generation_prompt=false"
    )
    for flags in (
        {"continue_final_message": True},
        {"continue_final_message": True, "add_generation_prompt": True},
    ):
        error = post(server, "/v1/chat/completions", {**GREEDY, "messages": partial, **flags}, status=400)
        assert error["error"]["message"] == both
        assert error["error"]["type"] == "invalid_request_error"
    flags = {"continue_final_message": True, "add_generation_prompt": False}
    error = post(server, "/v1/chat/completions", {**GREEDY, "messages": MESSAGES, **flags}, status=400)
    assert error["error"]["message"] == (
        "invalid request: continue_final_message=true needs the last message to be the assistant's, "
        "not 'user': end the messages with the partial assistant message to continue"
    )


def test_stop_strings_hold_text_back_but_every_id_arrives_once(
    server: LiveServer, offline: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ids, text = engine_answer(offline, IDS, N)
    stop = text[4:7]
    body = {**WITH_IDS, "prompt": IDS, "max_tokens": N, "stop": [stop]}
    whole = post(server, "/v1/completions", body)["choices"][0]
    assert whole["finish_reason"] == "stop" and whole["text"] == text[: text.index(stop)]
    num_ids = len(whole["token_ids"])
    assert num_ids < N and whole["token_ids"] == ids[:num_ids]  # the ids end with the token that completed it
    slow_down(server.engine, STEP_DELAY_S, monkeypatch.setattr)
    choices = [c["choices"][0] for c in stream(server, "/v1/completions", body)]
    assert [i for c in choices for i in c["token_ids"]] == whole["token_ids"]
    assert "".join(c["text"] for c in choices) == whole["text"]
    # The first characters could begin the stop string: their ids come first, their text later.
    assert choices[0]["text"] == "" and choices[0]["token_ids"] == ids[:1]


def test_every_token_is_a_chunk_while_its_text_is_held_back(
    server: LiveServer, offline: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without token ids too: a client timing the chunks (vLLM's `bench serve`) sees one per step."""
    _, _, text = engine_answer(offline, IDS, N)
    stop = text[4:7]
    body = {**GREEDY, "prompt": IDS, "max_tokens": N, "stop": [stop]}
    whole = post(server, "/v1/completions", {**body, "return_token_ids": True})["choices"][0]
    slow_down(server.engine, STEP_DELAY_S, monkeypatch.setattr)
    chunks = [c["choices"][0] for c in stream(server, "/v1/completions", body)]
    assert len(chunks) == len(whole["token_ids"]) and chunks[0]["text"] == ""
    assert "".join(c["text"] for c in chunks) == whole["text"]
    chat = {**GREEDY, "messages": MESSAGES, "max_tokens": N}
    _, _, chat_text = engine_answer(offline, chat_prompt_ids(offline, MESSAGES), N)
    chat = {**chat, "stop": [chat_text[4:7]]}
    answer = post(server, "/v1/chat/completions", {**chat, "return_token_ids": True})["choices"][0]
    role, *deltas = [c["choices"][0] for c in stream(server, "/v1/chat/completions", chat)]
    assert role["delta"] == {"role": "assistant", "content": ""}
    # A delta for every token but the one that completed the stop string, whose chunk is the finish.
    assert [d["finish_reason"] for d in deltas] == [None] * (len(answer["token_ids"]) - 1) + ["stop"]
    assert deltas[0]["delta"] == {}  # its text is held back: it could begin the stop string
    assert "".join(d["delta"].get("content", "") for d in deltas) == answer["message"]["content"]


def test_without_the_flag_answers_have_no_token_ids(server: LiveServer) -> None:
    chat = {**GREEDY, "messages": MESSAGES, "max_tokens": 4}
    completion = {**GREEDY, "prompt": PROMPT, "max_tokens": 4}
    for flag in ({}, {"return_token_ids": False}, {"return_token_ids": None}):
        whole = post(server, "/v1/completions", {**completion, **flag})
        assert set(whole) == {"id", "object", "created", "model", "choices", "usage"}
        assert set(whole["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}
        whole = post(server, "/v1/chat/completions", {**chat, **flag})
        assert set(whole) == {"id", "object", "created", "model", "choices", "usage"}
        assert set(whole["choices"][0]) == {"index", "message", "logprobs", "finish_reason"}
        for path, body in (("/v1/completions", completion), ("/v1/chat/completions", chat)):
            for chunk in stream(server, path, {**body, **flag}):
                assert "prompt_token_ids" not in chunk
                assert all("token_ids" not in c and "prompt_token_ids" not in c for c in chunk["choices"])
