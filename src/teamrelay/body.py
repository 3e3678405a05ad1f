"""The client's request body as it arrives from the ASGI server: counted, capped, streamable."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.types import Receive

from teamrelay.errors import RelayError, too_large


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class RequestBody:
    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.received = 0
        self.complete = False
        self.error: RelayError | None = None

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
        parts = []
        while not self.complete:
            parts.append(await self._next())
        return b"".join(parts)

    async def stream(self) -> AsyncIterator[bytes]:
        """Chunks as they arrive, for multipart and large bodies that must not be buffered."""
        while not self.complete:
            chunk = await self._next()
            if chunk:
                yield chunk
