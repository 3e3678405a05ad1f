"""A lean HTTP/1.1 keep-alive client, so the figures measure the server and not the client.

Requests are prebuilt bytes sent with one `sendall`; responses are parsed by httptools (C) on a
blocking socket with TCP_NODELAY. No event loop, no header objects: a request/response round
trip costs the client a few microseconds.
"""

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httptools

from bench import payloads


def build_request(
    method: str, path: str, port: int, body: bytes, content_type: str, key: str
) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


@dataclass
class Response:
    status: int = 0
    body: list[bytes] = field(default_factory=list)
    first_event_ns: int | None = None
    complete: bool = False


class Connection:
    """One keep-alive connection; `exchange` sends a request and reads its whole response."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = httptools.HttpResponseParser(self)
        self.buf = bytearray(1 << 18)
        self.view = memoryview(self.buf)
        self.response = Response()
        self.watch_events = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.watch_events and self.response.first_event_ns is None and b"data:" in body:
            self.response.first_event_ns = time.perf_counter_ns()
        self.response.body.append(body)

    def on_message_complete(self) -> None:
        self.response.complete = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, watch_events: bool = False) -> Response:
        self.response = Response()
        self.watch_events = watch_events
        while not self.response.complete:
            n = self.sock.recv_into(self.buf)
            if n == 0:
                raise ConnectionError("server closed the connection mid-response")
            self.parser.feed_data(self.view[:n])
        return self.response

    def exchange(self, request: bytes, watch_events: bool = False) -> Response:
        self.sock.sendall(request)
        return self.read_response(watch_events)


def _expect(response: Response, what: str) -> None:
    if response.status != 200:
        body = b"".join(response.body)[:300].decode(errors="replace")
        raise RuntimeError(f"{what}: status {response.status}: {body}")


def latencies(port: int, count: int, key: str, warmup: int = 200) -> list[float]:
    """Milliseconds per sequential round trip of the 1 KB chat request on one connection."""
    request = build_request(
        "POST", payloads.CHAT_PATH, port, payloads.chat_request(), "application/json", key
    )
    samples: list[float] = []
    with Connection(port) as conn:
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            response = conn.exchange(request)
            elapsed = time.perf_counter_ns() - start
            if response.status != 200:
                _expect(response, "latency request")
            if i >= warmup:
                samples.append(elapsed / 1e6)
    return samples


def first_events(
    port: int, count: int, expected_events: int, key: str, warmup: int = 10
) -> list[float]:
    """Milliseconds from sending a streamed chat request to receiving its first `data:` event."""
    body = payloads.chat_request(stream=True)
    request = build_request("POST", payloads.CHAT_PATH, port, body, "application/json", key)
    samples: list[float] = []
    with Connection(port) as conn:
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            response = conn.exchange(request, watch_events=True)
            _expect(response, "SSE request")
            events = b"".join(response.body).count(b"data:")
            if events != expected_events or response.first_event_ns is None:
                raise RuntimeError(f"SSE: got {events} events, expected {expected_events}")
            if i >= warmup:
                samples.append((response.first_event_ns - start) / 1e6)
    return samples


@dataclass
class Upload:
    seconds: float
    sent: int
    received: int
    intact: bool


BOUNDARY = "----teamrelay-bench-7d1f0c"


def _multipart(size: int, chunk: bytes) -> tuple[int, Iterator[bytes]]:
    """A multipart `/v1/files` body of `size` file bytes, produced piece by piece."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        "batch\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        yield head
        left = size
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + size + len(tail), pieces()


def upload(port: int, size: int, key: str, timeout: float = 120.0) -> Upload:
    """Streams a `size`-byte multipart upload; never more than one 1 MiB chunk in memory."""
    chunk = os.urandom(1 << 20)
    length, pieces = _multipart(size, chunk)
    expected = hashlib.sha256()
    for piece in pieces:
        expected.update(piece)
    length, pieces = _multipart(size, chunk)
    head = (
        f"POST {payloads.FILES_PATH} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n"
        "\r\n"
    ).encode()
    with Connection(port, timeout=timeout) as conn:
        start = time.perf_counter()
        try:
            conn.send(head)
            for piece in pieces:
                conn.send(piece)
        except OSError:
            pass  # the server answered early (e.g. 413); read what it said below
        response = conn.read_response()
        seconds = time.perf_counter() - start
    _expect(response, "upload")
    doc = json.loads(b"".join(response.body))
    return Upload(
        seconds=seconds,
        sent=length,
        received=int(doc["bytes"]),
        intact=doc["bytes"] == length and doc["sha256"] == expected.hexdigest(),
    )
