from __future__ import annotations

from typing import Any

import pytest

from factories import make_request, make_tokenizer
from seekserve.engine.detokenizer import IncrementalDetokenizer

TEXT = "Hello world! The capital of France is Paris."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def stream(tokenizer: Any, text: str, **params: Any) -> tuple[IncrementalDetokenizer, list[str]]:
    ids = tokenizer.encode(text)
    request = make_request(prompt=tokenizer.encode("Say:"), **params)
    detok = IncrementalDetokenizer(tokenizer, request)
    deltas = []
    for token_id in ids:
        detok.add_tokens([token_id])
        deltas.append(detok.take_delta(finished=detok.stop_string is not None))
        if detok.stop_string is not None:
            break
    return detok, deltas


def test_incremental_text_equals_full_decode(tokenizer: Any) -> None:
    detok, deltas = stream(tokenizer, TEXT)
    assert detok.text == TEXT
    assert "".join(deltas) + detok.take_delta(finished=True) == TEXT


def test_multibyte_characters_are_never_split(tokenizer: Any) -> None:
    text = "Grüße, 世界! ✓"
    detok, deltas = stream(tokenizer, text)
    assert detok.text == text
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_spanning_tokens_cuts_before_it(tokenizer: Any) -> None:
    assert len(tokenizer.encode("capital of")) > 1
    detok, deltas = stream(tokenizer, TEXT, stop=["capital of"])
    assert detok.stop_string == "capital of"
    assert detok.text == "Hello world! The "
    assert "".join(deltas) == "Hello world! The "  # nothing of the stop string was ever streamed


def test_include_stop_string(tokenizer: Any) -> None:
    detok, _ = stream(tokenizer, TEXT, stop=["France", "Paris"], include_stop_str_in_output=True)
    assert detok.text == "Hello world! The capital of France"


def test_earliest_of_several_stop_strings_wins(tokenizer: Any) -> None:
    detok, _ = stream(tokenizer, TEXT, stop=["is", "world"])
    assert detok.text == "Hello "


@pytest.mark.parametrize(("split", "cut"), [(3, "Gr"), (11, "Grüße, ")])
def test_prompt_ending_inside_a_character_lets_the_output_complete_it(
    tokenizer: Any, split: int, cut: str
) -> None:
    """A token prompt cut inside "ü" (one byte of two) or "世" (two of three): the output's text
    starts with that character, so the prompt's whole characters plus the output are the text."""
    text = "Grüße, 世界!"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids[:split]) == cut + "\ufffd", "the prompt must end inside a character"
    detok = IncrementalDetokenizer(tokenizer, make_request(prompt=ids[:split]))
    deltas = []
    for token_id in ids[split:]:
        detok.add_tokens([token_id])
        deltas.append(detok.take_delta(finished=False))
    assert "".join(deltas) == detok.text == text[len(cut) :]
