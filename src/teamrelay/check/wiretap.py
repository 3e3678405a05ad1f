"""A transport that watches every response the check receives, for the relay-headers gate.

It sits under both the SDK and the raw client, so the gate judges all traffic of the run, not
a sample. Bodies are scanned as they stream past, keeping only a short overlap between chunks,
so a large download costs no memory. Found values are never kept, only where they appeared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2

REQUEST_ID_HEADER = "x-relay-request-id"
# OpenAI secret keys (sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...); a hint such as
# "sk-****1234" in an error message has stars in it and does not match.
UPSTREAM_KEY = re.compile(rb"sk-[A-Za-z0-9_\-]{16,}")
_OVERLAP = 256


@dataclass
class Exchange:
    """One response the check saw: what was asked, what came back, and what looked wrong."""

    method: str
    path: str
    status: int
    request_id: str | None
    key_in_headers: bool = False
    key_in_body: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


class _ScannedStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        tail = b""
        for chunk in self._inner:
            window = tail + chunk
            if UPSTREAM_KEY.search(window):
                self._exchange.key_in_body = True
            tail = window[-_OVERLAP:]
            yield chunk

    def close(self) -> None:
        self._inner.close()


class Wiretap(httpx2.BaseTransport):
    """Wraps a real transport; asks for identity encoding so the scanned bytes are plain text."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self._inner = inner
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["accept-encoding"] = "identity"
        response = self._inner.handle_request(request)
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        exchange = Exchange(
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
            key_in_headers=UPSTREAM_KEY.search(headers.encode("latin-1", "replace")) is not None,
        )
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _ScannedStream(response.stream, exchange)
        return response

    def close(self) -> None:
        self._inner.close()
