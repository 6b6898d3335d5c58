from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fuzzing import budget
from seekserve.bench.sse import SSEEvent, SSEParser

STREAM = (
    b": a comment the parser skips\n"
    b'data: {"choices": [{"delta": {"content": "h\xc3\xa9llo \xe4\xbd\xa0"}}]}\n'
    b"\n"
    b"event: update\n"
    b"id: 7\n"
    b"data: first line\n"
    b"data:second line\n"
    b"data:  two spaces\n"
    b"retry: 100\n"
    b"\n"
    b"data\n"
    b"\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent('{"choices": [{"delta": {"content": "héllo 你"}}]}'),
    SSEEvent("first line\nsecond line\n two spaces", "update", "7"),
    SSEEvent("", "message", "7"),
    SSEEvent("[DONE]", "message", "7"),
]


def parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [e for piece in pieces for e in parser.feed(piece)]
    return events + parser.flush()


def test_a_whole_stream_gives_every_event_in_order() -> None:
    assert parse([STREAM]) == EXPECTED


def test_every_two_way_split_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, f"cut at byte {cut}"


def test_byte_by_byte_and_uneven_fragments() -> None:
    assert parse([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED
    sizes = itertools.cycle([3, 1, 7, 2, 11])
    pieces, i = [], 0
    while i < len(STREAM):
        n = next(sizes)
        pieces.append(STREAM[i : i + n])
        i += n
    assert parse(pieces) == EXPECTED


def test_crlf_and_cr_line_endings_split_between_the_two_bytes() -> None:
    for ending in (b"\r\n", b"\r"):
        stream = STREAM.replace(b"\n", ending)
        for cut in range(len(stream) + 1):
            assert parse([stream[:cut], stream[cut:]]) == EXPECTED, (ending, cut)


def test_a_lone_cr_followed_by_data_in_the_next_piece_is_not_a_crlf() -> None:
    # "\r" ends the line; the next piece starts a new line, so nothing may be swallowed
    assert parse([b"data: a\r", b"data: b\r\r"]) == [SSEEvent("a\nb")]
    assert parse([b"data: a\rdata: b", b"\n\n"]) == [SSEEvent("a\nb")]


def test_a_byte_order_mark_is_dropped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for cut in range(len(stream) + 1):
        assert parse([stream[:cut], stream[cut:]]) == [SSEEvent("x")]


def test_an_unterminated_last_event_is_returned_by_flush() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2") == [SSEEvent("1")]
    assert parser.flush() == [SSEEvent("2")]
    assert parser.flush() == []


def test_comments_and_unknown_fields_alone_dispatch_nothing() -> None:
    assert parse([b": keep-alive\n\nfoo: bar\n\n: x\n\n"]) == []
    assert SSEParser().feed(b"") == []


_LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
_FIELDS = st.sampled_from([b"data:", b"data: ", b"event: ", b"id: ", b"retry: ", b":", b"", b"\xef\xbb\xbf"])
_STREAMS = st.lists(st.tuples(_FIELDS, st.binary(max_size=8), _LINE_ENDS), max_size=12).map(
    lambda lines: b"".join(f + v.replace(b"\n", b"").replace(b"\r", b"") + e for f, v, e in lines)
) | st.binary(max_size=80)


@budget(300)
@given(stream=_STREAMS, cuts=st.lists(st.integers(0, 100), max_size=8))
def test_any_bytes_in_any_pieces_give_the_events_of_the_whole(stream: bytes, cuts: list[int]) -> None:
    """Whatever a server sends (bare CRs, invalid UTF-8, a BOM, NULs in ids), the parser never raises
    and how the bytes were cut into reads never changes the events."""
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    whole = parse([stream])
    assert parse(pieces) == whole
    assert parse([stream[i : i + 1] for i in range(len(stream))]) == whole
    assert all(isinstance(e.data, str) and isinstance(e.event, str) for e in whole)
