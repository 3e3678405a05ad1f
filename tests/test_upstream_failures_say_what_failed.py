"""When the relay cannot reach OpenAI, the member's error says which step failed (the TLS
certificate, a refused connection, every upstream connection busy) and the operator's log says
why, once, with the request id, and with no key in it."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

import openai
import pytest
import trustme

from servers import RELAY_KEY, UPSTREAM_KEY, relay_in_thread
from test_connections import OK, Peer, RawServer, answer_each, until

CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}


def _sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=RELAY_KEY, max_retries=0, timeout=10)


def _logged(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if request_id in r.getMessage()]


async def test_an_untrusted_certificate_is_named_to_the_member_and_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_tls)
    async with RawServer(answer_each(OK), tls=server_tls) as server:
        with relay_in_thread(server.url()) as relay:
            async with _sdk(relay.base_url) as sdk:
                with pytest.raises(openai.APIStatusError) as caught:
                    await sdk.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.status_code == 502
    assert "TLS certificate verification failed" in caught.value.message
    request_id = caught.value.response.headers["x-relay-request-id"]
    [line] = _logged(caplog, request_id)
    assert "certificate" in line
    assert "127.0.0.1" in line
    assert "issuer 'OU=Testing CA" in line  # who signed what it presented
    assert UPSTREAM_KEY not in caplog.text
    assert RELAY_KEY not in caplog.text


async def test_a_refused_connection_is_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with relay_in_thread(f"http://127.0.0.1:{port}/v1") as relay:
        async with _sdk(relay.base_url) as sdk:
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk.models.list()
    assert caught.value.status_code == 502
    assert "connection refused" in caught.value.message
    request_id = caught.value.response.headers["x-relay-request-id"]
    assert len(_logged(caplog, request_id)) == 1


async def test_every_connection_busy_is_a_504_that_says_so() -> None:
    async def upstream(peer: Peer) -> None:
        await peer.request()  # and never answers
        await peer.until_closed()

    async with RawServer(upstream) as server:
        with relay_in_thread(
            server.url(), RELAY_UPSTREAM_CONNECTIONS="1", RELAY_CONNECT_TIMEOUT="0.3"
        ) as relay:
            async with _sdk(relay.base_url) as sdk:
                first = asyncio.ensure_future(sdk.models.list())
                await until(lambda: len(server.received) == 1)
                with pytest.raises(openai.APIStatusError) as caught:
                    await sdk.models.list()
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first
    assert caught.value.status_code == 504
    assert "all upstream connections are busy" in caught.value.message
