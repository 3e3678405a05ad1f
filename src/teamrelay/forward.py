"""One exchange with the upstream: send the request, stream the answer back to the client.

Resource rule: the upstream response is released in a `finally`, and a client that goes away
mid-answer closes it at once (a watcher on `receive` does that), so an abandoned 10-minute SSE
stream does not keep reading upstream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import Receive, Send

from teamrelay.body import ClientGone, RequestBody
from teamrelay.connections import ClientLeft, Response, UpstreamError
from teamrelay.errors import RelayError, bad_gateway, gateway_timeout
from teamrelay.headers import REQUEST_ID
from teamrelay.observability.metrics import STREAMS
from teamrelay.tap import Tap
from teamrelay.upstream import Upstream

logger = logging.getLogger("teamrelay.forward")

# Answers up to this size with a known length are read whole and sent in one ASGI message.
_SMALL_ANSWER = 64 * 1024
_REWRITTEN = frozenset({b"content-length", b"content-encoding"})


# Nothing reads what a tap learns: the answer passes untouched.
_PASS = Tap()


class UpstreamBroke(Exception):
    """The upstream failed after the answer had started: the client's response is aborted."""


@dataclass(slots=True)
class Call:
    """One upstream request as the relay will send it.

    `rewrite`, for the few answers the relay must change (a filtered model list), gets a
    successful answer's whole body. `strip_usage` says the relay added `include_usage` to a
    chat stream, so the tap removes what that added on the way back. `reads` is false when
    nothing will look at what a tap learns, and the answer then passes unread.
    """

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | RequestBody | None
    request_id: bytes
    rewrite: Callable[[bytes], bytes] | None = None
    strip_usage: bool = False
    reads: bool = True


@dataclass(slots=True)
class Exchange:
    """What happened, for the ledger: filled in as the exchange progresses."""

    tap: Tap | None = None
    status: int = 0
    ttfb: float | None = None
    bytes_out: int = 0
    streamed: bool = False
    aborted: bool = False
    upstream_request_id: str | None = None
    error_type: str | None = None
    # A 201's `Location`: where a create answered without JSON names its object.
    location: str | None = None


def _relay_failure(exc: UpstreamError, request_id: bytes) -> RelayError:
    """The client's error names the phase; the log, once, says why (with no secrets in it)."""
    logger.warning(
        "upstream failed (%s): %s [request %s]", exc.reason, exc, request_id.decode("latin-1")
    )
    if isinstance(exc, TimeoutError):
        return gateway_timeout(exc.reason)
    return bad_gateway(exc.reason)


def _sse_error(message: str) -> bytes:
    error = {"message": message, "type": "upstream_error", "param": None, "code": "upstream_error"}
    return b"event: error\ndata: " + json.dumps({"error": error}).encode() + b"\n\n"


async def _watch_disconnect(receive: Receive, response: Response) -> None:
    await _disconnected(receive)
    response.close()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def forward(upstream: Upstream, call: Call, receive: Receive, send: Send) -> Exchange:
    """Relay one request; errors before the answer starts are sent in OpenAI's shape."""
    exchange = Exchange()
    body = call.body
    started = time.perf_counter()

    def gone() -> Awaitable[None]:
        return _disconnected(receive)

    try:
        if isinstance(body, RequestBody):
            response = await upstream.pool.request(
                call.method,
                call.target,
                call.headers,
                body.stream(),
                streamed_length=_has_length(call.headers),
                gone=gone,
            )
        else:
            response = await upstream.pool.request(
                call.method, call.target, call.headers, body, gone=gone
            )
    except UpstreamError as exc:
        if isinstance(exc, ClientLeft) or (
            isinstance(body, RequestBody) and body.error is None and _client_left(exc)
        ):
            exchange.aborted = True
            exchange.error_type = "client_disconnected"
            return exchange
        failure = body.error if isinstance(body, RequestBody) and body.error else None
        failure = failure or _relay_failure(exc, call.request_id)
        exchange.status = failure.status
        exchange.error_type = failure.code
        await failure.send(send, [(REQUEST_ID, call.request_id)])
        return exchange
    exchange.ttfb = time.perf_counter() - started
    try:
        await _answer(upstream, response, call, receive, send, exchange)
    finally:
        response.release()
    return exchange


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(header[0] == b"content-length" for header in headers)


def _client_left(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ClientGone):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def _answer(
    upstream: Upstream,
    response: Response,
    call: Call,
    receive: Receive,
    send: Send,
    exchange: Exchange,
) -> None:
    status = exchange.status = response.status
    exchange.upstream_request_id = response.header(b"x-request-id")
    if status == 201:
        exchange.location = response.header(b"location")
    content_type = response.header(b"content-type")
    tap = (
        Tap.for_response(content_type, response.header(b"content-encoding"), call.strip_usage)
        if call.reads
        else _PASS
    )
    exchange.tap = tap
    request_id = call.request_id
    head = response.headers
    head.append((REQUEST_ID, request_id))
    if tap.strips:
        head = [h for h in head if h[0].lower() != b"content-length"]
    length = response.content_length
    rewrite = call.rewrite if status == 200 else None
    if rewrite is not None or (length is not None and length <= _SMALL_ANSWER):
        try:
            payload = await response.read(upstream.read_timeout)
        except UpstreamError as exc:
            failure = _relay_failure(exc, request_id)
            exchange.status, exchange.error_type = failure.status, failure.code
            await failure.send(send, [(REQUEST_ID, request_id)])
            return
        if tap is not _PASS:
            payload = tap.whole(payload)
        if rewrite is not None:
            payload = rewrite(payload)
            head = [h for h in head if h[0].lower() not in _REWRITTEN]
            head.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": payload})
        exchange.bytes_out = len(payload)
        return
    exchange.streamed = True
    await send({"type": "http.response.start", "status": status, "headers": head})
    body = call.body
    body_done = body is None or isinstance(body, bytes) or body.complete
    watcher = asyncio.create_task(_watch_disconnect(receive, response)) if body_done else None
    STREAMS.inc()
    try:
        await _pump(response, upstream.idle_timeout, send, exchange, tap)
    except UpstreamError as exc:
        if watcher is not None and watcher.done():
            return
        exchange.aborted = True
        exchange.error_type = "upstream_broke"
        logger.warning(
            "upstream stream broke (%s): %s [request %s]",
            exc.reason,
            exc,
            request_id.decode("latin-1"),
        )
        if content_type is not None and content_type.startswith("text/event-stream"):
            await send(
                {"type": "http.response.body", "body": _sse_error("The upstream stream broke.")}
            )
            return
        raise UpstreamBroke(type(exc).__name__) from None
    finally:
        STREAMS.dec()
        if watcher is not None:
            if watcher.done():
                exchange.aborted = True
                exchange.error_type = "client_disconnected"
            watcher.cancel()


async def _pump(
    response: Response, idle_timeout: float, send: Send, exchange: Exchange, tap: Tap
) -> None:
    async for chunk in response.iter_chunks(idle_timeout):
        out = tap.feed(chunk)
        if out:
            exchange.bytes_out += len(out)
            await send({"type": "http.response.body", "body": out, "more_body": True})
    rest = tap.finish()
    exchange.bytes_out += len(rest)
    await send({"type": "http.response.body", "body": rest})
