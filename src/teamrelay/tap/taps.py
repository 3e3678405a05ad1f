"""Taps: what the relay learns from an answer as its bytes pass to the client.

A tap sees every chunk of one response body. It records token usage, the model and the
object id, holding bounded memory whatever the body's size, and on a stream where the relay
added `include_usage` it removes that addition. Usage seen so far stays on the tap, so a
stream the client abandons still has what passed.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any

from teamrelay.tap.decoding import DECODED_CAP, Decoder, Unreadable, decoder_for
from teamrelay.tap.sse import MAX_EVENT_BYTES, EventSplitter, Piece, parse_event
from teamrelay.tap.streamopts import drop_usage_null, is_usage_chunk
from teamrelay.tap.usage import (
    SCAN_OVERLAP,
    TOOL_MARK,
    ToolTally,
    Usage,
    id_in_head,
    loads,
    model_in_head,
    tally_of,
    usage_from,
    usage_in_tail,
)

MAX_JSON_BYTES = 2 << 20
# Kept of an answer over its cap: its start holds the id and model, its end the usage.
HEAD_BYTES = TAIL_BYTES = 64 * 1024

_USAGE = b'"usage"'
_USAGE_NULL = b'"usage":null'
_DONE = b"[DONE]"
_NO_CHOICES = b'"choices":[]'
# A Responses stream's output item events: a tool call's shows it even when the final event
# is too big to parse (a generated image's).
_ITEM = b"event: response.output_item."


class Tap:
    """Pass-through for bodies that carry no usage (binary, text).

    `unreadable` says the body should have been read and could not be (an encoding the
    relay cannot decode, a corrupt or oversized compressed copy): its usage is unknown.
    """

    __slots__ = ("model", "object_id", "strips", "tier", "tools", "unreadable", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.tools: ToolTally | None = None  # built-in tool calls the answer shows
        self.tier: str | None = None  # the `service_tier` that served it (flex is cheaper)
        self.model: str | None = None
        self.object_id: str | None = None
        self.strips = False
        self.unreadable = False

    @classmethod
    def for_response(
        cls, content_type: str | None, content_encoding: str | None, strip_usage: bool = False
    ) -> Tap:
        """The tap for a body; `strips` tells whether `strip_usage` could be honoured.

        A compressed body is read from a decoded copy and never edited, so a caller that
        adds `include_usage` should ask the upstream for an uncompressed answer.
        """
        kind = _kind(content_type)
        if content_encoding and content_encoding.strip().lower() != "identity":
            if kind is Tap:
                return Tap()
            decoder = decoder_for(content_encoding)
            return DecodedTap(kind(), decoder) if decoder is not None else _unreadable()
        if kind is SseTap:
            return SseTap(strip_usage)
        return kind()

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for `chunk`: the same object unless something is removed."""
        return chunk

    def whole(self, body: bytes) -> bytes:
        """`feed` and `finish` for a body read in one piece."""
        out = self.feed(body)
        rest = self.finish()
        return out + rest if rest else out

    def finish(self) -> bytes:
        """The bytes still held back, once the body has ended (or the client has gone)."""
        return b""

    def _absorb(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        inner = obj.get("response")  # Responses stream events wrap the object they are about
        about = inner if isinstance(inner, dict) else obj
        if self.object_id is None:
            object_id = about.get("id")
            if isinstance(object_id, str):
                self.object_id = object_id
        if self.model is None:
            model = about.get("model")
            if isinstance(model, str):
                self.model = model
        tier = about.get("service_tier")
        if isinstance(tier, str):
            self.tier = tier
        usage = about.get("usage")
        if usage is not None:
            self.usage = usage_from(usage) or self.usage
        if "output" in about or "item" in obj or _searches(about):
            self.tools = tally_of(self.tools, obj, about)


def _searches(answer: dict[str, Any]) -> bool:
    """A Chat Completions answer of a search model (billed per call)."""
    return "choices" in answer and "search" in str(answer.get("model"))


def _unreadable() -> Tap:
    tap = Tap()
    tap.unreadable = True
    return tap


@lru_cache(maxsize=64)
def _kind(content_type: str | None) -> type[Tap]:
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "text/event-stream":
        return SseTap
    if media == "application/json" or media.endswith("+json"):
        return JsonTap
    return Tap


class JsonTap(Tap):
    """Keeps a JSON body up to a cap and reads it once at the end."""

    __slots__ = ("_head", "_max", "_parts", "_size", "_tail")

    def __init__(self, max_bytes: int = MAX_JSON_BYTES) -> None:
        super().__init__()
        self._max = max_bytes
        self._parts: list[bytes] | None = []
        self._size = 0
        self._head = b""
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        parts = self._parts
        if parts is not None:
            self._size += len(chunk)
            if self._size <= self._max:
                parts.append(chunk)
                return chunk
            kept = b"".join(parts)
            self._head = kept[:HEAD_BYTES]
            self._parts = None
            if len(self._head) < HEAD_BYTES:
                self._head += chunk[: HEAD_BYTES - len(self._head)]
            self._scan(kept, 0)
            before = kept[-SCAN_OVERLAP:]
        else:
            before = bytes(self._tail[-SCAN_OVERLAP:])
        self._scan(before + chunk, len(before))
        self._tail += chunk
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[:-TAIL_BYTES]
        return chunk

    def _scan(self, data: bytes, start: int) -> None:
        if TOOL_MARK in data:
            if self.tools is None:
                self.tools = ToolTally()
            self.tools.scan(data, start)

    def whole(self, body: bytes) -> bytes:
        if len(body) > self._max:
            return super().whole(body)
        try:
            obj = loads(body)
        except (ValueError, RecursionError):
            return body
        self._absorb(obj)
        return body

    def finish(self) -> bytes:
        if self._parts is not None:
            body = b"".join(self._parts)
            self._parts = []
            if body:
                with contextlib.suppress(ValueError, RecursionError):
                    self._absorb(loads(body))
        elif self._head:
            self.object_id = id_in_head(self._head)
            self.model = model_in_head(self._head)
            self.usage = usage_in_tail(bytes(self._tail[-TAIL_BYTES:]))
            self._head = b""
            self._tail.clear()
        return b""


class SseTap(Tap):
    """Reads events as they pass; parses only the first one and those that carry usage."""

    __slots__ = ("_seen_first", "_splitter", "_tail")

    def __init__(self, strip_usage: bool = False, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        super().__init__()
        self.strips = strip_usage
        self._splitter = EventSplitter(max_event_bytes)
        self._seen_first = False
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        pieces = self._splitter.feed(chunk)
        if not self.strips:
            for piece in pieces:
                self._read(piece)
            return chunk
        return b"".join([self._edit(piece) for piece in pieces])

    def finish(self) -> bytes:
        self._tail.clear()
        rest = self._splitter.finish()
        if not self.strips or _NO_CHOICES in rest:
            # An unfinished event is discarded by the client; one that starts like the
            # usage chunk would not exist without the relay's addition.
            return b""
        return drop_usage_null(rest) if _USAGE in rest else rest

    def _read(self, piece: Piece) -> Any:
        """Record what the piece tells; return the chunk it carried when it has usage."""
        raw = piece.raw
        if not piece.whole:
            self._tail += raw
            if len(self._tail) > 2 * TAIL_BYTES:
                del self._tail[:-TAIL_BYTES]
            if piece.ends:
                usage = usage_in_tail(bytes(self._tail[-TAIL_BYTES:]))
                self._tail.clear()
                if usage is not None:
                    self.usage = usage
            return None
        if self._seen_first:
            count = raw.count(_USAGE)
            if (not count or count == raw.count(_USAGE_NULL)) and not (
                raw.startswith(_ITEM) and TOOL_MARK in raw
            ):
                return None
        event = parse_event(raw)
        if event is None or event.data == _DONE:
            return None
        self._seen_first = True
        try:
            obj = loads(event.data)
        except (ValueError, RecursionError):
            return None
        self._absorb(obj)
        return obj

    def _edit(self, piece: Piece) -> bytes:
        obj = self._read(piece)
        if not piece.whole:
            return piece.raw
        if isinstance(obj, dict) and is_usage_chunk(obj):
            return b""
        raw = piece.raw
        return drop_usage_null(raw) if _USAGE in raw else raw


class DecodedTap(Tap):
    """Reads a decoded copy of a compressed body with an inner tap; passes the bytes as sent."""

    __slots__ = ("_decoded", "_decoder", "_inner")

    def __init__(self, inner: Tap, decoder: Decoder) -> None:
        super().__init__()
        self._inner = inner
        self._decoder: Decoder | None = decoder
        self._decoded = 0

    def feed(self, chunk: bytes) -> bytes:
        decoder = self._decoder
        if decoder is not None:
            try:
                decoder.decode(chunk, self._take)
            except Unreadable:
                self._give_up()
            self._learn()
        return chunk

    def finish(self) -> bytes:
        decoder = self._decoder
        if decoder is not None:
            try:
                decoder.end(self._take)
                self._inner.finish()
            except Unreadable:
                self._give_up()
            self._learn()
            self._decoder = None
        return b""

    def _take(self, data: bytes) -> None:
        self._decoded += len(data)
        if self._decoded > DECODED_CAP:
            raise Unreadable
        self._inner.feed(data)

    def _give_up(self) -> None:
        self._decoder = None
        self.unreadable = True
        self._inner.usage = None

    def _learn(self) -> None:
        inner = self._inner
        self.usage, self.model, self.object_id = inner.usage, inner.model, inner.object_id
        self.tools, self.tier = inner.tools, inner.tier
