"""Splitting DeepSeek-R1-style output into reasoning and answer at `<think>...</think>`.

R1 writes its chain of thought between `<think>` and `</think>`, then the answer. Its newer chat
templates end the generation prompt with "<think>\\n", so the output then has no opening tag:

    prompt ends "<think>\\n"   output: "Let me see.\\n</think>\\n\\nParis."    reasoning, then answer
    prompt ends otherwise      output: "<think>\\nLet me see.</think>Paris."   the same, tag written out
    prompt ends otherwise      output: "Paris."                               answer only

The splitter is fed text as it streams; a tag may arrive split across deltas, so any tail that
could still become a tag is held back until the next delta (or `finish`). Whitespace around the
tags is dropped, as DeepSeek's API does: reasoning and answer never start with the newlines the
model puts after a tag, and reasoning does not end with the ones before `</think>`. Output with
no reasoning section, and the answer once it has begun, pass through unchanged, tags included.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "THINK_END",
    "THINK_START",
    "ReasoningSplitter",
    "Split",
    "prompt_opens_reasoning",
    "split_reasoning",
]

THINK_START = "<think>"
THINK_END = "</think>"


class Split(NamedTuple):
    reasoning: str
    content: str


class _State(enum.Enum):
    START = "start"
    """Only whitespace so far: the output may still open with <think>."""
    REASONING = "reasoning"
    CONTENT = "content"


def prompt_opens_reasoning(prompt: str) -> bool:
    """True when the prompt itself opens the reasoning block (R1's chat template does)."""
    return prompt.rstrip().endswith(THINK_START)


def _partial_tag_len(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ReasoningSplitter:
    """Incremental splitter for one completion; `feed` each delta, then `finish` once."""

    def __init__(self, in_reasoning: bool) -> None:
        self._state = _State.REASONING if in_reasoning else _State.START
        self._pending = ""
        """Text received but not yet handed out (a possible partial tag, or held whitespace)."""
        self._section_started = False
        """Whether the current section has handed out any text (leading whitespace is dropped)."""
        self.saw_reasoning = in_reasoning
        """Whether the output had a reasoning section at all (for reasoning_content=None vs "")."""

    def feed(self, text: str) -> Split:
        """The reasoning and content that `text` (the next delta) completes."""
        self._pending += text
        reasoning: list[str] = []
        content: list[str] = []
        while self._pending:
            if self._state is _State.START and not self._step_start():
                break
            if self._state is _State.REASONING and not self._step_reasoning(reasoning):
                break
            if self._state is _State.CONTENT:
                content.append(self._emit(self._pending))
                self._pending = ""
        return Split("".join(reasoning), "".join(content))

    def finish(self) -> Split:
        """Whatever is still held back, at the end of the output."""
        held, self._pending = self._pending, ""
        if self._state is _State.START:
            return Split("", held)  # whitespace or a partial "<think": plain output
        if self._state is _State.REASONING:
            return Split(self._emit(held.rstrip()), "")
        return Split("", self._emit(held))

    def _step_start(self) -> bool:
        """Decide whether the output opens with <think>; False while it cannot be told yet."""
        stripped = self._pending.lstrip()
        if stripped.startswith(THINK_START):
            self._pending = stripped[len(THINK_START) :]
            self._state = _State.REASONING
            self.saw_reasoning = True
            return True
        if THINK_START.startswith(stripped):
            return False  # only whitespace or the beginning of the tag so far
        self._state = _State.CONTENT
        self._section_started = True  # no reasoning: the output is passed on exactly as written
        return True

    def _step_reasoning(self, out: list[str]) -> bool:
        """Hand out reasoning up to </think>; False when the rest must wait for more text."""
        end = self._pending.find(THINK_END)
        if end >= 0:
            out.append(self._emit(self._pending[:end].rstrip()))
            self._pending = self._pending[end + len(THINK_END) :]
            self._state = _State.CONTENT
            self._section_started = False
            return True
        keep = _partial_tag_len(self._pending, THINK_END)
        ready = self._pending[: len(self._pending) - keep]
        body = ready.rstrip()
        keep += len(ready) - len(body)  # trailing whitespace waits: it may precede </think>
        out.append(self._emit(body))
        self._pending = self._pending[len(self._pending) - keep :]
        return False

    def _emit(self, text: str) -> str:
        if not self._section_started:
            text = text.lstrip()
            self._section_started = bool(text)
        return text


def split_reasoning(text: str, prompt: str) -> tuple[str | None, str]:
    """(reasoning_content, content) of a whole output; reasoning is None when there was none."""
    splitter = ReasoningSplitter(prompt_opens_reasoning(prompt))
    first, last = splitter.feed(text), splitter.finish()
    reasoning = first.reasoning + last.reasoning if splitter.saw_reasoning else None
    return reasoning, first.content + last.content
