"""Engine log-probabilities in OpenAI's two shapes: chat (`content` entries) and completions.

A token that is only part of a UTF-8 character (byte-level BPE splits many characters over
several tokens) has no text of its own: its `token` is then written "bytes:\\xe2\\x80" and its
`bytes` hold the raw bytes, which clients join to recover the text.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from seekserve.engine.request import Logprob
from seekserve.server.responses import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob

__all__ = ["LogprobFormatter"]


class LogprobFormatter:
    """Turns token ids into token strings (cached per id) and engine logprobs into response shapes."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._tokens: dict[int, tuple[str, bytes]] = {}

    def token(self, token_id: int) -> str:
        """The text of one token on its own, or "bytes:\\x.." for part of a character."""
        return self._lookup(token_id)[0]

    def _lookup(self, token_id: int) -> tuple[str, bytes]:
        found = self._tokens.get(token_id)
        if found is None:
            found = self._tokens[token_id] = _describe(self._tokenizer, token_id)
        return found

    def _top(self, token_id: int, logprob: float) -> TopLogprob:
        text, raw = self._lookup(token_id)
        return TopLogprob(token=text, logprob=logprob, bytes=list(raw))

    def chat(self, logprobs: list[Logprob]) -> ChatLogprobs:
        content = []
        for lp in logprobs:
            text, raw = self._lookup(lp.token_id)
            content.append(
                TokenLogprob(
                    token=text,
                    logprob=lp.logprob,
                    bytes=list(raw),
                    top_logprobs=[self._top(tid, value) for tid, value in lp.top],
                )
            )
        return ChatLogprobs(content=content)

    def completion(self, logprobs: list[Logprob], text_offset: int) -> CompletionLogprobs:
        """Completions' shape; `text_offset` is where the first token starts in the choice's text."""
        tokens, values, tops, offsets = [], [], [], []
        for lp in logprobs:
            text = self.token(lp.token_id)
            tokens.append(text)
            values.append(lp.logprob)
            top = {self.token(tid): value for tid, value in lp.top}
            top.setdefault(text, lp.logprob)  # the sampled token is always listed, as OpenAI does
            tops.append(top)
            offsets.append(text_offset)
            text_offset += len(text)
        return CompletionLogprobs(
            tokens=tokens, token_logprobs=values, top_logprobs=tops, text_offset=offsets
        )


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_level_decoder() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's): one printable character stands for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _describe(tokenizer: Any, token_id: int) -> tuple[str, bytes]:
    """(token text for the response, the token's raw bytes)."""
    text: str = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text, text.encode("utf-8")
    piece = tokenizer.convert_ids_to_tokens(token_id)
    raw: bytes | None = None
    if isinstance(piece, str):
        match = _BYTE_TOKEN.fullmatch(piece)
        table = _byte_level_decoder()
        if match:  # SentencePiece byte fallback
            raw = bytes([int(match.group(1), 16)])
        elif piece and all(c in table for c in piece):
            raw = bytes(table[c] for c in piece)
    if raw is None:
        return text, text.encode("utf-8")
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), raw
