from __future__ import annotations

from typing import Any

from seekserve import LLM, SamplingParams
from server.live import LiveServer

PROMPT = "The capital of France is"
IDS = [40, 41, 42, 43, 44, 45]
GREEDY: dict[str, Any] = {"temperature": 0, "extra_body": {"ignore_eos": True}}


def greedy_text(offline: LLM, prompt: str | list[int], max_tokens: int) -> str:
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    return offline.generate(prompt, params)[0].outputs[0].text


def test_text_prompt_matches_the_offline_engine(server: LiveServer, offline: LLM) -> None:
    r = server.client().completions.create(model="tiny", prompt=PROMPT, max_tokens=10, **GREEDY)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "tiny"
    assert r.choices[0].text == greedy_text(offline, PROMPT, 10)
    assert r.choices[0].finish_reason == "length"
    num_prompt = len(offline.get_tokenizer().encode(PROMPT))
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (num_prompt, 10)


def test_default_max_tokens_is_sixteen(server: LiveServer) -> None:
    r = server.client().completions.create(model="tiny", prompt=IDS, **GREEDY)
    assert r.usage is not None and r.usage.completion_tokens == 16 and r.usage.prompt_tokens == len(IDS)


def test_batch_of_prompts_with_n_gives_choices_in_prompt_order(server: LiveServer, offline: LLM) -> None:
    r = server.client().completions.create(model="tiny", prompt=[PROMPT, IDS], n=2, max_tokens=6, **GREEDY)
    expected = [greedy_text(offline, PROMPT, 6)] * 2 + [greedy_text(offline, IDS, 6)] * 2
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == expected
    assert r.usage is not None and r.usage.completion_tokens == 24


def test_stream_of_a_batch_reassembles_to_the_whole_answer(server: LiveServer) -> None:
    client = server.client()
    whole = client.completions.create(model="tiny", prompt=[PROMPT, IDS], max_tokens=8, **GREEDY)
    texts = ["", ""]
    finishes: dict[int, str] = {}
    chunks = list(
        client.completions.create(
            model="tiny",
            prompt=[PROMPT, IDS],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == [c.text for c in whole.choices]
    assert finishes == {0: "length", 1: "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_echo_puts_the_prompt_first(server: LiveServer) -> None:
    client = server.client()
    plain = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=5, **GREEDY)
    echoed = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=5, echo=True, **GREEDY)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    streamed = client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=5, echo=True, stream=True, **GREEDY
    )
    assert "".join(c.choices[0].text for c in streamed) == echoed.choices[0].text


def test_logprobs_in_completions_shape(server: LiveServer) -> None:
    r = server.client().completions.create(model="tiny", prompt=IDS, max_tokens=5, logprobs=2, **GREEDY)
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None and logprobs.top_logprobs is not None
    assert len(logprobs.tokens) == len(logprobs.token_logprobs or []) == len(logprobs.top_logprobs) == 5
    offsets = logprobs.text_offset or []
    assert offsets[0] == 0
    assert offsets == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(5)]
    for token, value, top in zip(
        logprobs.tokens, logprobs.token_logprobs or [], logprobs.top_logprobs, strict=True
    ):
        assert token in top and top[token] == value  # greedy: the sampled token is the likeliest
        assert 1 <= len(top) <= 2 and max(top.values()) == value
