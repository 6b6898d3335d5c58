from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from seekserve.server.reasoning import ReasoningSplitter, split_reasoning
from server.live import LiveServer, engine_loader, start_server
from server.scripted import make_scripted_model_dir

SCRIPT = "Hello world</think>The answer: 42"
R1_PROMPT = "<|user|>Hi\n<|assistant|><think>\n"
PLAIN_PROMPT = "<|user|>Hi\n<|assistant|>"


def split_in_pieces(text: str, prompt: str, cuts: list[int]) -> tuple[str | None, str]:
    """What a stream delivers when the text arrives cut at `cuts`."""
    splitter = ReasoningSplitter(prompt.rstrip().endswith("<think>"))
    bounds = [0, *cuts, len(text)]
    reasoning, content = "", ""
    for start, end in itertools.pairwise(bounds):
        piece = splitter.feed(text[start:end])
        reasoning, content = reasoning + piece.reasoning, content + piece.content
    rest = splitter.finish()
    return (reasoning + rest.reasoning if splitter.saw_reasoning else None), content + rest.content


@pytest.mark.parametrize(
    ("prompt", "output", "reasoning", "content"),
    [
        (R1_PROMPT, "Let me see.\n</think>\n\nParis.", "Let me see.", "Paris."),  # prompt opened the block
        (PLAIN_PROMPT, "<think>\nLet me see.</think>Paris.", "Let me see.", "Paris."),  # output opens it
        (PLAIN_PROMPT, "  \n<think>a</think>b", "a", "b"),
        (PLAIN_PROMPT, "Paris.", None, "Paris."),  # no reasoning at all
        (PLAIN_PROMPT, "\n Paris </think> x", None, "\n Paris </think> x"),  # passed through untouched
        (R1_PROMPT, "Still thinking when cut off\n", "Still thinking when cut off", ""),
        (R1_PROMPT, "a</think>b</think><think>c", "a", "b</think><think>c"),  # tags inside the answer stay
        (R1_PROMPT, "</think>Paris.", "", "Paris."),
        (PLAIN_PROMPT, "<thi", None, "<thi"),
        (R1_PROMPT, "x </thin", "x </thin", ""),
    ],
)
def test_split_whole_and_at_every_cut(prompt: str, output: str, reasoning: str | None, content: str) -> None:
    assert split_reasoning(output, prompt) == (reasoning, content)
    for cut in range(1, len(output)):
        assert split_in_pieces(output, prompt, [cut]) == (reasoning, content), f"cut at {cut}"
    assert split_in_pieces(output, prompt, list(range(1, len(output)))) == (reasoning, content)


def test_reasoning_is_streamed_as_it_comes_not_held_to_the_end() -> None:
    splitter = ReasoningSplitter(in_reasoning=True)
    assert splitter.feed("Let me think ").reasoning == "Let me think"
    assert splitter.feed("about it </th") == (" about it", "")  # "</th" waits: it may be the closing tag
    assert splitter.feed("ink>\n\nYes") == ("", "Yes")


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scripted_model_dir(tmp_path_factory.mktemp("r1"), SCRIPT)


@pytest.fixture(scope="module")
def r1_server(scripted_dir: Path) -> Iterator[LiveServer]:
    live = start_server(engine_loader(scripted_dir))
    yield live
    live.stop()


def test_reasoning_content_split_in_answers_and_streams(r1_server: LiveServer) -> None:
    client = r1_server.client()
    messages = [{"role": "user", "content": "Hi"}]
    r = client.chat.completions.create(model="tiny", messages=messages, temperature=0)  # type: ignore[arg-type]
    message = r.choices[0].message
    assert message.content == "The answer: 42" and r.choices[0].finish_reason == "stop"
    assert message.model_extra == {"reasoning_content": "Hello world"}
    reasoning, content = "", ""
    stream = client.chat.completions.create(model="tiny", messages=messages, temperature=0, stream=True)  # type: ignore[arg-type]
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            content += delta.content or ""
    assert (reasoning, content) == ("Hello world", "The answer: 42")


def test_reasoning_parser_none_leaves_the_tags_in_content(scripted_dir: Path) -> None:
    live = start_server(engine_loader(scripted_dir), reasoning_parser="none")
    try:
        r = live.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], temperature=0
        )
        assert r.choices[0].message.content == SCRIPT
        assert r.choices[0].message.model_extra == {}
    finally:
        live.stop()
