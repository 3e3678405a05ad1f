"""Minimal pass-throughs to re-measure DESIGN.md's stack claims with the same bench.

ASGI apps, each forwarding `/v1/...` to `OPENAI_BASE_URL` with streaming both ways and
answering `/health`: the upstream client (aiohttp, httpx2, or the relay's own httptools client in
`teamrelay.connections`) crossed with the hot path (a bare ASGI callable or a Starlette route
with `StreamingResponse`). Nothing else: no auth, no policy, so they bound what any relay built
on that stack can reach. Run one as the relay, e.g.

    python -m bench --only rps,latency,sse --relay-cmd \
      ".venv/bin/uvicorn bench.alternatives:bare_aiohttp --app-dir {repo} --factory --port {port} \
       --loop uvloop --http httptools --no-access-log --log-level warning"
"""

import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import httpx2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from teamrelay.connections import ConnectionPool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _base() -> str:
    return os.environ["OPENAI_BASE_URL"].removesuffix("/v1")


def _up_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out = {"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    for name, value in headers:
        if name in (b"content-type", b"content-length"):
            out[name.decode()] = value.decode()
    return out


SMALL_BODY = 64 * 1024


async def _read_small(
    headers: list[tuple[bytes, bytes]], body: AsyncIterator[bytes]
) -> bytes | AsyncIterator[bytes]:
    """Small bodies (known length) are read and sent as bytes: streaming them costs more."""
    length = next((v for k, v in headers if k == b"content-length"), None)
    if length is None or int(length) > SMALL_BODY:
        return body
    return b"".join([chunk async for chunk in body])


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body"):
            return


class Upstream:
    """What each pass-through needs from an upstream client: open a streamed exchange."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def open(
        self, method: str, url: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        raise NotImplementedError


class AiohttpUpstream(Upstream):
    session: aiohttp.ClientSession

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def stop(self) -> None:
        await self.session.close()

    async def open(
        self, method: str, url: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        resp = await self.session.request(method, url, headers=headers, data=body)

        async def release() -> None:
            resp.release()

        return resp.status, list(resp.headers.items()), resp.content.iter_any(), release


class Httpx2Upstream(Upstream):
    client: httpx2.AsyncClient

    async def start(self) -> None:
        self.client = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=100),
            trust_env=False,
        )

    async def stop(self) -> None:
        await self.client.aclose()

    async def open(
        self, method: str, url: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        request = self.client.build_request(method, url, headers=headers, content=body)
        resp = await self.client.send(request, stream=True)
        return resp.status_code, list(resp.headers.items()), resp.aiter_raw(), resp.aclose


class HttptoolsUpstream(Upstream):
    """The relay's pass-through client: a transport protocol with httptools parsing."""

    pool: ConnectionPool

    async def start(self) -> None:
        self.pool = ConnectionPool(
            os.environ["OPENAI_BASE_URL"], limit=512, connect_timeout=10, read_timeout=600
        )

    async def stop(self) -> None:
        self.pool.close()

    async def open(
        self, method: str, url: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        target = url.removeprefix(os.environ["OPENAI_BASE_URL"])
        sent = [(k.encode(), v.encode()) for k, v in headers.items() if k != "content-length"]
        resp = await self.pool.request(method, target, sent, body)

        async def release() -> None:
            resp.release()

        received = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers]
        return resp.status, received, resp.iter_chunks(300), release


def _down_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP]


def bare(upstream: Upstream) -> ASGIApp:
    """The hot path as a plain ASGI callable."""
    base = _base()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await upstream.start()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await upstream.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        if path == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        query = scope["query_string"].decode()
        url = base + path + (f"?{query}" if query else "")
        status, headers, chunks, release = await upstream.open(
            scope["method"],
            url,
            _up_headers(scope["headers"]),
            await _read_small(scope["headers"], _request_body(receive)),
        )
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in _down_headers(headers)],
                }
            )
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await release()

    return app


def framework(upstream: Upstream) -> ASGIApp:
    """The hot path as a Starlette route returning a `StreamingResponse`."""
    base = _base()

    async def forward(request: Request) -> Response:
        query = request.url.query
        url = base + request.url.path + (f"?{query}" if query else "")
        status, headers, chunks, release = await upstream.open(
            request.method,
            url,
            _up_headers(request.headers.raw),
            await _read_small(request.headers.raw, request.stream()),
        )
        return StreamingResponse(
            chunks,
            status_code=status,
            headers=dict(_down_headers(headers)),
            background=BackgroundTask(release),
        )

    async def health(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.stop()

    lifespan_factory: Callable[[Starlette], AbstractAsyncContextManager[None]] = lifespan
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/{path:path}", forward, methods=["GET", "POST", "DELETE"]),
        ],
        lifespan=lifespan_factory,
    )


def bare_aiohttp() -> ASGIApp:
    return bare(AiohttpUpstream())


def bare_httptools() -> ASGIApp:
    return bare(HttptoolsUpstream())


def bare_httpx2() -> ASGIApp:
    return bare(Httpx2Upstream())


def starlette_aiohttp() -> ASGIApp:
    return framework(AiohttpUpstream())


def starlette_httpx2() -> ASGIApp:
    return framework(Httpx2Upstream())
