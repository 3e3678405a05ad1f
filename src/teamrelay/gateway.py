"""The relay's ASGI entry: the `/v1` hot path as a plain ASGI handler, the rest to FastAPI.

A framework on the hot path halved requests/s in DESIGN.md's measurements, so `/v1` requests
that are not relay-local routes are handled here with no middleware stack: one pass over the
headers, auth, admission, then `forward`.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from teamrelay.auth import Identity, StaticKeys
from teamrelay.body import RequestBody
from teamrelay.config import Settings
from teamrelay.errors import RelayError, too_large, unauthorized, unsupported_media_type
from teamrelay.forward import forward
from teamrelay.headers import REQUEST_ID, UpstreamHeaders
from teamrelay.upstream import Upstream

logger = logging.getLogger("teamrelay")

LOCAL_V1_PATHS = frozenset(
    {
        "/v1/health",
        "/v1/actions/ping",
        "/v1/actions/relay_info",
        "/v1/manifest",
        "/v1/proxy",
    }
)
_CLIENT_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _new_request_id() -> bytes:
    return b"req_relay_" + secrets.token_hex(12).encode()


def body_kind(content_type: bytes) -> str | None:
    """`json`, `multipart` or `sdp`: the only request bodies the OpenAI API takes."""
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return "json"
    if media == b"multipart/form-data":
        return "multipart"
    if media == b"application/sdp":
        return "sdp"
    return None


@dataclass(slots=True)
class RequestHead:
    """What the hot path needs from the request headers, gathered in one pass."""

    key: str | None = None
    request_id: bytes | None = None
    content_type: bytes = b""
    content_length: int | None = None
    chunked: bool = False

    @classmethod
    def parse(cls, headers: list[tuple[bytes, bytes]]) -> RequestHead:
        head = cls()
        bearer = None
        for name, value in headers:
            if name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    bearer = value[7:].strip().decode("latin-1") or None
            elif name == b"x-relay-key":
                head.key = value.strip().decode("latin-1") or None
            elif name == b"content-type":
                head.content_type = value
            elif name == b"content-length":
                head.content_length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                head.chunked = True
            elif name == REQUEST_ID and _CLIENT_REQUEST_ID.fullmatch(value):
                head.request_id = value
        head.key = head.key or bearer
        return head

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class Relay:
    def __init__(self, settings: Settings, local: ASGIApp) -> None:
        self.settings = settings
        self.local = local
        self.upstream = Upstream(settings)
        self.upstream_headers = UpstreamHeaders(
            settings.openai_api_key.get_secret_value(),
            organization=settings.openai_organization,
            project=settings.openai_project,
            beta=settings.openai_beta,
        )
        self.keys = StaticKeys(settings.relay_keys)
        self._startup: list[Callable[[], Awaitable[None]]] = [self.upstream.start]
        self._shutdown: list[Callable[[], Awaitable[None]]] = [self.upstream.close]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") and path not in LOCAL_V1_PATHS:
                await self.relay(scope, receive, send)
            else:
                await self.local(scope, receive, self._with_request_id(scope, send))
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.local(scope, receive, send)

    async def relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = RequestHead.parse(scope["headers"])
        request_id = head.request_id or _new_request_id()
        try:
            await self.authenticate(head)
            body = await self.admit(head, receive)
        except RelayError as error:
            await error.send(send, [(REQUEST_ID, request_id)])
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path[3:].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        await forward(
            self.upstream,
            receive,
            send,
            method=scope["method"],
            target=target,
            headers=self.upstream_headers.build(scope["headers"]),
            body=body,
            request_id=request_id,
        )

    async def authenticate(self, head: RequestHead) -> Identity | None:
        if not self.settings.auth_enabled:
            return None
        identity = await self.keys.lookup(head.key) if head.key else None
        if identity is None:
            raise unauthorized()
        return identity

    async def admit(self, head: RequestHead, receive: Receive) -> bytes | RequestBody | None:
        """Check content type and size before anything reaches upstream."""
        if not head.has_body:
            return None
        if head.content_length is not None and head.content_length < 0:
            raise RelayError(400, "Invalid Content-Length header.", code="invalid_request")
        kind = body_kind(head.content_type)
        if kind is None:
            raise unsupported_media_type(head.content_type.decode("latin-1"))
        limit = self.settings.max_json_bytes if kind == "json" else self.settings.max_body_bytes
        if head.content_length is not None and head.content_length > limit:
            raise too_large(limit)
        body = RequestBody(receive, limit)
        return await body.read() if kind == "json" else body

    def _with_request_id(self, scope: Scope, send: Send) -> Send:
        head = RequestHead.parse(scope["headers"])
        request_id = head.request_id or _new_request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, request_id)]
            await send(message)

        return send_with_id

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()
        try:
            if not self.settings.auth_enabled:
                logger.warning("RELAY_AUTH_ENABLED=false: the relay accepts requests without a key")
            for step in self._startup:
                await step()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        for step in reversed(self._shutdown):
            await step()
        await send({"type": "lifespan.shutdown.complete"})
