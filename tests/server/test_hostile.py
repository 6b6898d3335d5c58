"""Hostile request bodies: every Unicode oddity, absurd limits and sampling values, bodies that are
not JSON, and chat templates that fail or reach for Python internals on some messages.

Each gets a 400 in OpenAI's error shape naming what was wrong (or a correct answer), never a 500 or
a traceback in the server's log, and the server answers a normal request afterwards.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import make_tokenizer
from fuzzing import budget
from seekserve.errors import InvalidRequestError
from seekserve.server.chat import render_prompt
from seekserve.server.protocol import ChatMessage
from server.live import LiveServer, assert_openai_error, engine_loader, post, start_server

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
MEGABYTE = 1 << 20


def chat(content: Any, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, **fields}


def completion(prompt: Any, **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, "max_tokens": 4, **fields}


def raw(text: str) -> bytes:
    return text.encode()


# (path, body, param the 400 names (None: none), words of its message); bytes are sent as they are.
REFUSED: dict[str, tuple[str, Any, str | None, str]] = {
    "lone high surrogate in a message": (
        CHAT, raw('{"messages": [{"role": "user", "content": "a\\ud800b"}]}'), "messages",
        "the text at messages.0.content holds a lone UTF-16 surrogate ('\\ud800') at character 1"),
    "lone low surrogate in a prompt": (
        COMPLETIONS, raw('{"prompt": "\\udfff"}'), "prompt",
        "prompt: the text holds a lone UTF-16 surrogate"),
    "lone surrogate in a content part": (
        CHAT, raw('{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udbff"}]}]}'),
        "messages", "the text at messages.0.content.0.text holds a lone UTF-16 surrogate"),
    "lone surrogate in a stop string": (
        COMPLETIONS, raw('{"prompt": "a", "stop": ["x", "\\ud834"]}'), "stop",
        "the text at stop.1 holds a lone"),
    "lone surrogate in user": (COMPLETIONS, raw('{"prompt": "a", "user": "\\ud800"}'), "user", "surrogate"),
    "1 MB of one character": (
        COMPLETIONS, completion("a" * MEGABYTE), "prompt",
        f"the prompt has {MEGABYTE} tokens but the context"),
    "1 MB of one character in a chat": (CHAT, chat("é" * MEGABYTE), "messages", "but the context holds 128"),
    "1 MB of an astral character": (COMPLETIONS, completion("😀" * (MEGABYTE // 4)), "prompt", "the context"),
    "10k combining marks": (COMPLETIONS, completion("a" + "\u0301" * 10_000), "prompt", "the context"),
    "an empty prompt": (
        COMPLETIONS, completion(""), "prompt", "the prompt is empty: give at least one token"),
    "max_tokens 0": (COMPLETIONS, completion("a", max_tokens=0), "max_tokens", "greater than or equal to 1"),
    "max_tokens 2**63": (
        COMPLETIONS, completion("a", max_tokens=2**63), "max_tokens", "lower max_tokens to at most 127"),
    "max_tokens 10**100": (CHAT, chat("a", max_tokens=10**100), "max_tokens", "lower max_tokens"),
    "max_completion_tokens 2**62": (CHAT, chat("a", max_completion_tokens=2**62), "max_tokens", "context"),
    "temperature -1": (COMPLETIONS, completion("a", temperature=-1), "temperature", "greater than or equal"),
    "temperature NaN": (COMPLETIONS, raw('{"prompt": "a", "temperature": NaN}'), "temperature", "finite"),
    "top_p Infinity": (COMPLETIONS, raw('{"prompt": "a", "top_p": Infinity}'), "top_p", "finite"),
    "top_p -Infinity": (COMPLETIONS, raw('{"prompt": "a", "top_p": -Infinity}'), "top_p", "finite"),
    "temperature 1e400": (COMPLETIONS, raw('{"prompt": "a", "temperature": 1e400}'), "temperature", "finite"),
    "frequency_penalty NaN": (CHAT, raw('{"messages": [{"role": "user", "content": "a"}], '
                                       '"frequency_penalty": NaN}'), "frequency_penalty", "finite"),
    "min_p -0.5": (COMPLETIONS, completion("a", min_p=-0.5), "min_p", "greater than or equal to 0"),
    "top_k -2": (COMPLETIONS, completion("a", top_k=-2), "top_k", "greater than or equal to -1"),
    "repetition_penalty 0": (
        COMPLETIONS, completion("a", repetition_penalty=0), "repetition_penalty", "greater than 0"),
    "seed 2**64": (COMPLETIONS, completion("a", seed=2**64), "seed", "less than or equal"),
    "10k stop strings": (
        COMPLETIONS, completion("a", stop=["x"] * 10_000), "stop",
        "stop: List should have at most 16 items after validation, not 10000"),
    "10k stop token ids": (COMPLETIONS, completion("a", stop_token_ids=[1] * 10_000), "stop_token_ids",
                           "at most 16 items"),
    "n 1000": (COMPLETIONS, completion("a", n=1000), "n", "less than or equal to 128"),
    "n 1000 in a chat": (CHAT, chat("a", n=1000), "n", "less than or equal to 128"),
    "10k prompts in a batch": (
        COMPLETIONS, completion(["a"] * 10_000), None, "10000 prompts with n=1 ask for 10000 choices"),
    "17 prompts with n 128": (COMPLETIONS, completion(["a"] * 17, n=128), None, "at most 2048"),
    "JSON nested 100k deep": (
        COMPLETIONS, raw('{"prompt": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"), None,
        "cannot be read as JSON (it is not UTF-8, nests too deeply"),
    "bytes that are not UTF-8": (COMPLETIONS, b'{"prompt": "a\xff\xfe"}', None, "cannot be read as JSON"),
    "a 5000-digit integer": (COMPLETIONS, raw('{"prompt": "a", "max_tokens": ' + "9" * 5000 + "}"), None,
                             "holds an integer of more than 4300 digits"),
    "a JSON string, not an object": (COMPLETIONS, raw('"prompt"'), None, "valid dictionary"),
    "token id 2**62": (COMPLETIONS, completion([2**62]), "prompt", "outside the vocabulary"),
}  # fmt: skip

ANSWERED: dict[str, tuple[str, Any]] = {
    "NUL inside a prompt": (COMPLETIONS, completion("a\u0000b")),
    "NUL inside a message": (CHAT, chat("\u0000")),
    "bidi, zero-width and noncharacters": (COMPLETIONS, completion("\u202e\u200b\ufeff\uffff\U0010ffff")),
    "a surrogate pair sent escaped": (COMPLETIONS, raw('{"prompt": "\\ud83d\\ude00", "max_tokens": 4}')),
    "a stop string of 100k characters": (COMPLETIONS, completion("a", stop=["x" * 100_000])),
}


@pytest.fixture(scope="module")
def hostile_server(llama_dir: Path) -> Iterator[LiveServer]:
    """The tiny Llama behind a server with the default body limit (16 MiB), so 1 MB prompts reach it."""
    live = start_server(engine_loader(llama_dir))
    yield live
    live.stop()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test if anything was logged at ERROR (a 500 logs its traceback)."""
    with caplog.at_level(logging.ERROR):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def assert_still_serves(server: LiveServer) -> None:
    status, answer = post(server, COMPLETIONS, {"prompt": "Hello", "max_tokens": 3, "ignore_eos": True})
    assert status == 200 and answer["usage"]["completion_tokens"] == 3, answer


@pytest.mark.usefixtures("no_tracebacks")
@pytest.mark.parametrize("name", REFUSED)
def test_hostile_inputs_get_a_clear_400(hostile_server: LiveServer, name: str) -> None:
    path, body, param, words = REFUSED[name]
    status, answer = post(hostile_server, path, body)
    assert status == 400, answer
    error = assert_openai_error(answer, "invalid_request_error", error_code(answer))
    assert error["param"] == param, error
    assert words in error["message"], error
    assert_still_serves(hostile_server)


def error_code(answer: dict[str, Any]) -> str | None:
    """The code a 400 may carry: only a prompt too long for the context has one."""
    code = answer["error"]["code"]
    assert code in (None, "context_length_exceeded"), answer
    return code


@pytest.mark.usefixtures("no_tracebacks")
@pytest.mark.parametrize("name", ANSWERED)
def test_odd_but_valid_text_gets_an_answer(hostile_server: LiveServer, name: str) -> None:
    path, body = ANSWERED[name]
    status, answer = post(hostile_server, path, body)
    assert status == 200, answer
    assert len(answer["choices"]) == 1 and answer["usage"]["completion_tokens"] <= 4
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")


@budget(60)
@given(text=st.text(st.characters(codec=None, exclude_categories=()), max_size=12))
def test_any_unicode_prompt_is_answered_unless_empty_or_holding_a_lone_surrogate(
    hostile_server: LiveServer, text: str
) -> None:
    body = json.dumps({"prompt": text, "max_tokens": 1}).encode()  # a surrogate goes as its \\u escape
    status, answer = post(hostile_server, COMPLETIONS, body)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert status == (400 if lone or not text else 200), (text, answer)


# A template that behaves on ordinary messages: the load-time check passes it; some messages make
# it reach for Python internals, others make one of its expressions fail.
TRAPPED_TEMPLATE = (
    "{% for m in messages %}"
    "{% if 'open sesame' in m['content'] %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endif %}"
    "{% if 'divide' in m['content'] %}{{ 1 / 0 }}{% endif %}"
    "{% if 'append' in m['content'] %}{% set _ = messages.append(m) %}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def trapped_server(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model_dir = tmp_path_factory.mktemp("trapped") / "model"
    shutil.copytree(llama_dir, model_dir)
    (model_dir / "chat_template.jinja").write_text(TRAPPED_TEMPLATE)
    live = start_server(engine_loader(model_dir))
    yield live
    live.stop()


@pytest.mark.usefixtures("no_tracebacks")
@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("open sesame", "reached for Python internals on these messages, which the template sandbox refuses"),
        ("append this", "reached for Python internals"),
        ("divide by zero", "failed on these messages (ZeroDivisionError: division by zero)"),
    ],
)
def test_a_template_that_misbehaves_on_some_messages_gets_400(
    trapped_server: LiveServer, content: str, words: str
) -> None:
    status, answer = post(trapped_server, CHAT, chat(content))
    assert status == 400
    error = assert_openai_error(answer, "invalid_request_error")
    assert error["param"] == "messages" and words in error["message"], error
    status, answer = post(trapped_server, CHAT, chat("Hello"))
    assert status == 200, answer


FRAGMENTS = [
    "{{ ", " }}", "{% ", " %}", "messages", "[0]", "['content']", "['role']", ".__class__", ".__mro__",
    "|length", "|upper", "|tojson", "|join", " + ", " * 2", " / ", " ~ ", "0", "1", "'x'", "(", ")",
    "for m in messages", "endfor", "if ", "else", "endif", "raise_exception('no')", "loop.index",
    "range(3)", "namespace(a=1)", "set x = ", "x", "bos_token", "add_generation_prompt", ".append(1)",
    "lipsum", ".__globals__", " and ", " not ", "{# c #}", "m", "m.content", "macro f()", "endmacro",
    "f()", "dict(a=1)", "[", "]", ",", "'{0.__class__}'.format(m)", "|attr('__dict__')", "is defined",
]  # fmt: skip


@pytest.fixture(scope="module")
def template_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tokenizer(tmp_path_factory.mktemp("fuzzed-template"))


@budget(300)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=14))
def test_any_template_renders_or_is_a_clear_400(template_tokenizer: Any, parts: list[str]) -> None:
    template_tokenizer.chat_template = "".join(parts)
    messages = [ChatMessage(role="user", content="Hi")]
    try:
        text, token_ids = render_prompt(template_tokenizer, messages)
    except InvalidRequestError as e:
        assert e.param == "messages" and "chat template" in str(e)
    else:
        assert isinstance(text, str) and all(isinstance(t, int) for t in token_ids)
