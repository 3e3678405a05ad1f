"""Keep-alive HTTP/1.1 connections to the upstream, for the `/v1` pass-through.

Measured (bench/README.md, 2026-12-03): behind the same bare ASGI handler, aiohttp's client did
4,261 requests/s (0.110x nginx's) at +0.479 ms p50 over a direct connection, and this module, a
protocol on the event loop's transport with httptools (the C parser uvicorn uses) reading the
answer, did 8,463 (0.218x) at +0.333 ms.
A pass-through needs little of a general client: write the request's bytes, parse the answer's
head, hand its body over as it arrives (undoing chunked framing only, never a content encoding),
and pool the connection again when the answer ended cleanly. The relay's own calls (Actions,
WebSockets) keep aiohttp for its multipart and WebSocket support.

Not for HEAD: httptools cannot be told an answer has no body because of the request's method,
so an answer to HEAD with a length would wait for that body (the catalog routes no HEAD).

Resource rules: every `Response` ends with `release()`, which pools its connection only when the
answer was read to its end, or `close()`, which drops it. The body is buffered up to
`_HIGH_WATER` bytes; past that the socket stops being read until the reader catches up, so a slow
client slows the upstream instead of filling memory.

Where production networks differ from loopback (issue 17), it does what nginx does: every
address a name resolves to is tried in RFC 8305's order (aiohappyeyeballs); an egress proxy is
reached with CONNECT (https) or absolute-form targets (http); a connection that receives bytes
nobody asked for is dropped, never read as the next answer; an answer's head has limits; the
wait for a head is abandoned soon after its client leaves, and an upload the upstream stops
reading fails at the send timeout. Each failure's `reason` names its phase for the client.
A direct connection's hot path pays a few checks an answer for it (with the client watch and
the Connection-header rule, 3.6 % more bytecodes a request in `bench.opcodes --core`).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httptools
from aiohappyeyeballs import start_connection
from cryptography import x509

from teamrelay.egress import Proxy
from teamrelay.headers import HOP_BY_HOP

_HIGH_WATER = 256 * 1024
# An idle connection older than this may already be closed by the upstream: not reused.
_KEEPALIVE_SECONDS = 15.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_UNSAFE_IN_TARGET = re.compile(rb"[\x00-\x20\x7f]")
# RFC 8305's recommended delay before the next address is tried, as aiohttp and asyncio use.
_HAPPY_EYEBALLS_DELAY = 0.25
_PROXY_HEAD_LIMIT = 16 * 1024
# How long into the wait for an answer's head the client starts being watched: an answer that
# comes sooner costs no watcher; one that does not is abandoned within this of the client
# leaving (nginx takes 1 s).
_CLIENT_CHECK = 0.5
# The answer's headers the relay reads, kept by lower-case name as they arrive.
_READ = frozenset(
    {
        b"content-length",
        b"content-type",
        b"content-encoding",
        b"transfer-encoding",
        b"x-request-id",
        b"location",
        b"keep-alive",
    }
)
# An answer's head past these is refused (502), as nginx's and aiohttp's limits do: the head is
# buffered whole, so without them one header could cost the process its memory.
HEAD_LIMIT = 64 * 1024
_LINE_LIMIT = 8 * 1024
_HEADER_COUNT_LIMIT = 256
_NO_BODY = frozenset({204, 304})
_KEEPALIVE_TIMEOUT = re.compile(rb"timeout\s*=\s*(\d+)", re.IGNORECASE)


class UpstreamError(Exception):
    """The exchange with the upstream failed; subclasses say where.

    `str()` is the detail for the relay's log; `reason` is the phase the client's error names.
    Neither holds a secret (no header values, no proxy credentials).
    """

    reason = "the exchange failed"

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        if reason is not None:
            self.reason = reason


class ConnectFailed(UpstreamError):
    """No connection could be made (DNS, refused, unreachable, TLS, the egress proxy)."""

    reason = "connection failed"


class ConnectTimeout(UpstreamError, TimeoutError):
    """Connecting took longer than the connect timeout."""

    reason = "connect"


class PoolExhausted(ConnectTimeout):
    """Every pooled connection stayed busy for the connect timeout."""

    reason = "all upstream connections are busy"


class ReadTimeout(UpstreamError, TimeoutError):
    """The upstream sent nothing for longer than the read (head) or idle (body) timeout."""

    reason = "waiting for the response"


class SendTimeout(UpstreamError, TimeoutError):
    """The upstream stopped reading a streamed request body for longer than the send timeout."""

    reason = "sending the request body"


class ConnectionBroke(UpstreamError):
    """The connection ended, or sent something unparsable, before the answer was complete."""

    reason = "the connection broke"


class InvalidAnswer(UpstreamError):
    """The upstream's answer broke a limit or HTTP's rules (head size, status code)."""

    reason = "the upstream's answer was invalid"


class ProxyRefused(ConnectFailed):
    """A proxy on the way to the upstream asked for authentication (407)."""

    reason = "the egress proxy refused the request (407)"


def _oversized(headers: list[tuple[bytes, bytes]]) -> bool:
    sizes = [len(name) + len(value) for name, value in headers]
    return max(sizes, default=0) > _LINE_LIMIT or sum(sizes) > HEAD_LIMIT


def _invalid(what: str) -> InvalidAnswer:
    return InvalidAnswer(f"the upstream sent {what}")


class ClientLeft(UpstreamError):
    """The client went away while the answer's head was awaited: the exchange was abandoned."""

    reason = "the client left"


class Response:
    """One answer: its head at once, its body as it arrives."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.content_length: int | None = None
        # End to end: without the hop-by-hop ones, names as the upstream spelled them.
        self.headers: list[tuple[bytes, bytes]] = []
        self._read: dict[bytes, bytes] = {}
        self.complete = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False

    def header(self, name: bytes) -> str | None:
        """The first value of header `name`, one of `_READ`, as latin-1 text."""
        value = self._read.get(name)
        return None if value is None else value.decode("latin-1")

    async def read(self, timeout: float) -> bytes:
        """The whole body; `timeout` bounds each wait for more of it."""
        while not self.complete:
            self._connection.resume_reading()  # all of it is wanted: the buffer may grow
            await self._wait(timeout)
        chunks, self._chunks = self._chunks, deque()
        self._buffered = 0
        return b"".join(chunks)

    async def iter_chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in; `idle_timeout` bounds each wait."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < _HIGH_WATER:
                    self._connection.resume_reading()
                yield chunk
            if self.complete:
                return
            await self._wait(idle_timeout)

    def close(self) -> None:
        """Drop the connection now, whatever is left of the answer (a client that left)."""
        if not self._released:
            self._released = True
            self._connection.drop()
            self._connection.pool.free_slot()

    def release(self) -> None:
        """Give the connection back: pooled if the answer ended cleanly, else closed."""
        if not self._released:
            self._released = True
            self._connection.finish(self)
            self._connection.pool.free_slot()

    async def _wait(self, timeout: float) -> None:
        if self._error is not None:
            raise self._error
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= _HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("the upstream sent nothing within the timeout"))


class _Connection(asyncio.Protocol):
    """One socket to the upstream, reused for one exchange after another."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.head: asyncio.Future[Response] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self.reusable = True
        self.idle_since = 0.0
        # How long this connection may sit idle: shorter when the upstream says so.
        self.keepalive = _KEEPALIVE_SECONDS
        # The bytes read while the head was incomplete: the head is a prefix of them.
        self._head_bytes = 0
        # Why a callback stopped the parser: the error the exchange fails with.
        self._failure: UpstreamError | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for (a stray answer on an idle connection, more than the
            # answer's framing): whatever they are, they must not become the next answer.
            self.drop()
            return
        if not response.status:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(_invalid("an upgrade (101) the relay did not ask for"))
        except httptools.HttpParserError as exc:
            self._refuse(self._failure or ConnectionBroke(f"unparsable answer: {exc}"))
        else:
            if not response.status and self._head_bytes > HEAD_LIMIT:
                self._refuse(_invalid(f"an answer head over {HEAD_LIMIT} bytes"))

    def _refuse(self, error: UpstreamError) -> None:
        self._broke(error)
        self.drop()

    def _stop(self, error: UpstreamError) -> NoReturn:
        """From a parser callback: the parser stops, and the exchange fails with `error`."""
        self._failure = error
        raise error

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        response = self.response
        if (
            response is not None
            and response.status
            and not response.complete
            and response.content_length is None
            and not _chunked(response)
        ):
            self.on_message_complete()  # a body that ends with the connection
        self._broke(ConnectionBroke("the upstream closed the connection"))
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_exception(ConnectionBroke("the upstream closed the connection"))
        self.pool.forget(self)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        response = self.response
        if response is None or response.complete:
            # A second answer, even its first byte, in the same read as the first: the
            # connection is out of step.
            self._stop(_invalid("more than one answer to one request"))

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is None or response.status:
            return  # trailers, after the head: dropped (the head has gone to the client)
        key = name.lower()
        if key in _READ:
            response._read.setdefault(key, value)
        if key not in HOP_BY_HOP:
            response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self._parser.get_status_code()
        if status != 200 and self._interim(response, status):
            return
        headers = response.headers
        # Under `_LINE_LIMIT` bytes read, no line and no head can be over its limit: the
        # headers are measured only after a large read, and cost nothing otherwise.
        if len(headers) > _HEADER_COUNT_LIMIT or (
            self._head_bytes > _LINE_LIMIT and _oversized(headers)
        ):
            self._stop(
                _invalid(
                    f"a head over {HEAD_LIMIT} bytes, {_LINE_LIMIT} a line"
                    f" or {_HEADER_COUNT_LIMIT} headers"
                )
            )
        response.status = status
        read = response._read
        if response.content_length is None:
            length = read.get(b"content-length")
            if length is not None and length.isdigit():
                response.content_length = int(length)
        if not self._parser.should_keep_alive():
            self.reusable = False
        if b"keep-alive" in read:
            self._keep_alive_for(read[b"keep-alive"])
        head = self.head
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or not response.status:
            return
        response.complete = True
        response._wake()

    # the exchange

    def send(self, head: bytes, body: bytes | None) -> None:
        """Writes a request whose body is known, in one write."""
        if self.transport is None:
            raise ConnectionBroke("the upstream closed the connection")
        self.transport.write(head + body if body else head)

    async def upload(
        self, head: bytes, body: AsyncIterator[bytes], chunked: bool, send_timeout: float
    ) -> None:
        """Writes a request whose body streams, in chunked framing when `chunked`; an upstream
        that reads none of it for `send_timeout` fails it (nginx's `proxy_send_timeout`)."""
        if self.transport is None:
            raise ConnectionBroke("the upstream closed the connection")
        self.transport.write(head)
        async for chunk in body:
            if not chunk:
                continue  # an empty chunk would end a chunked body
            if self.transport is None:
                raise ConnectionBroke("the upstream closed the connection")
            if chunked:
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                self.transport.write(chunk)
            if self._drained is not None:
                try:
                    await asyncio.wait_for(self._drained, send_timeout)
                except TimeoutError:
                    raise SendTimeout(
                        f"the upstream read none of the request body for {send_timeout} s"
                    ) from None
        if chunked and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")

    def _interim(self, response: Response, status: int) -> bool:
        """Any status but 200: true for an interim answer (the real one follows); raises for a
        status the relay cannot pass on; takes the body and length off a 204 or 304."""
        if not 100 <= status <= 599 or status == 101:
            self._stop(_invalid(f"the status code {status}"))
        if status == 407:
            # Proxy authentication: only a proxy on the way asks for it, never the API, and the
            # relay's client has no proxy to sign in to.
            self._stop(ProxyRefused("a proxy on the way to the upstream answered 407"))
        if status < 200:
            response.headers = []  # an interim answer (100 Continue): the real one follows
            response._read = {}
            return True
        if status in _NO_BODY:
            # No body whatever its Content-Length says (llhttp reads none either), and no
            # length the ASGI server would hold the empty body against.
            response.headers = [h for h in response.headers if h[0].lower() != b"content-length"]
            response.content_length = 0
        return False

    def _keep_alive_for(self, value: bytes) -> None:
        """`Keep-Alive: timeout=N`: the upstream closes after N idle seconds, so the pool stops
        reusing the connection half a second before, rather than race that close."""
        found = _KEEPALIVE_TIMEOUT.search(value)
        if found is not None:
            self.keepalive = min(self.keepalive, int(found.group(1)) - 0.5)

    def start(self) -> asyncio.Future[Response]:
        """A new exchange: the future is done when the answer's head is in."""
        self.response = Response(self)
        self._head_bytes = 0
        head = self.head = asyncio.get_running_loop().create_future()
        return head

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finish(self, response: Response) -> None:
        if response.complete and self.reusable and self.transport is not None:
            self.response = None
            self.head = None
            self.resume_reading()
            self.pool.put(self)
        else:
            self.drop()

    def drop(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
        self.pool.forget(self)

    def _broke(self, error: UpstreamError) -> None:
        self.reusable = False
        head = self.head
        if head is not None and not head.done():
            head.set_exception(error)
        if self.response is not None and not self.response.complete:
            self.response._fail(error)


def _chunked(response: Response) -> bool:
    encoding = response.header(b"transfer-encoding")
    return encoding is not None and "chunked" in encoding.lower()


class ConnectionPool:
    """Connections to one upstream origin, at most `limit` open at once."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        send_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        """`ssl_context` for an https upstream: the system's trusted CAs when None. Through a
        `proxy`, an https upstream is reached in a CONNECT tunnel and an http one with
        absolute-form targets; a direct connection pays nothing for either."""
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        default_port = parts.port is None or parts.port == (443 if self.https else 80)
        host = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host:
            host = f"[{self.host}]" if default_port else f"[{self.host}]:{self.port}"
        self._host_line = b"host: " + host.encode("idna") + b"\r\n"
        self._proxy = proxy
        self._tunnel: bytes | None = None
        if proxy is not None:
            authorization = b""
            if proxy.authorization is not None:
                authorization = b"proxy-authorization: " + proxy.authorization + b"\r\n"
            if self.https:
                name = f"[{self.host}]" if ":" in self.host else self.host
                authority = f"{name}:{self.port}".encode("idna")
                self._tunnel = b"CONNECT %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (
                    authority,
                    authority,
                    authorization,
                )
            else:
                self.prefix = b"http://" + host.encode("idna") + self.prefix
                self._host_line += authorization
        self._ssl = (ssl_context or ssl.create_default_context()) if self.https else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._watch_rest = read_timeout - _CLIENT_CHECK
        self.send_timeout = send_timeout
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
        *,
        streamed_length: bool = False,
        gone: Callable[[], Awaitable[object]] | None = None,
    ) -> Response:
        """Sends one request and returns once the answer's head is in.

        `target` is the path after the base URL's path, with its query, sent exactly as given.
        A `bytes` body is sent with its length; a streamed body with the client's
        `content-length` when `streamed_length` (it is among `headers`), else chunked.
        `gone` returns when the client has left: awaited once the body is sent and the head is
        slow to come, it abandons the exchange (`ClientLeft`), closing the connection.
        """
        chunked = not (body is None or isinstance(body, bytes) or streamed_length)
        head = self._head(method, target, headers, body, chunked)
        await self._take_slot()
        try:
            connection, reused = await self._connection()
            if not (body is None or isinstance(body, bytes)):
                return await self._exchange_streamed(connection, head, body, chunked, gone)
            try:
                return await self._exchange(connection, head, body, gone)
            except ConnectionBroke:
                if not (reused and method in _IDEMPOTENT):
                    raise
            # A pooled connection the upstream had closed: once more on a new one, as aiohttp
            # does, only where sending twice is harmless.
            connection = await self._connect()
            return await self._exchange(connection, head, body, gone)
        except BaseException:
            self._slots.release()
            raise

    async def _take_slot(self) -> None:
        """Waiting for a busy pool counts as connecting, as it does in aiohttp."""
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self.connect_timeout)
        except TimeoutError:
            raise PoolExhausted(f"all {self._limit} upstream connections stayed busy") from None

    def _head(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
        chunked: bool,
    ) -> bytes:
        path = self.prefix + target.encode("latin-1")
        if _UNSAFE_IN_TARGET.search(path):
            raise ValueError("unsafe character in the request target")
        lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), path), self._host_line]
        lines += [b"%s: %s\r\n" % header for header in headers]
        if isinstance(body, bytes):
            lines.append(b"content-length: %d\r\n" % len(body))
        elif body is None:
            if method in _BODY_METHODS:
                lines.append(b"content-length: 0\r\n")
        elif chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: bytes | None,
        gone: Callable[[], Awaitable[object]] | None,
    ) -> Response:
        answered = connection.start()
        connection.send(head, body)
        timer = self._head_timer(answered, gone)
        try:
            return await answered
        except BaseException:
            connection.drop()
            raise
        finally:
            timer.cancel()

    async def _exchange_streamed(
        self,
        connection: _Connection,
        head: bytes,
        body: AsyncIterator[bytes],
        chunked: bool,
        gone: Callable[[], Awaitable[object]] | None,
    ) -> Response:
        """The body is written while the head is awaited: an upstream may answer (and refuse)
        before it has read all of a large upload. The read timeout starts once it is sent."""
        answered = connection.start()
        timers: list[asyncio.TimerHandle] = []
        writer = asyncio.ensure_future(connection.upload(head, body, chunked, self.send_timeout))
        writer.add_done_callback(partial(self._upload_ended, answered, timers, gone))
        try:
            response = await answered
        except BaseException:
            writer.cancel()
            connection.drop()
            raise
        finally:
            for timer in timers:
                timer.cancel()
        if not writer.done() or writer.cancelled() or writer.exception() is not None:
            writer.cancel()  # answered before the whole body was sent: not reusable
            connection.reusable = False
        return response

    def _upload_ended(
        self,
        answered: asyncio.Future[Response],
        timers: list[asyncio.TimerHandle],
        gone: Callable[[], Awaitable[object]] | None,
        writer: asyncio.Future[None],
    ) -> None:
        if answered.done() or writer.cancelled():
            return
        failure = writer.exception()
        if failure is None:
            timers.append(self._head_timer(answered, gone))
        elif isinstance(failure, UpstreamError):
            answered.set_exception(failure)
        else:
            error = ConnectionBroke("the request body could not be sent")
            error.__cause__ = failure
            answered.set_exception(error)

    def _head_timer(
        self, answered: asyncio.Future[Response], gone: Callable[[], Awaitable[object]] | None
    ) -> asyncio.TimerHandle:
        """One timer for the wait for the head, as without a client to watch: the read timeout,
        or `_CLIENT_CHECK`, when the watcher takes over the rest of the read timeout."""
        loop = asyncio.get_running_loop()
        if gone is None or self._watch_rest <= 0:
            return loop.call_later(self.read_timeout, _expire_head, answered)
        return loop.call_later(_CLIENT_CHECK, _watch, answered, gone, self._watch_rest)

    async def _connection(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            fresh = now - connection.idle_since < connection.keepalive
            if connection.transport is not None and fresh:
                return connection, True
            connection.drop()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await self._open_socket(loop)
                try:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self),
                        sock=sock,
                        ssl=self._ssl,
                        server_hostname=self.host if self._ssl else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectTimeout(f"connecting took over {self.connect_timeout} s") from None
        except ssl.SSLCertVerificationError as exc:
            presented = await self._presented_certificate()
            raise ConnectFailed(
                f"TLS certificate verification failed for {self.host}: {exc.verify_message}"
                f" (it presented {presented})",
                "TLS certificate verification failed",
            ) from None
        except ssl.SSLError as exc:
            raise ConnectFailed(
                f"TLS handshake with {self.host} failed: {exc.reason}", "TLS handshake failed"
            ) from None
        except OSError as exc:
            raise ConnectFailed(
                f"connecting to {self._peer()} failed: {exc}", _cause(exc)
            ) from None
        self._open.add(connection)
        return connection

    async def _open_socket(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A connected socket to the upstream, or through the proxy's tunnel to it, trying every
        address the name resolves to in RFC 8305's order (an unreachable IPv6 address does
        not hold up a working IPv4 one)."""
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else (self.host, self.port)
        try:
            addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectFailed(
                f"DNS lookup of {host} failed: {exc}", "DNS lookup failed"
            ) from None
        sock = await start_connection(
            addresses, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY, interleave=1
        )
        if self._tunnel is not None:
            try:
                await self._open_tunnel(loop, sock)
            except BaseException:
                sock.close()
                raise
        return sock

    async def _open_tunnel(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """HTTP CONNECT through the egress proxy; TLS to the upstream then runs inside it."""
        assert self._tunnel is not None
        assert self._proxy is not None
        await loop.sock_sendall(sock, self._tunnel)
        head = b""
        while b"\r\n\r\n" not in head:
            data = await loop.sock_recv(sock, 4096)
            if not data or len(head) > _PROXY_HEAD_LIMIT:
                raise ConnectFailed(
                    f"the egress proxy {self._proxy.address} gave no answer to CONNECT",
                    "the egress proxy closed the tunnel",
                )
            head += data
        status_line = head.partition(b"\r\n")[0]
        fields = status_line.split(None, 2)
        status = fields[1].decode("latin-1") if len(fields) > 1 else "?"
        # Bytes after the answer's head would be the proxy's, not the upstream's TLS.
        well_formed = fields[0].startswith(b"HTTP/") and head.endswith(b"\r\n\r\n")
        if not (well_formed and status.startswith("2")):
            raise ConnectFailed(
                f"the egress proxy {self._proxy.address} answered CONNECT with {status_line!r}",
                f"the egress proxy refused the tunnel ({status})",
            )

    async def _presented_certificate(self) -> str:
        """Who the certificate that failed verification names, for the log (a TLS-inspecting
        proxy shows here as its own CA): one more handshake, unverified, read and dropped."""
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await self._open_socket(loop)
                try:
                    transport, _ = await loop.create_connection(
                        asyncio.Protocol, sock=sock, ssl=context, server_hostname=self.host
                    )
                except BaseException:
                    sock.close()
                    raise
            try:
                der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            finally:
                transport.close()
            certificate = x509.load_der_x509_certificate(der)
        except (OSError, TimeoutError, UpstreamError, ValueError):
            return "a certificate that could not be read again"
        subject = certificate.subject.rfc4514_string()
        return f"subject {subject!r}, issuer {certificate.issuer.rfc4514_string()!r}"

    def _peer(self) -> str:
        if self._proxy is not None:
            return f"the egress proxy {self._proxy.address}"
        return f"{self.host}:{self.port}"

    def put(self, connection: _Connection) -> None:
        if len(self._idle) < self._limit:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.drop()

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)

    def free_slot(self) -> None:
        """An exchange holds a slot from its request until its response is released."""
        self._slots.release()

    def close(self) -> None:
        for connection in list(self._open):
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()


def _watch(
    answered: asyncio.Future[Response], gone: Callable[[], Awaitable[object]], rest: float
) -> None:
    """The head is slow: from now on the client leaving abandons the exchange, and the rest of
    the read timeout runs in the watcher."""
    if answered.done():
        return
    watcher = asyncio.ensure_future(_abandon_when(answered, gone, rest))
    answered.add_done_callback(lambda _: watcher.cancel())


async def _abandon_when(
    answered: asyncio.Future[Response], gone: Callable[[], Awaitable[object]], rest: float
) -> None:
    try:
        async with asyncio.timeout(rest):
            await gone()
    except TimeoutError:
        _expire_head(answered)
        return
    except Exception:  # a receive that fails: the client is gone all the same
        pass
    if not answered.done():
        answered.set_exception(ClientLeft("the client left before the answer's head arrived"))


def _cause(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable"
    return "connection failed"


def _expire_head(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("no answer from the upstream within the read timeout"))
