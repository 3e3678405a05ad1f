"""A member's script times out and closes its connection while OpenAI is still thinking: the
relay closes its upstream connection within a second, not at the 600 s read timeout, and the
slot it held serves the next request."""

from __future__ import annotations

import asyncio
import json
import time

import openai

from servers import RELAY_KEY, relay_in_thread
from test_connections import Peer, RawServer, until

MODELS = json.dumps({"object": "list", "data": []}).encode()
MODELS_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(MODELS), MODELS)
)
CHAT = json.dumps({"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]})


async def test_the_upstream_is_closed_soon_after_the_client_leaves() -> None:
    closed: list[float] = []

    async def upstream(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()  # and never answers
            await peer.until_closed()
            closed.append(time.monotonic())
        else:
            while await peer.request() is not None:
                await peer.send(MODELS_ANSWER)

    async with RawServer(upstream) as server:
        with relay_in_thread(server.url(), RELAY_UPSTREAM_CONNECTIONS="1") as relay:
            host, port = relay.url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: relay\r\n"
                b"authorization: Bearer %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (RELAY_KEY.encode(), len(CHAT), CHAT.encode())
            )
            await writer.drain()
            await until(lambda: len(server.received) == 1)
            writer.close()
            left = time.monotonic()
            await until(lambda: bool(closed))
            async with openai.AsyncOpenAI(
                base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0, timeout=5
            ) as sdk:
                models = await sdk.models.list()
    assert closed[0] - left < 1.5
    assert models.data == []
