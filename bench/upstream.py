"""The fast upstream: a raw asyncio protocol on uvloop + httptools, so it is never the bottleneck.

It answers three things, whatever the method:
- `POST /v1/chat/completions`: the ~1 KB JSON answer, or (body contains `"stream":true`) an SSE
  stream of chunk events, the first sent with the headers and the rest `--sse-gap-ms` apart;
- `POST /v1/files`: reads the body as it arrives, hashing and discarding it, and answers with the
  byte count and sha256 so the client can check the relay passed every byte;
- anything else: 404 in OpenAI's error shape.
A request that accepts gzip gets the JSON answer gzip-compressed, as OpenAI's edge sends it.
It checks no credentials (the bench measures transport, not auth). Run:
`python -m bench.upstream --port N [--sse-events 20] [--sse-gap-ms 1]`.
"""

import argparse
import asyncio
import gzip
import hashlib
import json

import httptools
import uvloop

from bench import payloads


def _response(status: bytes, content_type: bytes, body: bytes, coding: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: "
        + content_type
        + b"\r\n"
        + (b"content-encoding: " + coding + b"\r\n" if coding else b"")
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n"
        b"x-request-id: req_bench\r\n"
        b"\r\n" + body
    )


CHAT = _response(b"200 OK", b"application/json", payloads.chat_response())
CHAT_GZIP = _response(
    b"200 OK", b"application/json", gzip.compress(payloads.chat_response()), b"gzip"
)
NOT_FOUND = _response(
    b"404 Not Found",
    b"application/json",
    b'{"error":{"message":"unknown path","type":"invalid_request_error","param":null,'
    b'"code":"unknown_url"}}',
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n"
    b"x-request-id: req_bench\r\n"
    b"\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests on it are served strictly in order."""

    def __init__(self, sse_events: list[bytes], sse_gap: float) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sse_events = sse_events
        self.sse_gap = sse_gap
        self.url = b""
        self.gzip = False
        self.body: list[bytes] = []
        self.hash: hashlib._Hash | None = None
        self.received = 0
        self.streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response(b"400 Bad Request", b"text/plain", b"bad"))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.streaming is not None:
            self.streaming.cancel()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"accept-encoding":
            self.gzip = b"gzip" in value.lower()

    def on_headers_complete(self) -> None:
        self.body = []
        self.received = 0
        self.hash = hashlib.sha256() if self.url.startswith(payloads.FILES_PATH.encode()) else None

    def on_body(self, body: bytes) -> None:
        if self.hash is not None:
            self.hash.update(body)
            self.received += len(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        transport = self.transport
        if transport is None:
            return
        if self.hash is not None:
            doc = {"object": "file", "bytes": self.received, "sha256": self.hash.hexdigest()}
            transport.write(_response(b"200 OK", b"application/json", json.dumps(doc).encode()))
        elif url.startswith(payloads.CHAT_PATH.encode()):
            if payloads.STREAM_MARKER in b"".join(self.body):
                self.streaming = asyncio.get_running_loop().create_task(self._stream(transport))
            else:
                transport.write(CHAT_GZIP if self.gzip else CHAT)
        else:
            transport.write(NOT_FOUND)
        self.gzip = False
        if not self.parser.should_keep_alive() and self.streaming is None:
            transport.close()

    async def _stream(self, transport: asyncio.Transport) -> None:
        try:
            first, *rest = self.sse_events
            transport.write(SSE_HEAD + _chunk(first))
            for event in rest:
                await asyncio.sleep(self.sse_gap)
                if transport.is_closing():
                    return
                transport.write(_chunk(event))
            transport.write(b"0\r\n\r\n")
        finally:
            self.streaming = None


async def serve(host: str, port: int, sse_events: int, sse_gap_ms: float) -> None:
    events = payloads.chat_stream_events(sse_events)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(events, sse_gap_ms / 1000), host, port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sse-events", type=int, default=20)
    parser.add_argument("--sse-gap-ms", type=float, default=1.0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.sse_events, args.sse_gap_ms))


if __name__ == "__main__":
    main()
