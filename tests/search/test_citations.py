"""Citation marks into url_citation annotations, whole and streamed."""

from __future__ import annotations

from seekserve.search.citations import CitationStream, UrlCitation, find_citations
from seekserve.search.grounding import Source
from seekserve.search.prompt import PromptStyle

SOURCES = [
    Source(1, "https://a.example/1", "One", "", 1, ()),
    Source(2, "https://b.example/2", "Two", "", 3, ()),
]
ANSWER = (
    "The bridge reopened on Tuesday[citation:1]. It has 412 rivets[citation:2][citation:1], "
    "see [citation:3] 桥[citation: 2]"
)


def test_marks_become_annotations_at_their_offsets() -> None:
    found = find_citations(ANSWER, SOURCES, PromptStyle.DEEPSEEK)
    assert len(ANSWER) == 118
    assert [(c.start_index, c.end_index, c.number) for c in found] == [
        (30, 42, 1),
        (61, 73, 2),
        (73, 85, 1),
        (105, 118, 2),  # the end of the text
    ]
    assert all(ANSWER[c.start_index : c.end_index].startswith("[citation:") for c in found)
    assert found[0].to_openai() == {
        "type": "url_citation",
        "url_citation": {"start_index": 30, "end_index": 42, "title": "One", "url": "https://a.example/1"},
    }


def test_numbered_style_reads_bare_numbers() -> None:
    text = "Leaves at 7:15 [2]. Costs [1][citation:1], not [0] nor [x]."
    found = find_citations(text, SOURCES, PromptStyle.NUMBERED)
    assert [text[c.start_index : c.end_index] for c in found] == ["[2]", "[1]", "[citation:1]"]
    assert find_citations(text, SOURCES, PromptStyle.DEEPSEEK) == [
        UrlCitation(29, 41, "https://a.example/1", "One", 1)
    ]


def test_stream_finds_the_same_citations_at_every_split() -> None:
    whole = find_citations(ANSWER, SOURCES, PromptStyle.DEEPSEEK)
    for size in range(1, 20):
        stream = CitationStream(SOURCES, PromptStyle.DEEPSEEK)
        for i in range(0, len(ANSWER), size):
            stream.feed(ANSWER[i : i + size])
        assert stream.finish() == whole, size
    for cut in range(len(ANSWER)):
        stream = CitationStream(SOURCES, PromptStyle.DEEPSEEK)
        stream.feed(ANSWER[:cut])
        stream.feed(ANSWER[cut:])
        assert stream.finish() == whole, cut


def test_stream_holds_back_only_a_possible_mark() -> None:
    stream = CitationStream(SOURCES, PromptStyle.NUMBERED)
    assert stream.feed("abc [") == [] and stream.feed("2") == []
    assert stream.feed("] and [") == [UrlCitation(4, 7, "https://b.example/2", "Two", 2)]
    assert stream.feed("a long bracket that never closes") == []
    assert stream.feed("[1") == [] and stream.finish() == [UrlCitation(4, 7, "https://b.example/2", "Two", 2)]
