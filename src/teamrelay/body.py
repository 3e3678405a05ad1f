"""The client's request body as it arrives from the ASGI server: counted, capped, streamable;
and the rule for the JSON bodies the relay reads: UTF-8 that parses, or a 400.

Readers of bodies fail closed: a step that needs a JSON body and cannot read it refuses the
request rather than taking it as "nothing there" (a UTF-16 body hides every id from a scan
for ASCII bytes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Receive

from teamrelay.errors import RelayError, too_large

if TYPE_CHECKING:
    from teamrelay.multipart import FormHead

_UTF8_BOM = b"\xef\xbb\xbf"


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class RequestBody:
    """Read once: either whole (`read`), or a peeked head and then `stream` for the rest.

    `inspector`, when set, sees every chunk that goes upstream and may refuse the request by
    raising RelayError; the refusal is kept in `error` for the forwarder to answer with.
    `form`, for a multipart body a step read, is its head (the fields before the first file).
    """

    def __init__(self, receive: Receive, limit: int, kind: str = "json") -> None:
        self._receive = receive
        self.kind = kind
        self._limit = limit
        self._peeked = b""
        self.received = 0
        self.complete = False
        self.error: RelayError | None = None
        self.inspector: Callable[[bytes], None] | None = None
        self.on_complete: Callable[[], None] | None = None
        self.form: FormHead | None = None

    async def _next(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if self.received > self._limit:
            self.error = too_large(self._limit)
            raise self.error
        if not message.get("more_body", False):
            self.complete = True
        return chunk

    async def read(self) -> bytes:
        """Whole body, for JSON small enough to read for policy (then sent as these bytes)."""
        parts = [self._peeked]
        while not self.complete:
            parts.append(await self._next())
        return b"".join(parts)

    async def peek(self, enough: Callable[[bytes], bool], limit: int) -> bytes:
        """Read ahead until `enough(head)`, the body ends, or `limit` bytes; kept for `stream`."""
        while not self.complete and len(self._peeked) < limit and not enough(self._peeked):
            self._peeked += await self._next()
        return self._peeked

    async def stream(self) -> AsyncIterator[bytes]:
        """Chunks as they arrive, for multipart and large bodies that must not be buffered."""
        try:
            if self._peeked:
                self._inspect(self._peeked)
                yield self._peeked
            while not self.complete:
                chunk = await self._next()
                if chunk:
                    self._inspect(chunk)
                    yield chunk
            if self.on_complete is not None:
                self.on_complete()
        except RelayError as error:
            self.error = error
            raise

    def _inspect(self, chunk: bytes) -> None:
        if self.inspector is not None:
            self.inspector(chunk)


def unreadable_json(reason: str) -> RelayError:
    return RelayError(
        400, f"We could not parse the JSON body of your request: {reason}", code="invalid_json"
    )


def check_json_text(body: bytes) -> None:
    """Refuse JSON that is not UTF-8 without a byte order mark (RFC 8259 §8.1).

    A JSON text always holds an ASCII character (a quote, a bracket, a digit or a letter of
    `true`), which UTF-16 and UTF-32 spell with a NUL byte, and a NUL byte can never appear
    in UTF-8 JSON (control characters must be escaped): one memchr tells them apart. A UTF-8
    byte order mark is refused too: RFC 8259 forbids sending one, and readers that decode
    before parsing would fail on it. Both checks cost nothing on an ASCII body.
    """
    if b"\x00" in body:
        raise unreadable_json("it is not UTF-8 (UTF-16 and UTF-32 are not accepted).")
    if not body.isascii():
        if body.startswith(_UTF8_BOM):
            raise unreadable_json("it starts with a byte order mark; send UTF-8 without one.")
        try:
            body.decode()
        except UnicodeDecodeError:
            raise unreadable_json("it is not valid UTF-8.") from None


def parse_json(body: bytes, **options: Any) -> Any:
    """`json.loads` of a body a step must read; a 400 when it cannot be read."""
    check_json_text(body)
    try:
        return json.loads(body, **options)
    except RecursionError:
        raise unreadable_json("it is nested too deeply.") from None
    except ValueError as error:
        raise unreadable_json(f"{error}.") from None
