"""A realtime call belongs to the key that placed it: its id comes only in the `Location` of
the SDP answer, and another member can neither accept, refer nor hang up the call, nor attach
to it over the sideband WebSocket (`?call_id=`)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from websockets.exceptions import InvalidStatus

from fakeupstream import FakeUpstream
from fakeupstream.api_realtime import CALLS
from servers import relay_in_thread
from teamkeys import create_keys_async

OFFER = (
    "v=0\r\no=- 7126431 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
)


async def test_only_the_caller_can_steer_attach_to_or_end_a_call(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/calls.db"
    secrets = await create_keys_async(url, alice={}, bob={})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        async with (
            openai.AsyncOpenAI(
                base_url=relay.base_url, api_key=secrets["alice"], max_retries=0
            ) as alice,
            openai.AsyncOpenAI(
                base_url=relay.base_url, api_key=secrets["bob"], max_retries=0
            ) as bob,
        ):
            created = await alice.realtime.calls.with_raw_response.create(
                sdp=OFFER, session={"type": "realtime", "model": "gpt-realtime"}
            )
            call_id = created.headers["location"].rsplit("/", 1)[1]
            assert call_id.startswith("rtc_")

            attempts = [
                bob.realtime.calls.accept(call_id, type="realtime", model="gpt-realtime"),
                bob.realtime.calls.refer(call_id, target_uri="tel:+14155550123"),
                bob.realtime.calls.hangup(call_id),
            ]
            for attempt in attempts:
                with pytest.raises(openai.NotFoundError):
                    await attempt
            sideband_before = len(upstream.requests_to("/v1/realtime"))
            with pytest.raises(InvalidStatus) as refused:
                async with bob.realtime.connect(call_id=call_id) as sideband:
                    await sideband.recv()
            assert refused.value.response.status_code == 404
            assert len(upstream.requests_to("/v1/realtime")) == sideband_before
            assert CALLS[call_id].state != "ended"

            async with alice.realtime.connect(call_id=call_id) as sideband:
                assert (await sideband.recv()).type == "session.created"
            await alice.realtime.calls.hangup(call_id)
    assert CALLS[call_id].state == "ended"
