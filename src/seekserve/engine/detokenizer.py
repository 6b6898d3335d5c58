"""Incremental detokenization and stop strings.

Text is decoded over a short sliding window of tokens (seeded with the prompt's last tokens, so
a leading space or a multi-byte character joins correctly): the new text of a step is the
window's decoding minus the decoding of its older part, held back while it ends in an
incomplete character. Stop strings are searched in the newly added text plus the tail that a
stop string spanning tokens could start in; the text is cut before the match.

A prompt that ends in an incomplete character (a token prompt continuing an earlier output that
was cut while its last character was held back) leaves those last tokens unread, so the first new
text completes the character: the earlier output's text plus this one's is the text of both
outputs' tokens decoded together, as if one request had generated them all.

While streaming, the last `max_stop_len - 1` characters are held back until it is clear they
do not begin a stop string, so no client ever sees part of a stop string.
"""

from __future__ import annotations

from typing import Any

from seekserve.engine.request import Request

__all__ = ["IncrementalDetokenizer"]

_PROMPT_CONTEXT = 6
"""Prompt tokens decoded with the first output tokens, for their spacing."""


class IncrementalDetokenizer:
    """Per-request decoding state. `text` is the output so far (stop string removed once matched)."""

    def __init__(self, tokenizer: Any, request: Request) -> None:
        self.tokenizer = tokenizer
        self.params = request.params
        context = request.prompt_token_ids[-_PROMPT_CONTEXT:]
        self._ids: list[int] = list(context)
        self._prefix_offset = 0
        self._read_offset = self._complete_prefix_len(context)
        self.text = ""
        self._num_sent = 0
        self.stop_string: str | None = None

    def add_tokens(self, token_ids: list[int]) -> None:
        """Append newly generated tokens; sets `stop_string` when one appears in the text."""
        for token_id in token_ids:
            self._ids.append(token_id)
            new = self._decode_new()
            if new:
                self.text += new
                if self._check_stop(len(new)):
                    return

    def _complete_prefix_len(self, context: list[int]) -> int:
        """Tokens of `context` before its trailing ones that end in an incomplete character."""
        skip = self.params.skip_special_tokens
        end = len(context)
        while end > 0 and self.tokenizer.decode(context[:end], skip_special_tokens=skip).endswith("\ufffd"):
            end -= 1
        return end

    def _decode_new(self) -> str:
        skip = self.params.skip_special_tokens
        prefix = self.tokenizer.decode(
            self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=skip
        )
        full = self.tokenizer.decode(self._ids[self._prefix_offset :], skip_special_tokens=skip)
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full[len(prefix) :]

    def _check_stop(self, num_new_chars: int) -> bool:
        stops = self.params.stop
        if not stops:
            return False
        start = max(0, len(self.text) - num_new_chars - self.params.max_stop_len + 1)
        best: tuple[int, str] | None = None
        for stop in stops:
            index = self.text.find(stop, start)
            if index >= 0 and (best is None or index < best[0]):
                best = (index, stop)
        if best is None:
            return False
        index, stop = best
        self.text = (
            self.text[: index + len(stop)] if self.params.include_stop_str_in_output else self.text[:index]
        )
        self.stop_string = stop
        return True

    @property
    def sent_text(self) -> str:
        """The text handed out so far by `take_delta`."""
        return self.text[: self._num_sent]

    def take_delta(self, finished: bool) -> str:
        """Text not yet handed out; while unfinished, keeps back what could start a stop string."""
        end = len(self.text)
        if not finished and self.params.stop:
            end = max(self._num_sent, end - self.params.max_stop_len + 1)
        delta = self.text[self._num_sent : end]
        self._num_sent = end
        return delta
