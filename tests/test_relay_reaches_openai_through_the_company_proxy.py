"""A company reaches the internet only through its egress proxy: the relay's calls to OpenAI
(the `/v1` pass-through and the WebSockets) go through the proxy the standard variables name,
`NO_PROXY` sends them direct, and the proxy's credentials never reach the relay's log."""

from __future__ import annotations

import logging
from pathlib import Path

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from egressproxy import egress_proxy
from fakeupstream import FakeUpstream
from nginxupstream import nginx_upstream
from servers import RELAY_KEY, relay_in_thread

USER, PASSWORD = "relay", "proxy-secret-4711"


async def _calls(base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=RELAY_KEY, max_retries=0) as sdk:
        chat = await sdk.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert chat.choices[0].message.content
        async with sdk.responses.connect() as connection:
            await connection.response.create(model="gpt-4.1", input="hello")
            async for event in connection:
                if event.type in ("response.completed", "error"):
                    assert event.type == "response.completed"
                    break


async def test_every_call_to_openai_goes_through_the_proxy_with_its_credentials(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with egress_proxy(credentials=(USER, PASSWORD)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(USER, PASSWORD))
        with relay_in_thread(upstream.base_url) as relay:
            monkeypatch.delenv("HTTP_PROXY")  # read once, at start-up; the SDK goes direct
            await _calls(relay.base_url)
    origin = upstream.base_url.removesuffix("/v1")
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("POST", f"{origin}/v1/chat/completions"),
        ("GET", f"{origin.replace('http', 'ws')}/v1/responses"),  # the WebSocket's handshake
    ]
    assert all(r.authorization is not None for r in proxy.requests)
    assert PASSWORD not in caplog.text


async def test_an_https_upstream_is_reached_only_through_connect_tunnels(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with (
        nginx_upstream(upstream.base_url, tmp_path) as (base_url, ca_file),
        egress_proxy(credentials=(USER, PASSWORD)) as proxy,
        relay_in_thread(
            base_url,
            RELAY_UPSTREAM_PROXY=proxy.url(USER, PASSWORD),
            RELAY_UPSTREAM_CA_FILE=str(ca_file),
        ) as relay,
    ):
        await _calls(relay.base_url)
    authority = base_url.removeprefix("https://").removesuffix("/v1")
    assert proxy.requests
    assert {(r.method, r.target) for r in proxy.requests} == {("CONNECT", authority)}
    paths = [r.path for r in upstream.log]
    assert "/v1/chat/completions" in paths
    assert "/v1/responses" in paths  # the WebSocket, through its own tunnel


async def test_no_proxy_naming_the_upstream_sends_it_direct(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with egress_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        with relay_in_thread(upstream.base_url) as relay:
            monkeypatch.delenv("HTTP_PROXY")
            await _calls(relay.base_url)
    assert proxy.requests == []


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_what_the_proxy_refuses_is_a_502_that_says_so_never_a_407(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    """For an https upstream the tunnel is refused; for an http one, each request."""
    caplog.set_level(logging.DEBUG, logger="teamrelay")
    with (
        egress_proxy(credentials=(USER, PASSWORD)) as proxy,
        relay_in_thread(
            upstream.base_url.replace("http://", f"{scheme}://"),
            RELAY_UPSTREAM_PROXY=proxy.url(USER, "not-" + PASSWORD),
        ) as relay,
    ):
        sdk = openai.AsyncOpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.chat.completions.create(
                model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
            )
        await sdk.close()
        url = relay.base_url.replace("http://", "ws://") + "/responses"
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url, additional_headers={"Authorization": f"Bearer {RELAY_KEY}"}):
                pass
    assert refused.value.status_code == 502
    assert "the egress proxy refused the" in refused.value.message
    assert caught.value.response.status_code == 502
    assert b"the egress proxy refused the" in caught.value.response.body
    assert "(407)" in caplog.text  # the relay's log says why
    assert "not-" + PASSWORD not in caplog.text
