"""An answer's citation marks as OpenAI `url_citation` annotations.

    {"type": "url_citation",
     "url_citation": {"start_index": S, "end_index": E, "title": ..., "url": ...}}

S and E index the answer's text (its `content`, in code points, as Python and JavaScript strings
count BMP text): text[S:E] is the mark itself (`[citation:2]`, or `[2]` for the numbered style), E
exclusive. A mark whose number names no source (0, N+1) is left alone. `CitationStream` finds the
same annotations in a streamed answer, fed chunk by chunk, a mark split across chunks included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seekserve.search.grounding import Source
from seekserve.search.prompt import PromptStyle

__all__ = ["CitationStream", "UrlCitation", "find_citations"]

_PATTERNS = {
    PromptStyle.DEEPSEEK: re.compile(r"\[citation:\s?(\d{1,3})\]"),
    PromptStyle.NUMBERED: re.compile(r"\[(?:citation:\s?)?(\d{1,3})\]"),
}
_MAX_MARK_CHARS = len("[citation: 999]")


@dataclass(frozen=True)
class UrlCitation:
    """One citation mark of the answer and the source it names."""

    start_index: int
    end_index: int
    """Exclusive: text[start_index:end_index] is the mark."""
    url: str
    title: str
    number: int
    """The source's number (X of the mark)."""

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "url_citation",
            "url_citation": {
                "start_index": self.start_index,
                "end_index": self.end_index,
                "title": self.title,
                "url": self.url,
            },
        }


def _scan(text: str, offset: int, sources: Sequence[Source], pattern: re.Pattern[str]) -> list[UrlCitation]:
    found = []
    for match in pattern.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= len(sources):
            source = sources[number - 1]
            start, end = offset + match.start(), offset + match.end()
            found.append(UrlCitation(start, end, source.url, source.title, number))
    return found


def find_citations(text: str, sources: Sequence[Source], style: PromptStyle) -> list[UrlCitation]:
    """The citations of a whole answer, in text order. `sources[i]` is source number i + 1."""
    return _scan(text, 0, sources, _PATTERNS[style])


class CitationStream:
    """find_citations over a text given in chunks: feed() each chunk in order, then finish().

    Only an unclosed `[` of at most a mark's length at the end of what was fed is held back, so
    memory stays constant whatever the answer's length."""

    def __init__(self, sources: Sequence[Source], style: PromptStyle) -> None:
        self.sources = sources
        self._pattern = _PATTERNS[style]
        self._pending = ""
        self._offset = 0
        """Characters fed before `_pending`."""
        self.citations: list[UrlCitation] = []

    def feed(self, chunk: str) -> list[UrlCitation]:
        """The citations completed by `chunk` (also kept in `citations`)."""
        text = self._pending + chunk
        cut = len(text)
        bracket = text.rfind("[")
        if bracket >= 0 and "]" not in text[bracket:] and len(text) - bracket < _MAX_MARK_CHARS:
            cut = bracket
        found = _scan(text[:cut], self._offset, self.sources, self._pattern)
        self._offset += cut
        self._pending = text[cut:]
        self.citations += found
        return found

    def finish(self) -> list[UrlCitation]:
        """All citations of the text fed (a held-back tail is no mark: it never closed)."""
        self._offset += len(self._pending)
        self._pending = ""
        return list(self.citations)
