"""An operator runs `teamrelay serve --log-level debug` to chase a problem: members call over
HTTP, over both WebSockets (the key as a header and as the browser's subprotocol), through
`/mcp` and with OAuth sign-ins, and no relay key, upstream key or OAuth secret reaches the log,
in text or JSON, although every library logs its handshakes at that level."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fakeupstream import FakeUpstream
from oauthclient import register
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_process

SIGNING_KEY = "signing-key-0123456789abcdef0123"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
WRONG_KEY = "tr-wrong-key-123456"


async def _member_calls(relay: RunningRelay, key: str) -> None:
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=key, max_retries=0) as sdk:
        await sdk.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hello"}]
        )
        async with sdk.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime", "instructions": "brief"})
            async for event in conn:
                if event.type == "session.updated":
                    break
        async with sdk.responses.connect() as conn:
            await conn.response.create(model="gpt-4.1", input="hello")
            async for event in conn:
                if event.type in ("response.completed", "error"):
                    break
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=20) as http,
        streamable_http_client(relay.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()


async def _browser_and_mistakes(relay: RunningRelay) -> None:
    socket = relay.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime"
    async with connect(socket, subprotocols=["realtime", f"openai-insecure-api-key.{RELAY_KEY}"]):  # type: ignore[list-item]
        pass
    for url, headers in (
        (socket, {"Authorization": f"Bearer {WRONG_KEY}"}),
        (f"{socket}&api_key={RELAY_KEY}", {}),
    ):
        with pytest.raises(InvalidStatus):
            async with connect(url, additional_headers=headers):
                pass


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_debug_logs_name_no_key_or_token(upstream: FakeUpstream, log_format: str) -> None:
    env: dict[str, Any] = {
        "RELAY_OAUTH_ENABLED": "true",
        "RELAY_SIGNING_KEY": SIGNING_KEY,
        "RELAY_METRICS_TOKEN": METRICS_TOKEN,
        "LOG_FORMAT": log_format,
    }
    with relay_process(upstream.base_url, log_level="debug", **env) as relay:
        gpt = register(relay.url, "http://localhost:8979/callback", method="client_secret_post")
        signed = gpt.sign_in(RELAY_KEY)
        tokens = gpt.exchange(signed).json()
        rotated = gpt.refresh(tokens["refresh_token"]).json()
        asyncio.run(_member_calls(relay, RELAY_KEY))
        asyncio.run(_member_calls(relay, rotated["access_token"]))
        asyncio.run(_browser_and_mistakes(relay))
        scrape = httpx2.get(
            relay.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert scrape.status_code == 200
        assert gpt.revoke(rotated["refresh_token"]).status_code == 200
        gpt.close()
        assert relay.process is not None
        assert relay.output is not None
        relay.process.terminate()
        relay.process.wait(10)
        relay.output.seek(0)
        logged = relay.output.read().decode()
    secrets = {
        "relay key": RELAY_KEY,
        "wrong key": WRONG_KEY,
        "upstream key": UPSTREAM_KEY,
        "signing key": SIGNING_KEY,
        "metrics token": METRICS_TOKEN,
        "client secret": gpt.client_secret or "",
        "code": signed.code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "rotated access token": rotated["access_token"],
        "rotated refresh token": rotated["refresh_token"],
    }
    assert all(secrets.values())
    for what, secret in secrets.items():
        assert secret not in logged, f"{what} logged"
    assert "< authorization: [redacted]" in logged  # the handshakes were logged
