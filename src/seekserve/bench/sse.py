"""An incremental parser for server-sent events (the `text/event-stream` format of streaming APIs).

Bytes arrive in arbitrary pieces: an event, a line, a `\\r\\n` pair or a multi-byte UTF-8
character may be split across reads. `SSEParser.feed` takes each piece as it comes and returns
the events completed by it, following the WHATWG event-stream rules: lines end in `\\n`, `\\r` or
`\\r\\n`; a blank line dispatches the event; `data:` lines join with `\\n`; lines starting with `:`
are comments; a leading byte-order mark is dropped. `flush` hands over an event the server left
unterminated when it closed the stream (the standard discards it; a benchmark should not lose a
token to a server that forgot the final blank line).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event."""

    data: str
    """The `data:` lines of the event, joined with newlines."""

    event: str = "message"
    """The `event:` field, "message" when absent."""

    id: str | None = None
    """The last `id:` seen on the stream so far, if any."""


class SSEParser:
    """Turns a byte stream into `SSEEvent`s; one instance per stream, not thread-safe."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._skip_lf = False  # the previous piece ended in "\r": a leading "\n" belongs to it
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse the next piece of the stream; return the events it completes, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        lines = buffer.splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buffer = lines.pop()
        else:
            self._buffer = b""
            self._skip_lf = bool(lines) and lines[-1].endswith(b"\r")
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: return the event left without its closing blank line, if any."""
        events: list[SSEEvent] = []
        if self._buffer:
            self._line(self._buffer.decode("utf-8", errors="replace"))
            self._buffer = b""
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent("\n".join(self._data), self._event or "message", self._last_id)
        self._data = []
        self._event = ""
        return event
