from __future__ import annotations

from typing import Any

from seekserve import LLM, SamplingParams
from seekserve.server.chat import render_prompt
from seekserve.server.protocol import ChatMessage
from server.live import LiveServer

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "The capital of France is"},
]
GREEDY: dict[str, Any] = {"temperature": 0, "extra_body": {"ignore_eos": True}}


def expected(offline: LLM, messages: list[Any], max_tokens: int) -> tuple[list[int], str]:
    """Prompt ids and greedy text of the offline engine for the same conversation."""
    _, ids = render_prompt(offline.get_tokenizer(), [ChatMessage(**m) for m in messages])
    out = offline.generate(ids, SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True))[0]
    return ids, out.outputs[0].text


def test_answer_matches_the_offline_engine_in_openai_shape(server: LiveServer, offline: LLM) -> None:
    ids, text = expected(offline, MESSAGES, 12)
    r = server.client().chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, **GREEDY)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "tiny"
    assert r.created > 0 and len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0 and choice.finish_reason == "length"
    assert choice.message.role == "assistant" and choice.message.content == text
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        len(ids),
        12,
        len(ids) + 12,
    )
    server.wait_idle()


def test_stream_carries_the_same_text_and_usage_when_asked(server: LiveServer, offline: LLM) -> None:
    ids, text = expected(offline, MESSAGES, 10)
    client = server.client()
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (len(ids), 10)
    plain = list(
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, stream=True, **GREEDY)
    )
    assert all(c.usage is None and c.choices for c in plain)


def test_stop_string_cuts_the_text_before_it(server: LiveServer, offline: LLM) -> None:
    _, text = expected(offline, MESSAGES, 24)
    stop = text[6:9]
    cut = text.index(stop)
    client = server.client()
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, stop=[stop], **GREEDY)
    assert r.choices[0].message.content == text[:cut] and r.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=24, stop=stop, stream=True, **GREEDY
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text[:cut]


def test_n_choices_with_a_seed_are_reproducible(server: LiveServer) -> None:
    client = server.client()

    def ask(seed: int) -> list[str]:
        r = client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=16,
            n=3,
            seed=seed,
            temperature=1.0,
            extra_body={"ignore_eos": True},
        )
        assert [c.index for c in r.choices] == [0, 1, 2]
        assert r.usage is not None and r.usage.completion_tokens == 48
        return [c.message.content or "" for c in r.choices]

    first = ask(7)
    assert ask(7) == first
    assert ask(8) != first
    assert len(set(first)) == 3, "each choice samples with its own seed"
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=16, n=3, seed=7, temperature=1.0, stream=True,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    texts = ["", "", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == first


def test_logprobs_in_chat_shape(server: LiveServer) -> None:
    r = server.client().chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, logprobs=True, top_logprobs=3, **GREEDY
    )
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and len(logprobs.content) == 6
    for entry in logprobs.content:
        assert len(entry.top_logprobs) == 3
        values = [t.logprob for t in entry.top_logprobs]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        # greedy picks the most likely token
        assert (entry.token, entry.logprob) == (entry.top_logprobs[0].token, values[0])
        raw = bytes(entry.bytes or [])
        if entry.token.startswith("bytes:"):  # part of a UTF-8 character
            assert entry.token == "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        else:
            assert raw == entry.token.encode()
    plain = server.client().chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, **GREEDY)
    assert plain.choices[0].logprobs is None


def test_content_parts_developer_role_and_max_completion_tokens(server: LiveServer, offline: LLM) -> None:
    _, text = expected(offline, [{"role": "system", "content": "a\nb"}, {"role": "user", "content": "hi"}], 5)
    r = server.client().chat.completions.create(
        model="tiny",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "user", "content": "hi"},
        ],
        max_tokens=30,
        max_completion_tokens=5,
        **GREEDY,
    )
    assert r.choices[0].message.content == text
    assert r.usage is not None and r.usage.completion_tokens == 5


def test_models_endpoint_lists_the_served_model(server: LiveServer) -> None:
    client = server.client()
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    assert models[0].owned_by == "seekserve"
    assert models[0].model_extra == {"max_model_len": 128, "chat_template": "model"}
    assert client.models.retrieve("tiny").id == "tiny"
