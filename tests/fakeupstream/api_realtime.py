"""Realtime: the WebSocket (`GET /v1/realtime?model=`), WebRTC/SIP call control, client secrets.

The WebSocket speaks enough of the GA protocol for a relay's tests, and predictably:
- on connect `session.created`; `session.update` answers `session.updated` with the fields merged;
- `conversation.item.create` answers `conversation.item.added`; its text counts as input;
- `response.create` answers `response.created`, `response.output_item.added`, one delta per
  reply word (`response.output_text.delta`, or with audio output `response.output_audio.delta`
  carrying base64 audio and `response.output_audio_transcript.delta`), then `response.done`;
- usage in `response.done`: input tokens = words of the instructions and of every conversation
  item so far (min 1); output tokens = reply words, twice that with audio (text + audio tokens);
  cached tokens = input // 2 from a session's second response on;
- binary frames come back byte-identical; an unknown event type gets an `error` event;
- test controls: `fake.echo` comes back as sent; `fake.close` {code, reason} closes with that
  code; `fake.flood` {count, size} sends `count` binary frames of `size` bytes, awaiting each.

Each frame the fake sends is timed in its log entry's `events_sent_at`; what the fake saw of a
connection (event types, binary frames, the close code) is `connection_of(received)`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .errors import ApiError, bad_request, missing, require
from .generation import count_words, delta_pieces, new_id, reply_words
from .records import Received
from .wire import exchange_of, json_reply

MAX_MESSAGE = 16 * 1024 * 1024
PROTOCOL = "realtime"
DEFAULT_MODEL = "gpt-realtime"
routes = web.RouteTableDef()


@dataclass
class Connection:
    """What the fake saw of one WebSocket connection."""

    model: str
    protocol: str | None
    events_in: list[str] = field(default_factory=list)
    binary_in: int = 0
    binary_bytes_in: int = 0
    close_code: int | None = None
    closed_by: str | None = None


@dataclass
class Call:
    call_id: str
    offer: bytes
    session: dict[str, Any] | None
    state: str = "active"
    events: list[str] = field(default_factory=list)


# Keyed by ids unique to one request or call, so tests never see each other's entries.
_CONNECTIONS: dict[str, Connection] = {}
CALLS: dict[str, Call] = {}


def connection_of(received: Received) -> Connection:
    return _CONNECTIONS[received.request_id]


def sdp_answer(offer: bytes) -> bytes:
    """Fixed lines plus a fingerprint of the offer, so tests can predict the answer."""
    digest = hashlib.sha256(offer).hexdigest().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    lines = [
        "v=0",
        "o=- 4227147428 1719357865 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        f"a=fingerprint:sha-256 {fingerprint}",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=setup:active",
        "a=rtpmap:111 opus/48000/2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:1",
        "a=sctp-port:5000",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _session_object(model: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    session: dict[str, Any] = {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess_"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
        },
        "include": None,
    }
    return session | (config or {})


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        return [t for key in ("text", "transcript", "content") for t in _texts(value.get(key))]
    return []


class _Conversation:
    """One connection's state: the session, the conversation's texts, the responses so far."""

    def __init__(self, ws: web.WebSocketResponse, received: Received, model: str) -> None:
        self.ws = ws
        self.received = received
        self.session = _session_object(model)
        self.texts: list[str] = []
        self.responses = 0
        self.closed_with: int | None = None

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": new_id("event_", 20)} | event
        await self.ws.send_str(json.dumps(event))
        self.received.events_sent_at.append(time.monotonic())

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            self.session |= event.get("session") or {}
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "conversation.item.create":
            item = (event.get("item") or {}) | {"id": new_id("item_"), "status": "completed"}
            self.texts.extend(_texts(item.get("content")))
            await self.send({"type": "conversation.item.added", "item": item})
        elif kind == "response.create":
            await self.respond(event.get("response") or {})
        elif kind == "fake.echo":
            await self.ws.send_str(json.dumps(event))
            self.received.events_sent_at.append(time.monotonic())
        elif kind == "fake.close":
            self.closed_with = int(event.get("code", 1000))
            await self.ws.close(code=self.closed_with, message=b"fake.close")
        elif kind == "fake.flood":
            payload = b"\x00" * int(event.get("size", 1024))
            for _ in range(int(event.get("count", 1))):
                await self.ws.send_bytes(payload)
                self.received.events_sent_at.append(time.monotonic())
        elif kind == "input_audio_buffer.append":
            pass
        else:
            await self.send(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_value",
                        "message": f"Invalid value: '{kind}'. Supported values are: ...",
                        "param": "type",
                        "event_id": event.get("event_id"),
                    },
                }
            )

    async def respond(self, options: dict[str, Any]) -> None:
        self.responses += 1
        response_id = new_id("resp_")
        modalities = options.get("output_modalities") or self.session.get("output_modalities")
        audio = "audio" in (modalities or [])
        instructions = options.get("instructions") or self.session.get("instructions") or ""
        prompt = [instructions, *self.texts]
        words = reply_words(self.texts)
        response: dict[str, Any] = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_fake",
            "output_modalities": modalities,
            "usage": None,
        }
        await self.send({"type": "response.created", "response": response})
        item_id = new_id("item_")
        item = {"id": item_id, "type": "message", "role": "assistant", "content": []}
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item | {"status": "in_progress"},
            }
        )
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        for piece in delta_pieces(words):
            where_part = where | {"content_index": 0}
            if audio:
                chunk = base64.b64encode(hashlib.sha256(piece.encode()).digest()).decode()
                await self.send(
                    {"type": "response.output_audio.delta", **where_part, "delta": chunk}
                )
                await self.send(
                    {"type": "response.output_audio_transcript.delta", **where_part, "delta": piece}
                )
            else:
                await self.send(
                    {"type": "response.output_text.delta", **where_part, "delta": piece}
                )
        text = " ".join(words)
        self.texts.append(text)
        inputs = max(1, sum(count_words(t) for t in prompt))
        cached = inputs // 2 if self.responses > 1 else 0
        outputs = len(words)
        usage = {
            "total_tokens": inputs + outputs * (2 if audio else 1),
            "input_tokens": inputs,
            "output_tokens": outputs * (2 if audio else 1),
            "input_token_details": {
                "text_tokens": inputs,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0},
            },
            "output_token_details": {
                "text_tokens": outputs,
                "audio_tokens": outputs if audio else 0,
            },
        }
        kind = "output_audio" if audio else "output_text"
        content = [{"type": kind, "transcript" if audio else "text": text}]
        done = response | {
            "status": "completed",
            "output": [item | {"status": "completed", "content": content}],
            "usage": usage,
        }
        await self.send({"type": "response.done", "response": done})


@routes.get("/v1/realtime")
async def realtime(request: web.Request) -> web.StreamResponse:
    received = exchange_of(request).received
    model = request.query.get("model")
    call_id = request.query.get("call_id")
    if model is None and call_id is None:
        raise missing("model")
    if call_id is not None and call_id not in CALLS:
        raise ApiError(404, f"Call '{call_id}' not found.", param="call_id")
    ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE, heartbeat=None)
    if not ws.can_prepare(request).ok:
        raise bad_request("This endpoint only accepts WebSocket connections.")
    await ws.prepare(request)
    exchange_of(request).response = ws
    connection = Connection(model=model or DEFAULT_MODEL, protocol=ws.ws_protocol)
    _CONNECTIONS[received.request_id] = connection
    conversation = _Conversation(ws, received, connection.model)
    await conversation.send({"type": "session.created", "session": conversation.session})
    async for message in ws:
        if message.type is WSMsgType.BINARY:
            connection.binary_in += 1
            connection.binary_bytes_in += len(message.data)
            await ws.send_bytes(message.data)
            received.events_sent_at.append(time.monotonic())
        elif message.type is WSMsgType.TEXT:
            event = json.loads(message.data)
            connection.events_in.append(str(event.get("type")))
            await conversation.handle(event)
    closed_here = conversation.closed_with is not None
    connection.close_code = conversation.closed_with if closed_here else ws.close_code
    connection.closed_by = "upstream" if closed_here else "client"
    return ws


@routes.post("/v1/realtime/calls")
async def create_call(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body
    session: dict[str, Any] | None = None
    if body.content_type.startswith("application/sdp"):
        offer = body.data or b""
    elif body.parts:
        sdp = next((p for p in body.parts if p.name == "sdp"), None)
        if sdp is None:
            raise missing("sdp")
        offer = sdp.read_bytes()
        raw_session = next((p for p in body.parts if p.name == "session"), None)
        if raw_session is not None:
            session = json.loads(raw_session.read_bytes())
    else:
        raise bad_request("Send the SDP offer as application/sdp or multipart/form-data.")
    if not offer.startswith(b"v=0"):
        raise bad_request("Invalid SDP offer.", param="sdp")
    call_id = new_id("rtc_", 32)
    CALLS[call_id] = Call(call_id, offer, session)
    return web.Response(
        status=201,
        body=sdp_answer(offer),
        headers={"Content-Type": "application/sdp", "Location": f"/v1/realtime/calls/{call_id}"},
    )


def _call(request: web.Request) -> Call:
    call_id = request.match_info["call_id"]
    call = CALLS.get(call_id)
    if call is None:
        raise ApiError(404, f"Call '{call_id}' not found.", param="call_id")
    return call


@routes.post("/v1/realtime/calls/{call_id}/{action:accept|hangup|refer|reject}")
async def control_call(request: web.Request) -> web.StreamResponse:
    call = _call(request)
    action = request.match_info["action"]
    body = exchange_of(request).body
    if action == "accept":
        config = body.json()
        require(config, "type")
        call.session = config
    elif action == "refer":
        require(body.json(), "target_uri")
    elif action == "reject" and body.data:
        body.json()
    call.events.append(action)
    call.state = {"accept": "active", "hangup": "ended", "refer": "referred"}.get(
        action, "rejected"
    )
    return web.Response(status=200)


def _expires_at(body: dict[str, Any]) -> int:
    seconds = (body.get("expires_after") or {}).get("seconds", 600)
    return int(time.time()) + int(seconds)


@routes.post("/v1/realtime/client_secrets")
async def create_client_secret(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    config = body.get("session") or {"type": "realtime"}
    model = config.get("model", DEFAULT_MODEL)
    if config.get("type") == "transcription":
        session: dict[str, Any] = {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": new_id("sess_"),
            "audio": config.get("audio") or {"input": {"format": {"type": "audio/pcm"}}},
            "include": config.get("include"),
        }
    else:
        session = _session_object(model, config)
    expires_at = _expires_at(body)
    return json_reply({"value": new_id("ek_", 32), "expires_at": expires_at, "session": session})


@routes.post("/v1/realtime/translations/client_secrets")
async def create_translation_client_secret(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    config = body.get("session") or {}
    expires_at = _expires_at(body)
    session = {
        "id": new_id("sess_"),
        "type": "translation",
        "expires_at": expires_at,
        "model": config.get("model", "gpt-realtime-translate"),
        "audio": config.get("audio") or {"output": {"language": "es"}},
    }
    return json_reply({"value": new_id("ek_", 32), "expires_at": expires_at, "session": session})
