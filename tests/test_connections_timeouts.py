"""The `/v1` client lets go of the upstream when nobody waits any more: a client that left
before the answer's head, an upstream that stopped reading a streamed upload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from teamrelay.connections import ClientLeft, ConnectionPool, ReadTimeout, SendTimeout
from test_connections import OK, WAIT, Handler, Peer, RawServer, answer_each, fetch, stream, until


def slow_then_ok(closed: list[float]) -> Handler:
    """The first connection reads its request and never answers; it notes when it is closed."""

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.until_closed()
            closed.append(time.monotonic())
        else:
            await answer_each(OK)(peer)

    return handler


def open_pool(url: str, send_timeout: float = 60.0) -> ConnectionPool:
    """One slot, and a read timeout far past every wait here."""
    return ConnectionPool(
        url, limit=1, connect_timeout=WAIT, read_timeout=30, send_timeout=send_timeout
    )


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_client_gone_before_the_head_closes_the_upstream_and_frees_the_slot(
    streamed: bool,
) -> None:
    closed: list[float] = []
    left = asyncio.Event()

    async def gone() -> None:
        await left.wait()

    async with RawServer(slow_then_ok(closed)) as server:
        pool = open_pool(server.url())
        body = stream(b"{}") if streamed else b"{}"
        request = asyncio.ensure_future(pool.request("POST", "/responses", [], body, gone=gone))
        await asyncio.sleep(0.1)
        left.set()
        started = time.monotonic()
        with pytest.raises(ClientLeft):
            await asyncio.wait_for(request, WAIT)
        assert time.monotonic() - started < 1.0
        response, again = await fetch(pool)  # the only slot is free again
        await until(lambda: bool(closed))
        pool.close()
    assert (response.status, again) == (200, b"ok")
    assert closed[0] - started < 1.0


async def test_a_quick_answer_never_asks_whether_the_client_left() -> None:
    asked = 0

    async def gone() -> None:
        nonlocal asked
        asked += 1
        await asyncio.Event().wait()

    async with RawServer(answer_each(OK)) as server:
        pool = open_pool(server.url())
        for _ in range(3):
            response = await pool.request("GET", "/models", [], None, gone=gone)
            assert await response.read(WAIT) == b"ok"
            response.release()
        pool.close()
    assert asked == 0


async def test_an_upstream_that_stops_reading_an_upload_fails_it_at_the_send_timeout() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(WAIT * 2)  # reads nothing of the body
        else:
            await answer_each(OK)(peer)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    async with RawServer(handler) as server:
        pool = open_pool(server.url(), send_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SendTimeout):
            await asyncio.wait_for(pool.request("POST", "/files", [], endless()), WAIT)
        assert time.monotonic() - started < 1.5
        _, body = await fetch(pool)  # the slot was given back
        pool.close()
    assert body == b"ok"


async def test_the_read_timeout_still_ends_the_wait_while_the_client_is_watched() -> None:
    async def stays() -> None:
        await asyncio.Event().wait()

    closed: list[float] = []
    async with RawServer(slow_then_ok(closed)) as server:
        pool = ConnectionPool(server.url(), limit=1, connect_timeout=WAIT, read_timeout=0.8)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await asyncio.wait_for(pool.request("GET", "/models", [], None, gone=stays), WAIT)
        took = time.monotonic() - started
        _, body = await fetch(pool)
        pool.close()
    assert 0.7 < took < 1.5
    assert body == b"ok"


async def test_a_failing_watch_counts_as_the_client_gone() -> None:
    async def broken() -> None:
        raise RuntimeError("the ASGI server's receive failed")

    closed: list[float] = []
    async with RawServer(slow_then_ok(closed)) as server:
        pool = open_pool(server.url())
        with pytest.raises(ClientLeft):
            await asyncio.wait_for(pool.request("GET", "/models", [], None, gone=broken), WAIT)
        _, body = await fetch(pool)
        pool.close()
    assert body == b"ok"
