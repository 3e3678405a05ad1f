"""The `/v1` WebSocket endpoints (Realtime first): auth, catalog, then a frame-for-frame bridge.

Resource rules: one task per direction, each awaiting its send before it reads the next frame,
so a slow side backpressures the other through the sockets (uvicorn pauses reading the client
until a message is taken; aiohttp pauses reading upstream past its small buffer); no queue
grows. Whichever side closes first, the other is closed at once with the same code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from teamrelay.admission import RequestHead
from teamrelay.errors import RelayError, bad_gateway, gateway_timeout
from teamrelay.frames import ResponseFrames
from teamrelay.gateway import new_request_id
from teamrelay.headers import REQUEST_ID, response_headers, text_headers
from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.limits.gate import Admitted
from teamrelay.tap.usage import usage_from
from teamrelay.upstream import session_failure

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

logger = logging.getLogger("teamrelay.realtime")

# Realtime audio travels as base64 in JSON events; uvicorn's default client limit is the same.
MAX_MESSAGE = 16 * 2**20
HEARTBEAT = 20.0
CLOSE_TIMEOUT = 5.0
# How long one side's pump waits for the other to learn how a failed peer closed.
_SETTLE = 1.0
_RESPONSES_SOCKET = "x-responsesWebSocket"
# Browsers can't set headers on a WebSocket, so they send the key as a subprotocol.
KEY_PROTOCOL = "openai-insecure-api-key."
_CLIENT_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)
_UPSTREAM_HANDSHAKE = frozenset(
    {b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions"}
)
# Close codes a peer may put on the wire (RFC 6455 7.4, IANA registry); 1005/1006/1015 are not.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
# uvicorn raises OSError (ClientDisconnected) once the client is gone, and RuntimeError when it
# closed the socket itself (keepalive timeout) and the app then sends.
_CLIENT_GONE = (OSError, RuntimeError)


@dataclass(slots=True)
class RealtimeSession:
    """One bridged session, for the ledger; token counts sum its `response.done` events.

    `in` is client to upstream, `out` upstream to client; text frames count UTF-8 bytes.
    """

    operation_id: str
    model: str | None
    key_id: str | None
    key_name: str | None
    request_id: str
    started: float
    upstream_request_id: str | None = None
    duration: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    responses: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    close_code: int | None = None
    closed_by: str | None = None
    admitted: Admitted | None = None  # the key's rate/budget charge, settled at the end
    frames: ResponseFrames | None = None  # Responses WebSocket: each response.create checked

    def observe(self, text: str) -> None:
        """Read usage from an upstream event; the substring tests keep the rest unparsed."""
        if '"response.done"' in text:
            event = _json_object(text)
            if event.get("type") == "response.done":
                self._add_usage(event.get("response"))
        elif self.model is None and '"session.created"' in text:
            session = _json_object(text).get("session")
            model = session.get("model") if isinstance(session, dict) else None
            self.model = model if isinstance(model, str) else None

    def _add_usage(self, response: object) -> None:
        if not isinstance(response, dict):
            return
        self.responses += 1
        raw = response.get("usage")
        usage = usage_from(raw)
        if usage is None or not isinstance(raw, dict):
            return
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_tokens
        self.input_audio_tokens += _audio_tokens(raw.get("input_token_details"))
        self.output_audio_tokens += _audio_tokens(raw.get("output_token_details"))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _audio_tokens(details: object) -> int:
    value = details.get("audio_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _sendable(code: int | None, fallback: int) -> int:
    """A close code one side reported, as the other side may be sent it (None: unknown)."""
    if code == 1005:
        return 1000
    if code is not None and (code in _SENDABLE or 3000 <= code <= 4999):
        return code
    return fallback


def _reason(text: str) -> bytes:
    """A close reason fits in a control frame: 123 bytes."""
    return text.encode()[:123]


def _ws_url(base_url: str, target: str) -> URL:
    scheme, rest = base_url.split("://", 1)
    return URL(f"{'wss' if scheme == 'https' else 'ws'}://{rest}{target}", encoded=True)


def _query_model(query_string: bytes) -> str | None:
    models = parse_qs(query_string.decode("latin-1")).get("model")
    return models[0] if models else None


@dataclass(frozen=True, slots=True)
class _Ended:
    """How a pump stopped: which side ended the session, with what code (None: not known)."""

    by: str
    code: int | None = None
    reason: str = ""


class RealtimeBridge:
    """The ASGI app for `/v1` WebSocket scopes; `Relay.websocket` is set to one of these.

    `on_session_end`, when set, gets each session's summary once it is over (the ledger).
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.on_session_end: Callable[[RealtimeSession], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        head = RequestHead.parse(scope["headers"])
        request_id = head.request_id or new_request_id()
        try:
            upstream, session = await self._open(scope, head, request_id)
        except RelayError as error:
            await _deny(scope, receive, send, error, request_id)
            return
        started = time.monotonic()
        try:
            headers = [
                (name, value)
                for name, value in response_headers(upstream._response.raw_headers, request_id)
                if name.lower() not in _UPSTREAM_HANDSHAKE
            ]
            accept = {"type": "websocket.accept", "subprotocol": upstream.protocol}
            try:
                await send(accept | {"headers": headers})
            except _CLIENT_GONE:
                session.closed_by, session.close_code = "client", 1006
                return
            await self._bridge(upstream, receive, send, session)
        finally:
            await upstream.close()
            session.duration = time.monotonic() - started
            self._report(session)

    async def _open(
        self, scope: Scope, head: RequestHead, request_id: bytes
    ) -> tuple[aiohttp.ClientWebSocketResponse, RealtimeSession]:
        """Everything the HTTP path checks, then the upstream handshake; raises RelayError."""
        offered: list[str] = list(scope.get("subprotocols") or ())
        keyed = [p for p in offered if p.startswith(KEY_PROTOCOL)]
        protocols = [p for p in offered if not p.startswith(KEY_PROTOCOL)]
        if head.key is None and keyed:
            head.key = keyed[0][len(KEY_PROTOCOL) :] or None
        key = await self.relay.authenticate(head, scope="api")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path[3:].decode("latin-1")
        operation = self.relay.router.route("GET", target)
        if not operation.websocket:
            raise RelayError(
                400, f"/v1{operation.path} is not a WebSocket endpoint.", code="not_a_websocket"
            )
        query: bytes = scope["query_string"]
        model = _query_model(query)
        if operation.operation_id != _RESPONSES_SOCKET:  # its frames name their models
            self.relay.router.check_model_name(model)
        if query:
            if key is not None and self.relay.isolation.confines(key):
                await self.relay.isolation.check_query(key.id, query.decode("latin-1"))
            target += "?" + query.decode("latin-1")
        limits = self.relay.limits
        admitted = await limits.admit(key, operation, None) if key and key.limits else None
        try:
            upstream = await self._connect(scope["headers"], target, protocols, request_id)
        except RelayError:
            if admitted is not None:
                limits.release(admitted)
            raise
        session = RealtimeSession(
            operation_id=operation.operation_id,
            model=model,
            key_id=key.id if key is not None else None,
            key_name=key.name if key is not None else None,
            request_id=request_id.decode("latin-1"),
            started=time.time(),
            # aiohttp keeps the handshake answer only on this private attribute.
            upstream_request_id=upstream._response.headers.get("x-request-id"),
            admitted=admitted,
        )
        if operation.operation_id == _RESPONSES_SOCKET:
            session.frames = ResponseFrames(
                self.relay, key, session.request_id, session.upstream_request_id
            )
        return upstream, session

    async def _connect(
        self,
        client_headers: list[tuple[bytes, bytes]],
        target: str,
        protocols: list[str],
        relay_request_id: bytes,
    ) -> aiohttp.ClientWebSocketResponse:
        upstream = self.relay.upstream
        headers = text_headers(
            self.relay.upstream_headers.build(
                [h for h in client_headers if h[0] not in _CLIENT_HANDSHAKE], keep_length=False
            )
        )
        try:
            return await upstream.session.ws_connect(
                _ws_url(upstream.base_url, target),
                headers=headers,
                protocols=protocols,
                heartbeat=HEARTBEAT,
                max_msg_size=MAX_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 407:  # a proxy on the way, never the API: not the client's to answer
                raise bad_gateway("the egress proxy refused the request (407)") from None
            status = exc.status if exc.status >= 400 else 502
            request_id = exc.headers.get("x-request-id") if exc.headers else None
            suffix = f" (upstream request {request_id})" if request_id else ""
            raise RelayError(
                status,
                f"The OpenAI API refused the WebSocket with HTTP {exc.status}{suffix}.",
                code="upstream_refused",
            ) from None
        except TimeoutError:
            raise gateway_timeout("opening the WebSocket") from None
        except aiohttp.ClientError as exc:
            reason = session_failure(exc)
            logger.warning(
                "upstream WebSocket failed (%s): %s [request %s]",
                reason,
                type(exc).__name__,  # its text can hold the proxy's URL, credentials and all
                relay_request_id.decode("latin-1"),
            )
            raise bad_gateway(reason) from None

    async def _bridge(
        self,
        upstream: aiohttp.ClientWebSocketResponse,
        receive: Receive,
        send: Send,
        session: RealtimeSession,
    ) -> None:
        up = asyncio.create_task(_client_to_upstream(receive, upstream, send, session))
        down = asyncio.create_task(_upstream_to_client(upstream, send, session))
        try:
            done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            first, other = (up, down) if up in done else (down, up)
            ended = first.result()
            if ended.code is None:
                # This pump saw the other side fail; its own pump reads how it closed.
                await asyncio.wait((other,), timeout=_SETTLE)
                if other.done():
                    ended = other.result()
            session.closed_by, session.close_code = ended.by, ended.code
            if ended.by == "client":
                await upstream.close(
                    code=_sendable(ended.code, 1001), message=_reason(ended.reason)
                )
                await asyncio.wait((down,), timeout=_SETTLE)
            else:
                up.cancel()
                with suppress(*_CLIENT_GONE):
                    await send(
                        {
                            "type": "websocket.close",
                            "code": _sendable(ended.code, 1011),
                            "reason": _reason(ended.reason).decode(errors="ignore"),
                        }
                    )
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            if session.frames is not None:
                session.frames.close()

    def _report(self, session: RealtimeSession) -> None:
        if self.on_session_end is None:
            return
        try:
            self.on_session_end(session)
        except Exception:
            logger.exception("on_session_end failed for %s", session.request_id)


async def _client_to_upstream(
    receive: Receive,
    upstream: aiohttp.ClientWebSocketResponse,
    send: Send,
    session: RealtimeSession,
) -> _Ended:
    frames = session.frames
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return _Ended("client", message.get("code", 1005), message.get("reason") or "")
        if message["type"] != "websocket.receive":
            continue
        text: str | None = message.get("text")
        if frames is not None:
            refusal = await frames.admit(text)
            if refusal is not None:
                try:
                    await send({"type": "websocket.send", "text": refusal})
                except _CLIENT_GONE:
                    return _Ended("client")
                continue
        try:
            if text is not None:
                await upstream.send_str(text)
                session.bytes_in += _size(text)
            else:
                data: bytes = message.get("bytes") or b""
                await upstream.send_bytes(data)
                session.bytes_in += len(data)
        except (aiohttp.ClientError, ConnectionError):
            return _Ended("upstream")
        session.frames_in += 1


async def _upstream_to_client(
    upstream: aiohttp.ClientWebSocketResponse, send: Send, session: RealtimeSession
) -> _Ended:
    while True:
        message = await upstream.receive()
        try:
            if message.type is aiohttp.WSMsgType.TEXT:
                text: str = message.data
                session.observe(text)
                if session.frames is not None:
                    session.frames.observe(text)
                await send({"type": "websocket.send", "text": text})
                session.bytes_out += _size(text)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
                session.bytes_out += len(message.data)
            elif message.type is aiohttp.WSMsgType.CLOSING:
                # Our own close() interrupted this read: the client ended the session.
                return _Ended("client")
            elif message.type is aiohttp.WSMsgType.CLOSE:
                return _Ended("upstream", message.data, message.extra or "")
            else:
                return _Ended("upstream", upstream.close_code or 1006)
        except _CLIENT_GONE:
            return _Ended("client")
        session.frames_out += 1


async def _deny(
    scope: Scope, receive: Receive, send: Send, error: RelayError, request_id: bytes
) -> None:
    """Refuse the handshake: an HTTP answer in OpenAI's shape where the server can send one."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        reason = _reason(error.message).decode(errors="ignore")
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
        return
    body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *error.headers,
        (REQUEST_ID, request_id),
    ]
    await send(
        {"type": "websocket.http.response.start", "status": error.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": body})
    # uvicorn's websockets-sansio protocol only counts the handshake done once the socket is
    # gone (Kludex/uvicorn#3138); returning earlier logs a spurious error for every denial.
    with suppress(TimeoutError):
        async with asyncio.timeout(_SETTLE):
            await receive()
            await receive()


def session_entry(session: RealtimeSession) -> LedgerEntry:
    """A session's ledger row: one per WebSocket, with the usage its responses reported."""
    return LedgerEntry(
        ts=datetime.fromtimestamp(session.started, UTC),
        relay_request_id=session.request_id,
        key_id=session.key_id,
        key_name=session.key_name,
        method="GET",
        operation=session.operation_id,
        path="/v1/realtime",
        model=session.model,
        status=101,
        duration_ms=session.duration * 1000,
        ttfb_ms=None,
        bytes_in=session.bytes_in,
        bytes_out=session.bytes_out,
        streamed=True,
        aborted=session.closed_by == "error",
        input_tokens=session.input_tokens,
        output_tokens=session.output_tokens,
        cached_tokens=session.cached_tokens,
        reasoning_tokens=None,
        upstream_request_id=session.upstream_request_id,
        error_type=None,
        audio=(session.input_audio_tokens, session.output_audio_tokens),
    )
