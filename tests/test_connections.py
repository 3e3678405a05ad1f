"""The `/v1` keep-alive client against raw servers on loopback that send exactly chosen bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import trustme

from teamrelay.connections import (
    _HIGH_WATER,
    ConnectFailed,
    ConnectionBroke,
    ConnectionPool,
    ConnectTimeout,
    ReadTimeout,
    Response,
)

# The longest any single wait may take: past it a test fails instead of hanging.
WAIT = 2.0
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Received:
    """One request as a raw server read it off the wire."""

    head: bytes  # the request line and headers, through the blank line
    body: bytes  # as sent: still in chunked framing when it was chunked
    connection: int  # which accepted connection it came on: 0, 1, ...

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        pairs = []
        for line in self.head.split(b"\r\n")[1:-2]:
            name, _, value = line.partition(b": ")
            pairs.append((name, value))
        return pairs

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


class Peer:
    """The server's side of one accepted connection."""

    def __init__(
        self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = server.connections

    async def request(self) -> Received | None:
        """The next whole request on this connection, or None once the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        received = Received(head, b"", self.index)
        length = received.header(b"content-length")
        if received.header(b"transfer-encoding") == b"chunked":
            received.body = await self._chunked()
        elif length is not None:
            received.body = await self.reader.readexactly(int(length))
        self.server.received.append(received)
        return received

    async def _chunked(self) -> bytes:
        raw: list[bytes] = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            size = int(line.strip(), 16)
            raw += [line, await self.reader.readexactly(size + 2)]
            if size == 0:
                return b"".join(raw)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Reads and discards everything until the client closes the connection."""
        while await self.reader.read(65536):
            pass


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A listener on 127.0.0.1 whose `handler` runs once per accepted connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self.connections = 0
        self.received: list[Received] = []
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def url(self, path: str = "/v1") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        assert not self.errors, f"the raw server's handler failed: {self.errors!r}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, reader, writer)
        self.connections += 1
        try:
            await self._handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: some tests are about exactly that
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def answer_each(answer: bytes) -> Handler:
    """A handler that answers every request on its connection with `answer`."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(answer)

    return handler


@contextlib.asynccontextmanager
async def open_pool(
    url: str,
    *,
    limit: int = 8,
    read_timeout: float = WAIT,
    connect_timeout: float = WAIT,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(
        url,
        limit=limit,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        ssl_context=ssl_context,
    )
    try:
        yield pool
    finally:
        pool.close()
        await asyncio.sleep(0.01)  # the closed transports let go of their sockets


async def fetch(
    pool: ConnectionPool,
    method: str = "GET",
    target: str = "/x",
    body: bytes | AsyncIterator[bytes] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[Response, bytes]:
    """One whole exchange: the response (released) and its body."""
    response = await asyncio.wait_for(pool.request(method, target, headers or [], body), WAIT)
    try:
        return response, await response.read(WAIT)
    finally:
        response.release()


async def collect(response: Response, chunks: list[bytes], idle_timeout: float) -> None:
    """The body's pieces into `chunks`, as they arrive, until it ends or fails."""
    async for chunk in response.iter_chunks(idle_timeout):
        chunks.append(chunk)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition did not become true in time"
        await asyncio.sleep(0.005)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# What is sent


async def test_a_bytes_body_goes_with_its_length_under_the_base_path_and_given_headers() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url("/v1")) as pool:
        response, body = await fetch(
            pool,
            "POST",
            "/chat/completions?a=1&a=2",
            b'{"x": 1}',
            [(b"Content-Type", b"application/json"), (b"X-Odd-Case", b"Some Value")],
        )
    assert (response.status, body) == (200, b"ok")
    [received] = server.received
    assert received.head == (
        b"POST /v1/chat/completions?a=1&a=2 HTTP/1.1\r\n"
        b"host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Odd-Case: Some Value\r\n"
        b"content-length: 8\r\n"
        b"\r\n" % server.port
    )
    assert received.body == b'{"x": 1}'


async def test_a_post_without_body_says_length_zero_and_a_get_says_nothing() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        await fetch(pool, "POST", "/files/f1/cancel")
        await fetch(pool, "GET", "/models")
    post, get = server.received
    assert post.request_line == b"POST /v1/files/f1/cancel HTTP/1.1"
    assert post.header(b"content-length") == b"0"
    assert get.request_line == b"GET /v1/models HTTP/1.1"
    assert get.header(b"content-length") is None
    assert get.header(b"transfer-encoding") is None


async def test_a_streamed_body_without_its_length_is_sent_chunked() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        await fetch(pool, "POST", "/uploads", stream(b"hello ", b"chunked ", b"world"))
    [received] = server.received
    assert received.header(b"transfer-encoding") == b"chunked"
    assert received.header(b"content-length") is None
    assert received.body == b"6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n"


async def test_a_streamed_body_with_the_clients_length_is_sent_raw() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(
            pool.request(
                "POST",
                "/uploads",
                [(b"content-length", b"11")],
                stream(b"hello ", b"world"),
                streamed_length=True,
            ),
            WAIT,
        )
        assert await response.read(WAIT) == b"ok"
        response.release()
    [received] = server.received
    assert received.header(b"content-length") == b"11"
    assert received.header(b"transfer-encoding") is None
    assert received.body == b"hello world"


async def test_an_empty_chunk_from_the_stream_does_not_end_the_chunked_body() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        await fetch(pool, "POST", "/uploads", stream(b"a", b"", b"b"))
    assert server.received[0].body == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"


async def test_a_large_upload_to_a_slow_reader_arrives_whole() -> None:
    data = os.urandom(8 * 1024 * 1024)

    async def handler(peer: Peer) -> None:
        await asyncio.sleep(0.2)  # the client's writes back up meanwhile
        received = await peer.request()
        assert received is not None
        digest = hashlib.sha256(_dechunk(received.body)).hexdigest().encode()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n" + digest)

    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        _, body = await fetch(pool, "POST", "/uploads", stream(*chunks))
    assert body == hashlib.sha256(data).hexdigest().encode()


def _dechunk(raw: bytes) -> bytes:
    out: list[bytes] = []
    at = 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[end + 2 : end + 2 + size])
        at = end + 4 + size


@pytest.mark.parametrize("target", ["/a b", "/a\r\nx-injected: 1", "/a\nb", "/a\rb", "/a\tb"])
async def test_an_unsafe_target_is_refused_before_anything_is_sent(target: str) -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url(), limit=1) as pool:
        with pytest.raises(ValueError, match="unsafe"):
            await pool.request("GET", target, [], None)
        assert server.connections == 0
        _, body = await fetch(pool)  # and the pool's only slot is still free
    assert body == b"ok"


async def test_a_failing_stream_fails_the_request_with_its_error_as_the_cause() -> None:
    failure = RuntimeError("the client's body broke")

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(0.01)
        raise failure

    async with RawServer(answer_each(OK)) as server, open_pool(server.url(), limit=1) as pool:
        with pytest.raises(ConnectionBroke) as caught:
            await asyncio.wait_for(pool.request("POST", "/uploads", [], body()), WAIT)
        assert caught.value.__cause__ is failure
        _, again = await fetch(pool)  # the slot was given back
    assert again == b"ok"


async def test_an_early_answer_to_a_streamed_upload_stops_the_upload_and_the_connection() -> None:
    stopped = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                await asyncio.sleep(0.002)
                yield b"x" * 16384
        finally:
            stopped.set()

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.reader.readuntil(b"\r\n\r\n")  # the head only: refused on sight
            await peer.send(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            await peer.until_closed()
        else:
            await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool, "POST", "/uploads", endless())
        assert (response.status, body) == (413, b"")
        await asyncio.wait_for(stopped.wait(), WAIT)
        _, again = await fetch(pool)
    assert again == b"ok"
    assert server.connections == 2


# Keep-alive


async def test_a_response_read_to_its_end_and_released_is_reused() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        await fetch(pool, target="/one")
        await fetch(pool, "POST", "/two", b"{}")
    assert server.connections == 1
    assert [r.connection for r in server.received] == [0, 0]


async def test_a_response_released_before_its_end_is_not_reused() -> None:
    dropped = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
            await peer.until_closed()
            dropped.set()
        else:
            await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        response.release()
        await asyncio.wait_for(dropped.wait(), WAIT)
        _, body = await fetch(pool)
    assert body == b"ok"
    assert [r.connection for r in server.received] == [0, 1]


async def test_a_response_closed_even_after_its_end_is_not_reused() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        assert await response.read(WAIT) == b"ok"
        response.close()
        await fetch(pool)
    assert [r.connection for r in server.received] == [0, 1]


async def test_an_answer_with_connection_close_is_not_reused() -> None:
    answer = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        await fetch(pool)
    assert [r.connection for r in server.received] == [0, 1]


async def test_a_pooled_connection_seen_closed_while_idle_is_replaced() -> None:
    close_now = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK)  # keep-alive, and then closed while idle
            await close_now.wait()
        else:
            await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        [idle] = pool._idle
        close_now.set()
        await until(lambda: idle.transport is None)
        response, body = await fetch(pool, "POST", "/again", b"again")
    assert (response.status, body) == (200, b"ok")
    assert [r.connection for r in server.received] == [0, 1]


def _drops_its_second_request(peer: Peer) -> Awaitable[None]:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK)
            await peer.request()  # read, and then the connection drops without an answer
        else:
            await answer_each(OK)(peer)

    return handler(peer)


async def test_an_idempotent_request_on_a_pooled_connection_that_drops_is_sent_again() -> None:
    async with RawServer(_drops_its_second_request) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        response, body = await fetch(pool, "PUT", "/again", b"again")
    assert (response.status, body) == (200, b"ok")
    assert [r.connection for r in server.received] == [0, 0, 1]
    assert server.received[1].body == server.received[2].body == b"again"


async def test_a_post_on_a_pooled_connection_that_drops_is_not_sent_twice() -> None:
    async with RawServer(_drops_its_second_request) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        with pytest.raises(ConnectionBroke):
            await fetch(pool, "POST", "/once", b"once")
    assert [r.connection for r in server.received] == [0, 0]


async def test_a_second_request_waits_for_the_only_slot_until_the_first_is_released() -> None:
    async with RawServer(answer_each(OK)) as server, open_pool(server.url(), limit=1) as pool:
        first = await asyncio.wait_for(pool.request("GET", "/first", [], None), WAIT)
        second = asyncio.ensure_future(pool.request("GET", "/second", [], None))
        try:
            await asyncio.sleep(0.1)
            assert not second.done()
            assert len(server.received) == 1
            assert await first.read(WAIT) == b"ok"
            first.release()
            response = await asyncio.wait_for(second, WAIT)
        finally:
            second.cancel()
        assert await response.read(WAIT) == b"ok"
        response.release()
    assert [r.request_line for r in server.received] == [
        b"GET /v1/first HTTP/1.1",
        b"GET /v1/second HTTP/1.1",
    ]


# What is received


async def test_a_chunked_answer_is_dechunked_and_loses_its_hop_by_hop_headers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"X-Request-Id: req_1\r\n"
        b"openai-processing-ms: 12\r\n"
        b"\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool)
    assert body == b"hello world"
    assert response.headers == [
        (b"Content-Type", b"text/event-stream"),
        (b"X-Request-Id", b"req_1"),
        (b"openai-processing-ms", b"12"),
    ]
    assert response.header(b"content-type") == "text/event-stream"
    assert response.header(b"x-request-id") == "req_1"
    assert response.content_length is None


async def test_an_answer_without_length_or_chunks_ends_with_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst part, ")
        await asyncio.sleep(0.02)
        await peer.send(b"and the rest")

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool)
    assert (response.status, body) == (200, b"first part, and the rest")
    assert response.complete


async def test_an_interim_100_continue_is_skipped() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\nx-interim: yes\r\n\r\n")
        await asyncio.sleep(0.02)
        await peer.send(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-request-id: r\r\n\r\ndone")
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool, "POST", "/files", b"{}")
    assert (response.status, body) == (201, b"done")
    assert response.headers == [(b"content-length", b"4"), (b"x-request-id", b"r")]
    assert response.content_length == 4


async def test_an_unparsable_answer_breaks_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"SPAM SPAM SPAM\r\n\r\n")
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        with pytest.raises(ConnectionBroke):
            await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)


# Timeouts and failures


async def test_an_upstream_that_never_answers_gives_a_read_timeout() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url(), read_timeout=0.2) as pool:
        started = time.monotonic()
        with pytest.raises(ReadTimeout) as caught:
            await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        waited = time.monotonic() - started
    assert isinstance(caught.value, TimeoutError)
    assert 0.15 < waited < 1.0


async def test_a_body_that_goes_quiet_gives_a_read_timeout_after_what_arrived() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        chunks: list[bytes] = []
        with pytest.raises(ReadTimeout):
            await collect(response, chunks, idle_timeout=0.2)
        response.release()
    assert b"".join(chunks) == b"abc"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n",
    ],
    ids=["with-length", "chunked"],
)
async def test_a_connection_that_drops_mid_body_breaks_after_what_arrived(answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await asyncio.sleep(0.02)  # and then the connection drops

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        chunks: list[bytes] = []
        with pytest.raises(ConnectionBroke):
            await collect(response, chunks, idle_timeout=WAIT)
        response.release()
    assert b"".join(chunks) == b"partial"


async def test_a_closed_port_gives_connect_failed_and_frees_the_slot() -> None:
    async with open_pool(f"http://127.0.0.1:{closed_port()}/v1", limit=1) as pool:
        for _ in range(2):
            with pytest.raises(ConnectFailed):
                await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)


async def test_a_listener_with_a_full_backlog_gives_connect_timeout() -> None:
    loop = asyncio.get_running_loop()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: the kernel queue fills and later SYNs are dropped
        port = listener.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                try:
                    await asyncio.wait_for(loop.sock_connect(filler, ("127.0.0.1", port)), 0.1)
                except TimeoutError:
                    break  # the queue is full
            else:
                pytest.skip("this kernel accepts every connection: no connect timeout to provoke")
            url = f"http://127.0.0.1:{port}/v1"
            async with open_pool(url, connect_timeout=0.2) as pool:
                with pytest.raises(ConnectTimeout):
                    await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        finally:
            for filler in fillers:
                filler.close()


# Backpressure


async def test_a_reader_that_does_not_read_holds_back_a_large_body() -> None:
    data = os.urandom(8 * 1024 * 1024)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(data) + data)
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        most = 0
        for _ in range(30):
            await asyncio.sleep(0.01)
            most = max(most, response._buffered)
        assert _HIGH_WATER <= most <= 2 * _HIGH_WATER
        digest = hashlib.sha256()
        async for chunk in response.iter_chunks(idle_timeout=WAIT):
            digest.update(chunk)
        response.release()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_read_returns_a_body_larger_than_the_buffer_limit() -> None:
    data = os.urandom(4 * _HIGH_WATER)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(data) + data)
        await peer.until_closed()

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), WAIT)
        try:
            body = await response.read(0.5)
        finally:
            response.release()
    assert body == data


async def test_a_connection_whose_answer_filled_the_buffer_reads_the_next_answer() -> None:
    size = _HIGH_WATER + 10
    first = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(first + b"a" * (size - 20))  # under the limit: still reading
        await asyncio.sleep(0.05)
        await peer.send(b"b" * 20)  # over it, and the answer's end, in one read
        await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url(), read_timeout=0.5) as pool:
        _, body = await fetch(pool)
        assert body == b"a" * (size - 20) + b"b" * 20
        response, again = await fetch(pool)
    assert (response.status, again) == (200, b"ok")
    assert [r.connection for r in server.received] == [0, 0]


async def test_an_https_upstream_is_verified_and_kept_alive() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with (
        RawServer(answer_each(OK), tls=server_tls) as server,
        open_pool(server.url(), ssl_context=client_tls) as pool,
    ):
        for _ in range(2):
            response, body = await fetch(pool, "POST", "/chat/completions", b"{}")
            assert (response.status, body) == (200, b"ok")
    assert server.connections == 1
    assert server.received[0].head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


async def test_an_https_upstream_with_an_unknown_certificate_is_refused() -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_tls)
    async with (
        RawServer(answer_each(OK), tls=server_tls) as server,
        open_pool(server.url()) as pool,
    ):
        with pytest.raises(ConnectFailed):
            await fetch(pool)


async def test_a_pool_busy_past_the_connect_timeout_gives_connect_timeout() -> None:
    async with (
        RawServer(answer_each(OK)) as server,
        open_pool(server.url(), limit=1, connect_timeout=0.2) as pool,
    ):
        first = await asyncio.wait_for(pool.request("GET", "/first", [], None), WAIT)
        with pytest.raises(ConnectTimeout):
            await pool.request("GET", "/second", [], None)
        first.release()
        _, body = await fetch(pool)
    assert body == b"ok"
