"""Server-Sent Events cut into events as the bytes pass, holding at most one capped event.

The splitter never changes or loses a byte: every byte fed comes back out exactly once, in
order, inside some `Piece`, so a caller can forward the pieces it keeps and drop the ones it
doesn't. Line ends follow the SSE spec: `\\r\\n`, `\\r` or `\\n`; a blank line ends an event.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_EVENT_BYTES = 1 << 20

# Two line ends in a row. Atomic groups keep `\r\n` one line end: `a\r\nb` has no blank line.
_BLANK_LINE = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# The longest prefix of a blank line that can wait for its rest (`\r\n\r`).
_LOOKBACK = 3
_CR = 0x0D
_LF = 0x0A


class Piece(NamedTuple):
    """Bytes of the stream in order; `whole` marks a complete event within the cap."""

    raw: bytes
    whole: bool = True
    ends: bool = True


class Event(NamedTuple):
    """A dispatched event: its `event:` type (None when unset) and its joined `data:` lines."""

    type: str | None
    data: bytes


class EventSplitter:
    """Cut a byte stream into events; an event over `max_event_bytes` passes in pieces.

    A piece of an oversized event has `whole=False`; its last piece has `ends=True`. Whether
    an event is whole depends only on its length, never on how the stream was chunked.
    """

    __slots__ = ("_buf", "_cr", "_max", "_pending_cr", "_scan", "_skipping", "_tail")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = b""
        self._cr = False
        self._scan = 0
        self._skipping = False
        self._tail = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Piece]:
        if not chunk:
            return []
        out: list[Piece] = []
        if self._pending_cr:
            # An event ended on `\r`; a `\n` arriving now completes that `\r\n`, it is no
            # line of its own. It passes as a piece that parses to nothing.
            self._pending_cr = False
            if chunk[0] == _LF:
                out.append(Piece(chunk[:1]))
                chunk = chunk[1:]
                if not chunk:
                    return out
        if self._skipping:
            chunk = self._skip(chunk, out)
            if not chunk:
                return out
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        pos = self._scan
        if self._cr or b"\r" in chunk:
            search = _BLANK_LINE.search
            while (match := search(buf, pos)) is not None:
                end = match.end()
                raw = buf[start:end] if start or end != len(buf) else buf
                out.append(Piece(raw, len(raw) <= self._max))
                start = pos = end
        else:
            # Only `\n` line ends so far: a blank line is `\n\n`, found at memchr speed.
            find = buf.find
            while (end := find(b"\n\n", pos)) >= 0:
                end += 2
                raw = buf[start:end] if start or end != len(buf) else buf
                out.append(Piece(raw, len(raw) <= self._max))
                start = pos = end
        if start == len(buf):
            self._buf = b""
            self._scan = 0
            self._cr = False
            self._pending_cr = buf[-1] == _CR
        elif len(buf) - start > self._max:
            rest = buf[start:]
            out.append(Piece(rest, False, False))
            self._skipping = True
            self._tail = rest[-_LOOKBACK:]
            self._buf = b""
            self._scan = 0
            self._cr = False
        else:
            self._buf = buf[start:] if start else buf
            self._scan = max(0, len(self._buf) - _LOOKBACK)
            self._cr = b"\r" in self._buf
        return out

    def _skip(self, chunk: bytes, out: list[Piece]) -> bytes:
        """Pass an oversized event's bytes on; return what follows its end, if it ended."""
        data = self._tail + chunk
        match = _BLANK_LINE.search(data)
        if match is None:
            self._tail = data[-_LOOKBACK:]
            out.append(Piece(chunk, False, False))
            return b""
        end = match.end() - len(self._tail)
        out.append(Piece(chunk[:end], False, True))
        self._skipping = False
        self._tail = b""
        if end == len(chunk):
            self._pending_cr = chunk[-1] == _CR
        return chunk[end:]

    def finish(self) -> bytes:
        """The bytes of an unfinished last event (the spec discards it, the client gets it)."""
        rest = self._buf
        self._buf = b""
        self._cr = False
        self._scan = 0
        self._skipping = False
        self._tail = b""
        self._pending_cr = False
        return rest


def parse_event(raw: bytes) -> Event | None:
    """The event in one piece's bytes, or None when it dispatches nothing (no `data:`)."""
    kind: str | None = None
    data: list[bytes] = []
    for line in _LINE_END.split(raw):
        if not line or line[0] == 0x3A:
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            kind = value.decode("utf-8", "replace")
    if not data:
        return None
    return Event(kind, data[0] if len(data) == 1 else b"\n".join(data))
