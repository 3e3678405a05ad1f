"""What the `/v1` client accepts as an answer, against raw servers sending chosen bytes: no
bytes nobody asked for reach a client, heads have limits, odd status codes are refused, bodies
the status forbids are dropped, `Keep-Alive: timeout=` and trailers are handled."""

from __future__ import annotations

import asyncio

import pytest

from teamrelay.connections import InvalidAnswer, UpstreamError
from test_connections import OK, WAIT, Peer, RawServer, answer_each, fetch, open_pool

STRAY = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-stray: 1\r\n\r\nstray"


# Desync


@pytest.mark.parametrize("stray", [STRAY, STRAY[:20]], ids=["whole", "a-head-begun"])
async def test_bytes_after_the_answer_in_the_same_read_never_reach_the_client(
    stray: bytes,
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK + stray)
            if await peer.request() is not None:  # the rest of the stray, then the answer
                await peer.send(STRAY[20:] + OK)
            await peer.until_closed()
        else:
            await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        first, body = await fetch(pool)
        second, again = await fetch(pool)
    assert (first.headers, body) == ([(b"content-length", b"2")], b"ok")
    assert (second.headers, again) == ([(b"content-length", b"2")], b"ok")
    assert [r.connection for r in server.received] == [0, 1]


async def test_a_stray_answer_on_an_idle_connection_is_not_the_next_requests_answer() -> None:
    sent = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK)
            await asyncio.sleep(0.05)
            # a head and the start of a body, while the connection sits in the pool
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nstray")
            sent.set()
            await answer_each(OK)(peer)
        else:
            await answer_each(OK)(peer)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        await asyncio.wait_for(sent.wait(), WAIT)
        await asyncio.sleep(0.05)
        response, body = await fetch(pool, target="/next")
    assert (response.status, body) == (200, b"ok")
    assert [r.connection for r in server.received] == [0, 1]


# Limits on the head


async def test_an_endless_header_is_refused_once_the_head_passes_its_limit() -> None:
    written = 0

    async def handler(peer: Peer) -> None:
        nonlocal written
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nx-big: ")
        while written < 32 * 2**20:
            await peer.send(b"a" * 65536)
            written += 65536

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        with pytest.raises(InvalidAnswer, match="head over"):
            await fetch(pool)
    assert written < 32 * 2**20  # the connection was closed long before


@pytest.mark.parametrize(
    "head",
    [
        b"x-long: " + b"a" * 9000 + b"\r\n",
        b"".join(b"x-many-%d: %s\r\n" % (i, b"b" * 300) for i in range(250)),
        b"".join(b"x-%d: 1\r\n" % i for i in range(300)),
    ],
    ids=["one-line-over-8k", "over-64k-in-all", "too-many-headers"],
)
async def test_a_head_over_its_limits_is_refused(head: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + head + b"content-length: 2\r\n\r\nok"
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        with pytest.raises(InvalidAnswer):
            await fetch(pool)


@pytest.mark.parametrize("status", [b"101 Switching Protocols", b"600 Beyond", b"999 Odd"])
async def test_an_odd_status_or_an_unasked_upgrade_is_refused(status: bytes) -> None:
    answer = b"HTTP/1.1 %s\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n" % status
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        with pytest.raises(InvalidAnswer, match=r"status code|upgrade"):
            await fetch(pool)


async def test_an_interim_answer_is_skipped_for_the_real_one() -> None:
    answer = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool)
    assert (response.status, response.headers, body) == (200, [(b"content-length", b"2")], b"ok")


# Bodies, keep-alive, trailers


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_a_204_or_304_has_no_body_and_no_length_whatever_it_says(status: bytes) -> None:
    answer = b"HTTP/1.1 %s\r\ncontent-length: 5\r\netag: x\r\n\r\n" % status
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool)
        again, _ = await fetch(pool)
    assert (response.headers, response.content_length, body) == ([(b"etag", b"x")], 0, b"")
    assert again.status == response.status
    assert [r.connection for r in server.received] == [0, 0]


async def test_keep_alive_timeout_from_the_upstream_shortens_the_idle_limit() -> None:
    answer = b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=1, max=100\r\ncontent-length: 2\r\n\r\nok"
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        await fetch(pool)
        await fetch(pool)  # at once: reused
        await asyncio.sleep(0.6)
        await fetch(pool)  # past timeout minus the margin: a new connection
    assert [r.connection for r in server.received] == [0, 0, 1]


@pytest.mark.parametrize("split", [False, True], ids=["same-read", "later-read"])
async def test_trailers_are_dropped_never_mixed_into_the_head(split: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
    rest = b"2\r\nok\r\n0\r\nx-checksum: abc\r\n\r\n"

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if split:
                await peer.send(head)
                await asyncio.sleep(0.05)
                await peer.send(rest)
            else:
                await peer.send(head + rest)

    async with RawServer(handler) as server, open_pool(server.url()) as pool:
        response, body = await fetch(pool)
        _, again = await fetch(pool)
    assert (response.headers, body, again) == ([], b"ok", b"ok")
    assert [r.connection for r in server.received] == [0, 0]


async def test_an_invalid_answer_is_an_upstream_error_with_a_clear_reason() -> None:
    answer = b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n"
    async with RawServer(answer_each(answer)) as server, open_pool(server.url()) as pool:
        with pytest.raises(UpstreamError) as caught:
            await fetch(pool)
    assert caught.value.reason == "the upstream's answer was invalid"
    assert str(caught.value) == "the upstream sent the status code 600"
