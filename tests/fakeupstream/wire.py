"""Sending answers the way the fault plan says: paced SSE, truncated bodies, dropped sockets."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aiohttp import web

from .encoding import Encoder
from .errors import ApiError
from .faults import Fault
from .intake import Body
from .records import Received


@dataclass
class Exchange:
    """Per-request context the middleware hands to handlers as `request["exchange"]`."""

    received: Received
    request_id: str
    fault: Fault | None = None
    response: web.StreamResponse | None = None
    # The content coding for plain answers and for SSE streams (None: identity).
    coding: str | None = None
    stream_coding: str | None = None
    body: Body = field(default_factory=lambda: Body(sha256="", size=0, content_type=""))


class Dropped(Exception):
    """The fault plan cut the connection; nothing more can be sent."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("connection dropped by fault plan")
        self.response = response


EXCHANGE = web.RequestKey("exchange", Exchange)


def exchange_of(request: web.Request) -> Exchange:
    return request[EXCHANGE]


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_reply(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return json_reply(error.body(), error.status, headers)


class Streamer:
    """Writes a response body piece by piece, applying pacing and drop faults."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.exchange = exchange_of(request)
        self.sent_bytes = 0
        self.sent_events = 0
        self.encoder: Encoder | None = None

    @classmethod
    async def open(
        cls,
        request: web.Request,
        *,
        content_type: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_length: int | None = None,
        charset: str | None = None,
    ) -> Streamer:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = content_type
        if charset is not None:
            response.charset = charset
        coding = exchange_of(request).stream_coding
        encoder = None
        if coding and content_type == "text/event-stream":
            encoder = Encoder(coding)
            response.headers["Content-Encoding"] = coding
        elif content_length is not None:
            response.content_length = content_length
        await response.prepare(request)
        exchange_of(request).response = response
        streamer = cls(request, response)
        streamer.encoder = encoder
        return streamer

    async def event(self, data: str, event: str | None = None) -> None:
        """Send one SSE event, after the fault's interval unless it is the first."""
        fault = self.exchange.fault
        if fault is not None and fault.sse_interval and self.sent_events:
            await asyncio.sleep(fault.sse_interval)
        prefix = f"event: {event}\n" if event is not None else ""
        await self.write(f"{prefix}data: {data}\n\n".encode())
        self.sent_events += 1
        self.exchange.received.events_sent_at.append(time.monotonic())
        limit = fault.drop_after_events if fault is not None else None
        if limit is not None and self.sent_events >= limit:
            await self.drop()

    async def write(self, data: bytes) -> None:
        fault = self.exchange.fault
        limit = fault.drop_after_bytes if fault is not None else None
        if limit is not None and self.sent_bytes + len(data) >= limit:
            await self._put(data[: limit - self.sent_bytes])
            self.sent_bytes = limit
            await self.drop()
        await self._put(data)
        self.sent_bytes += len(data)

    async def drop(self) -> NoReturn:
        """Close the socket with no terminating chunk (close() still flushes what was written)."""
        transport = self.request.transport
        self.exchange.received.dropped_at = time.monotonic()
        if transport is not None:
            transport.close()
        raise Dropped(self.response)

    async def _put(self, data: bytes) -> None:
        await self._wire(self.encoder.chunk(data) if self.encoder else data)

    async def _wire(self, data: bytes) -> None:
        await self.response.write(data)
        sent = self.exchange.received.sent
        if len(sent) < 1 << 20:
            sent += data

    async def finish(self) -> None:
        if self.encoder is not None:
            await self._wire(self.encoder.end())
        await self.response.write_eof()


async def sse_json_events(
    request: web.Request, events: list[tuple[str | None, Any]], *, done: bool
) -> web.StreamResponse:
    """Stream JSON events as SSE (named when the type is given), then `[DONE]` if asked."""
    streamer = await Streamer.open(
        request,
        content_type="text/event-stream",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
    for name, payload in events:
        await streamer.event(json.dumps(payload, separators=(",", ":")), name)
    if done:
        await streamer.event("[DONE]")
    await streamer.finish()
    return streamer.response
