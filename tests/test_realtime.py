"""Realtime through the relay: the WebSocket bridge, its refusals, closes, backpressure, memory,
and the HTTP side of Realtime (SDP calls, call control, client secrets)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fakeupstream import FakeUpstream, Received
from fakeupstream.api_realtime import CALLS, connection_of, sdp_answer
from servers import (
    ADMIN,
    RELAY_KEY,
    UPSTREAM_KEY,
    RunningRelay,
    relay_env,
    relay_in_thread,
    relay_process,
)
from teamkeys import create_keys_async
from teamrelay.app import create_app
from teamrelay.config import Settings
from teamrelay.realtime import RealtimeBridge, RealtimeSession

WRONG_KEY = "tr-wrong-key-123456"
MODEL_PATH = "/realtime?model=gpt-realtime"
OFFER = (
    b"v=0\r\no=- 5498186869 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    b"a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    b"a=ice-ufrag:Tq3v\r\na=ice-pwd:  spaces kept \xc3\xa9\r\na=rtpmap:111 opus/48000/2\r\n"
)


def ws_url(relay: RunningRelay, path: str = MODEL_PATH) -> str:
    return relay.base_url.replace("http://", "ws://", 1) + path


@asynccontextmanager
async def open_session(
    relay: RunningRelay,
    path: str = MODEL_PATH,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    **options: Any,
) -> AsyncIterator[ClientConnection]:
    """A client session through the relay, the relay key as a bearer header unless told."""
    sent = {"Authorization": f"Bearer {RELAY_KEY}"} if headers is None else headers
    async with connect(
        ws_url(relay, path),
        additional_headers=sent,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=5,
        close_timeout=2,
        **options,
    ) as ws:
        yield ws


async def event(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(message, str)
    value: dict[str, Any] = json.loads(message)
    return value


async def events_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != last:
        events.append(await event(ws))
    return events


async def only_connection(upstream: FakeUpstream) -> Received:
    await upstream.wait_for_async(lambda: len(upstream.requests_to("/v1/realtime")) == 1)
    return upstream.requests_to("/v1/realtime")[0]


# --- frames both ways ------------------------------------------------------------------------


async def test_events_arrive_in_the_order_the_upstream_sent_them(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    async with open_session(relay) as ws:
        created = await event(ws)
        assert created["type"] == "session.created"
        assert created["session"]["model"] == "gpt-realtime"
        update = {"output_modalities": ["text"], "instructions": "Answer in one line"}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        updated = await event(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["instructions"] == "Answer in one line"
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.output_item.added"]
    assert set(types[2:-1]) == {"response.output_text.delta"}
    text = "".join(e["delta"] for e in events[2:-1])
    assert text == events[-1]["response"]["output"][0]["content"][0]["text"]
    received = await only_connection(upstream)
    await upstream.wait_done_async(received)
    assert connection_of(received).events_in == ["session.update", "response.create"]
    assert len(received.events_sent_at) == 2 + len(events)


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 2**20])
async def test_binary_frames_arrive_byte_identical(
    relay: RunningRelay, upstream: FakeUpstream, size: int
) -> None:
    frames = [hashlib.sha256(bytes([i])).digest() * (size // 32) + bytes(size % 32) for i in (1, 2)]
    async with open_session(relay, max_size=2**22) as ws:
        await event(ws)
        for frame in frames:
            await ws.send(frame)
        back = [await asyncio.wait_for(ws.recv(), 5) for _ in frames]
    assert back == frames
    received = await only_connection(upstream)
    await upstream.wait_done_async(received)
    assert connection_of(received).binary_bytes_in == 2 * size


async def test_text_and_binary_interleaved_keep_their_order(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    async with open_session(relay) as ws:
        await event(ws)
        for i in range(50):
            if i % 2:
                await ws.send(i.to_bytes(2, "big"))
            else:
                await ws.send(json.dumps({"type": "fake.echo", "n": i, "text": "é✓"}))
        back = [await asyncio.wait_for(ws.recv(), 5) for _ in range(50)]
    for i, message in enumerate(back):
        if i % 2:
            assert message == i.to_bytes(2, "big")
        else:
            assert isinstance(message, str)
            assert json.loads(message) == {"type": "fake.echo", "n": i, "text": "é✓"}


# --- who may connect -------------------------------------------------------------------------


async def test_browser_subprotocol_key_is_accepted_and_never_sent_upstream(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    offered = ["realtime", f"openai-insecure-api-key.{RELAY_KEY}", "openai-beta.realtime-v1"]
    async with open_session(relay, headers={}, subprotocols=offered) as ws:
        assert ws.subprotocol == "realtime"
        assert (await event(ws))["type"] == "session.created"
    received = await only_connection(upstream)
    assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"
    assert received.header("sec-websocket-protocol") == "realtime,openai-beta.realtime-v1"
    assert all(RELAY_KEY not in value for _, value in received.headers)


async def test_x_relay_key_header_and_openai_beta_are_honoured(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    headers = {"X-Relay-Key": RELAY_KEY, "OpenAI-Beta": "realtime=v1"}
    async with open_session(relay, headers=headers) as ws:
        assert ws.subprotocol is None
        await event(ws)
    received = await only_connection(upstream)
    assert received.header("openai-beta") == "realtime=v1"
    assert received.header("x-relay-key") is None
    assert received.target == "/v1/realtime?model=gpt-realtime"


@pytest.mark.parametrize(
    ("headers", "subprotocols"),
    [
        ({"Authorization": f"Bearer {WRONG_KEY}"}, None),
        ({"X-Relay-Key": WRONG_KEY}, None),
        ({}, ["realtime", f"openai-insecure-api-key.{WRONG_KEY}"]),
        ({}, ["realtime"]),
    ],
    ids=["bearer", "x-relay-key", "subprotocol", "none"],
)
async def test_wrong_relay_key_is_refused_before_any_upstream_connection(
    relay: RunningRelay,
    upstream: FakeUpstream,
    headers: dict[str, str],
    subprotocols: list[str] | None,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_session(relay, headers=headers, subprotocols=subprotocols):
            pass
    answer = refused.value.response
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body)["error"]["code"] == "invalid_api_key"
    await asyncio.sleep(0.1)
    assert list(upstream.log) == []


async def test_upstream_key_never_reaches_the_client(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    seen: list[str] = []
    async with open_session(relay) as ws:
        assert ws.response is not None
        exposed = "".join(f"{k}:{v}" for k, v in ws.response.headers.raw_items())
        seen.append(json.dumps(await event(ws)))
        await ws.send(json.dumps({"type": "response.create"}))
        seen.extend(json.dumps(e) for e in await events_until(ws, "response.done"))
        await ws.send(json.dumps({"type": "no.such.event"}))
        seen.append(json.dumps(await event(ws)))
    assert "x-relay-request-id" in exposed.lower()
    assert "x-request-id" in exposed.lower()
    for text in [exposed, *seen]:
        assert UPSTREAM_KEY not in text
        assert UPSTREAM_KEY[8:] not in text


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/realtime/nowhere?model=gpt-realtime", 404, "unknown_url"),
        ("/models", 400, "not_a_websocket"),
        ("/organization/users", 403, "blocked_operation"),
    ],
)
async def test_paths_the_catalog_refuses_never_reach_upstream(
    relay: RunningRelay, upstream: FakeUpstream, path: str, status: int, code: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_session(relay, path):
            pass
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["error"]["code"] == code
    assert list(upstream.log) == []


def test_model_allowlist_is_checked_on_the_query(upstream: FakeUpstream) -> None:
    async def attempt(running: RunningRelay, path: str) -> int | str:
        try:
            async with open_session(running, path) as ws:
                await event(ws)
        except InvalidStatus as refused:
            return json.loads(refused.response.body)["error"]["code"]  # type: ignore[no-any-return]
        return 101

    async def attempts(running: RunningRelay) -> list[int | str]:
        paths = [
            "/realtime?model=gpt-realtime-mini",
            "/realtime?model=gpt-4o-realtime",
            "/realtime",
        ]
        return [await attempt(running, path) for path in paths]

    with relay_in_thread(upstream.base_url, RELAY_MODEL_ALLOWLIST="gpt-realtime*") as running:
        assert asyncio.run(asyncio.wait_for(attempts(running), 10)) == [
            101,
            "model_not_allowed",
            "model_not_allowed",
        ]
    assert [r.query for r in upstream.requests_to("/v1/realtime")] == ["model=gpt-realtime-mini"]


async def test_upstream_refusal_is_answered_with_its_status(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_session(relay, "/realtime"):
            pass
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["error"]["code"] == "upstream_refused"
    assert len(upstream.requests_to("/v1/realtime")) == 1


def test_unreachable_upstream_is_a_502() -> None:
    async def attempt(running: RunningRelay) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with open_session(running):
                pass
        return refused.value.response.status_code

    with relay_in_thread("http://127.0.0.1:9/v1") as running:
        assert asyncio.run(attempt(running)) == 502


# --- closing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 4001])
async def test_client_close_reaches_upstream_within_a_second_with_its_code(
    relay: RunningRelay, upstream: FakeUpstream, code: int
) -> None:
    async with open_session(relay) as ws:
        await event(ws)
        received = await only_connection(upstream)
        closed_at = time.monotonic()
        await ws.close(code, "client done")
    await upstream.wait_done_async(received, timeout=1)
    assert received.finished_at is not None
    assert received.finished_at - closed_at < 1
    assert connection_of(received).close_code == code


@pytest.mark.parametrize("code", [1000, 1011, 4002])
async def test_upstream_close_reaches_client_within_a_second_with_its_code(
    relay: RunningRelay, upstream: FakeUpstream, code: int
) -> None:
    async with open_session(relay) as ws:
        await event(ws)
        await ws.send(json.dumps({"type": "fake.close", "code": code}))
        closed_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 1)
    assert time.monotonic() - closed_at < 1
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, "fake.close")


async def test_client_vanishing_closes_upstream_as_going_away(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    async with open_session(relay) as ws:
        await event(ws)
        received = await only_connection(upstream)
        ws.transport.abort()
    await upstream.wait_done_async(received, timeout=1)
    # uvicorn reports a vanished client as 1005 (no status), which goes upstream as 1000.
    assert connection_of(received).close_code in (1000, 1001)


# --- backpressure and memory -----------------------------------------------------------------


async def test_a_client_that_does_not_read_holds_the_upstream_back(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    count, size = 400, 256 * 1024
    # Without compression: deflated zeros would make the flood tiny on the client's hop.
    async with open_session(relay, max_size=2**20, max_queue=4, compression=None) as ws:
        await event(ws)
        received = await only_connection(upstream)
        await ws.send(json.dumps({"type": "fake.flood", "count": count, "size": size}))
        await asyncio.sleep(1.0)
        held_back = len(received.events_sent_at) - 1
        frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]
    print(f"\nflood: {held_back * size / 2**20:.0f} of {count * size / 2**20:.0f} MiB sent")
    assert held_back * size < 48 * 2**20
    assert all(len(frame) == size for frame in frames)


async def _chatty_session(relay: RunningRelay, messages: int) -> int:
    async with open_session(relay) as ws:
        await event(ws)

        async def sender() -> None:
            for i in range(messages):
                await ws.send(i.to_bytes(4, "big") * 16)

        sending = asyncio.create_task(sender())
        for i in range(messages):
            assert await asyncio.wait_for(ws.recv(), 30) == i.to_bytes(4, "big") * 16
        await sending
    return messages


@contextmanager
def peak_rss(process: psutil.Process) -> Iterator[list[int]]:
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()


def test_hundred_sessions_of_a_thousand_messages_keep_relay_memory_flat(
    upstream: FakeUpstream,
) -> None:
    sessions, messages = 100, 1000
    with relay_process(upstream.base_url) as running:
        assert running.process is not None
        process = psutil.Process(running.process.pid)

        async def run(count: int) -> list[int]:
            return await asyncio.gather(*(_chatty_session(running, messages) for _ in range(count)))

        asyncio.run(run(2))
        before = process.memory_info().rss
        started = time.monotonic()
        with peak_rss(process) as peak:
            done = asyncio.run(run(sessions))
        elapsed = time.monotonic() - started
        after = process.memory_info().rss
    print(
        f"\n{sessions} sessions x {messages} messages each way in {elapsed:.1f}s; relay RSS "
        f"{before / 2**20:.1f} MiB before, {peak[0] / 2**20:.1f} MiB peak, "
        f"{after / 2**20:.1f} MiB after"
    )
    assert done == [messages] * sessions
    assert peak[0] - before < 150 * 2**20
    assert elapsed < 60


# --- the session summary ---------------------------------------------------------------------


class AsgiPeer:
    """The ASGI server's side of one WebSocket scope, so the bridge can be driven in-process."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        await self.outbox.put(message)

    async def sent(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.outbox.get(), 5)

    async def event(self) -> dict[str, Any]:
        message = await self.sent()
        assert message["type"] == "websocket.send"
        value: dict[str, Any] = json.loads(message["text"])
        return value

    def say(self, event: dict[str, Any]) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(event)})


def _scope(query: bytes, headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/v1/realtime",
        "raw_path": b"/v1/realtime",
        "query_string": query,
        "headers": headers,
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    } | extra


@asynccontextmanager
async def bridge_on(upstream: FakeUpstream, data_dir: Path) -> AsyncIterator[RealtimeBridge]:
    """A relay's bridge without a server around it, its lifespan run by hand."""
    env = relay_env(upstream.base_url, str(data_dir))
    relay = create_app(Settings(_env_file=None, **env))  # type: ignore[call-arg, arg-type]
    for step in relay.startup:
        await step()
    try:
        assert isinstance(relay.websocket, RealtimeBridge)
        yield relay.websocket
    finally:
        for step in reversed(relay.shutdown):
            await step()


AUTH_HEADERS = [(b"authorization", f"Bearer {RELAY_KEY}".encode())]


async def test_session_summary_sums_usage_of_every_response_done(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    summaries: list[RealtimeSession] = []
    async with bridge_on(upstream, tmp_path) as bridge:
        bridge.on_session_end = summaries.append
        peer = AsgiPeer()
        peer.inbox.put_nowait({"type": "websocket.connect"})
        scope = _scope(b"model=gpt-realtime", AUTH_HEADERS)
        running = asyncio.create_task(bridge(scope, peer.receive, peer.send))  # type: ignore[arg-type]
        accept = await peer.sent()
        assert accept["type"] == "websocket.accept"
        assert (await peer.event())["type"] == "session.created"
        peer.say({"type": "session.update", "session": {"instructions": "Answer briefly"}})
        await peer.event()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text"}]}
        item["content"][0]["text"] = "hello there team"  # type: ignore[index]
        peer.say({"type": "conversation.item.create", "item": item})
        await peer.event()
        usages = []
        for modalities in (["text"], ["audio"]):
            peer.say({"type": "response.create", "response": {"output_modalities": modalities}})
            while (done := await peer.event())["type"] != "response.done":
                pass
            usages.append(done["response"]["usage"])
        peer.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x00" * 10})
        assert (await peer.sent())["bytes"] == b"\x00" * 10
        peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 4005})
        await asyncio.wait_for(running, 5)
    [summary] = summaries
    assert summary.model == "gpt-realtime"
    assert summary.operation_id == "x-realtimeWebSocket"
    assert summary.key_id is not None
    assert summary.upstream_request_id == upstream.requests_to("/v1/realtime")[0].request_id
    assert (summary.closed_by, summary.close_code) == ("client", 4005)
    assert summary.responses == 2
    assert summary.input_tokens == sum(u["input_tokens"] for u in usages)
    assert summary.output_tokens == sum(u["output_tokens"] for u in usages)
    assert summary.cached_tokens == usages[1]["input_token_details"]["cached_tokens"] > 0
    assert summary.output_audio_tokens == usages[1]["output_token_details"]["audio_tokens"] > 0
    assert summary.frames_in == 5
    assert summary.bytes_in > 10
    assert summary.frames_out > 10
    assert summary.duration > 0


async def test_without_the_denial_extension_a_refusal_closes_with_1008(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with bridge_on(upstream, tmp_path) as bridge:
        peer = AsgiPeer()
        peer.inbox.put_nowait({"type": "websocket.connect"})
        scope = _scope(b"model=gpt-realtime", [], extensions=None)
        await asyncio.wait_for(bridge(scope, peer.receive, peer.send), 5)  # type: ignore[arg-type]
        assert (await peer.sent())["code"] == 1008
    assert list(upstream.log) == []


async def test_summary_reports_an_upstream_close(upstream: FakeUpstream, tmp_path: Path) -> None:
    summaries: list[RealtimeSession] = []
    async with bridge_on(upstream, tmp_path) as bridge:
        bridge.on_session_end = summaries.append
        peer = AsgiPeer()
        peer.inbox.put_nowait({"type": "websocket.connect"})
        scope = _scope(b"model=gpt-realtime", AUTH_HEADERS)
        running = asyncio.create_task(bridge(scope, peer.receive, peer.send))  # type: ignore[arg-type]
        await peer.sent()
        await peer.event()
        peer.say({"type": "fake.close", "code": 4003})
        assert await peer.sent() == {
            "type": "websocket.close",
            "code": 4003,
            "reason": "fake.close",
        }
        await asyncio.wait_for(running, 5)
    assert (summaries[0].closed_by, summaries[0].close_code) == ("upstream", 4003)


# --- the HTTP side of Realtime ---------------------------------------------------------------


def test_sdp_offer_reaches_upstream_byte_identical_and_the_answer_keeps_its_type(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    answer = httpx2.post(
        relay.base_url + "/realtime/calls",
        content=OFFER,
        headers={"Authorization": f"Bearer {RELAY_KEY}", "Content-Type": "application/sdp"},
    )
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/sdp"
    assert answer.content == sdp_answer(OFFER)
    call_id = answer.headers["location"].rsplit("/", 1)[1]
    assert answer.headers["location"] == f"/v1/realtime/calls/{call_id}"
    received = upstream.wait_done(upstream.requests_to("/v1/realtime/calls")[0])
    assert received.body == OFFER
    assert received.header("content-type") == "application/sdp"


def test_sdk_creates_controls_and_hangs_up_a_call(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    created = client.realtime.calls.with_raw_response.create(
        sdp=OFFER.decode(), session={"type": "realtime", "model": "gpt-realtime"}
    )
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/sdp"
    assert created.parse().content == sdp_answer(OFFER)
    call_id = created.headers["location"].rsplit("/", 1)[1]
    assert CALLS[call_id].offer == OFFER
    client.realtime.calls.accept(call_id, type="realtime", model="gpt-realtime")
    client.realtime.calls.refer(call_id, target_uri="tel:+14155550123")
    client.realtime.calls.reject(call_id, status_code=486)
    client.realtime.calls.hangup(call_id)
    assert CALLS[call_id].events == ["accept", "refer", "reject", "hangup"]
    with pytest.raises(openai.NotFoundError):
        client.realtime.calls.hangup("rtc_unknown")


def test_sdk_mints_client_secrets_through_the_relay(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    secret = client.realtime.client_secrets.create(
        session={"type": "realtime", "model": "gpt-realtime", "instructions": "Be kind"},
        expires_after={"anchor": "created_at", "seconds": 120},
    )
    assert secret.value.startswith("ek_")
    assert secret.session.type == "realtime"
    assert secret.expires_at - time.time() == pytest.approx(120, abs=5)
    transcription = client.realtime.client_secrets.create(
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm"}}}}
    )
    assert transcription.session.type == "transcription"
    translation = client.realtime.translations.client_secrets.create(
        session={"model": "gpt-realtime-translate", "audio": {"output": {"language": "fr"}}}
    )
    assert translation.session.type == "translation"
    for received in upstream.log:
        assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize("path", ["/realtime/sessions", "/realtime/transcription_sessions"])
def test_beta_session_endpoints_pass_through(
    relay: RunningRelay, upstream: FakeUpstream, path: str
) -> None:
    body = b'{"model": "gpt-realtime", "modalities": ["audio", "text"]}'
    answer = httpx2.post(
        relay.base_url + path,
        content=body,
        headers={"Authorization": f"Bearer {RELAY_KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    [received] = upstream.requests_to("/v1" + path)
    assert received.body == body
    assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"


async def test_a_session_leaves_one_ledger_entry_with_its_usage(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    def sessions_counted() -> float:
        text = httpx2.get(relay.url + "/metrics", headers=ADMIN).text
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("teamrelay_requests_total{")
            and 'operation="x-realtimeWebSocket"' in line
            and 'status="101"' in line
        ]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = sessions_counted()
    async with open_session(relay) as ws:
        await event(ws)
        await ws.send(json.dumps({"type": "response.create"}))
        await events_until(ws, "response.done")
    deadline = time.monotonic() + 5
    while sessions_counted() != before + 1:
        assert time.monotonic() < deadline, "no ledger entry for the session"
        await asyncio.sleep(0.05)


async def test_a_rate_limited_key_is_refused_a_second_session_before_upstream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/limited.db"
    secrets = await create_keys_async(url, carol={"rpm": 1})
    headers = {"Authorization": f"Bearer {secrets['carol']}"}
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        async with open_session(relay, headers=headers) as ws:
            await event(ws)
        upstream.clear_log()
        with pytest.raises(InvalidStatus) as refused:
            async with open_session(relay, headers=headers):
                pass
        assert refused.value.response.status_code == 429
        assert upstream.requests_to("/v1/realtime") == []
