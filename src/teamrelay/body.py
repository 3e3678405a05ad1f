"""The client's request body as it arrives from the ASGI server: counted, capped, streamable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.types import Receive

from teamrelay.errors import RelayError, too_large


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class RequestBody:
    """Read once: either whole (`read`), or a peeked head and then `stream` for the rest.

    `inspector`, when set, sees every chunk that goes upstream and may refuse the request by
    raising RelayError; the refusal is kept in `error` for the forwarder to answer with.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._peeked = b""
        self.received = 0
        self.complete = False
        self.error: RelayError | None = None
        self.inspector: Callable[[bytes], None] | None = None
        self.on_complete: Callable[[], None] | None = None

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
