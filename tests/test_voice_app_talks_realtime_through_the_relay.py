"""A team's voice app does Realtime through the relay with the official SDK, as against OpenAI:
its server talks to the model over a WebSocket, mints client secrets for browsers, and sets up
a WebRTC call whose events it then follows over the call's own WebSocket."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import openai
import pytest

from fakeupstream import FakeUpstream
from fakeupstream.api_realtime import CALLS, connection_of, sdp_answer
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay

BROWSER_OFFER = (
    "v=0\r\no=- 7126431 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
)


@pytest.fixture
async def sdk(relay: RunningRelay, upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0
    ) as client:
        yield client


async def test_voice_bot_holds_a_spoken_conversation_over_the_websocket(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    async with sdk.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={"type": "realtime", "instructions": "You are the team's helpdesk."}
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "my laptop will not boot"}],
            }
        )
        await conn.response.create()
        types, audio, transcript = [], b"", ""
        async for event in conn:
            types.append(event.type)
            if event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.delta":
                transcript += event.delta
            elif event.type == "response.done":
                done = event
                break
    assert types[:3] == ["session.created", "session.updated", "conversation.item.added"]
    assert types[3:5] == ["response.created", "response.output_item.added"]
    assert transcript.endswith("You said: my laptop will not boot")
    assert len(audio) == 32 * len(transcript.split())
    assert done.response.usage is not None
    assert done.response.usage.output_token_details is not None
    assert done.response.usage.output_token_details.audio_tokens == len(transcript.split())
    received = upstream.requests_to("/v1/realtime")[0]
    await upstream.wait_done_async(received)
    assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"
    assert connection_of(received).close_code == 1000


async def test_browser_gets_a_client_secret_minted_through_the_relay(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    secret = await sdk.realtime.client_secrets.create(
        session={
            "type": "realtime",
            "model": "gpt-realtime",
            "audio": {"output": {"voice": "marin"}},
        }
    )
    assert secret.value.startswith("ek_")
    assert secret.session.type == "realtime"
    [received] = upstream.requests_to("/v1/realtime/client_secrets")
    assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"


async def test_server_sets_up_a_webrtc_call_follows_it_and_hangs_up(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    created = await sdk.realtime.calls.with_raw_response.create(
        sdp=BROWSER_OFFER, session={"type": "realtime", "model": "gpt-realtime"}
    )
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/sdp"
    answer = created.parse()
    assert answer.content == sdp_answer(BROWSER_OFFER.encode())
    call_id = created.headers["location"].rsplit("/", 1)[1]

    async with sdk.realtime.connect(call_id=call_id) as sideband:
        first = await sideband.recv()
        assert first.type == "session.created"
        await sideband.response.create(response={"instructions": "Greet the caller."})
        async for event in sideband:
            if event.type == "response.done":
                break
    [joined] = upstream.requests_to("/v1/realtime")
    assert joined.query == f"call_id={call_id}"

    await sdk.realtime.calls.hangup(call_id)
    assert CALLS[call_id].state == "ended"
