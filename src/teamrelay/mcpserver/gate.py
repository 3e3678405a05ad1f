"""Who may use `/mcp`: an OAuth access token, or a relay key for clients that send headers.

A refusal is a 401 whose `WWW-Authenticate: Bearer resource_metadata="..."` points at the
protected resource metadata (RFC 9728 section 5.1), which is how an MCP client finds the
authorization server (MCP authorization spec 2025-06-18, "Authorization Server Location",
https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization). A token must
have been issued for this relay (its RFC 8707 audience) and hold the `actions` scope, which is
what the tools are.

The caller is left in the ASGI scope as the MCP SDK's `AuthenticatedUser`, so its session
manager binds each session to the principal that opened it (a session id alone does not let
another caller in), and as the relay's KeyRecord in `scope["state"]` for the tools.
"""

from __future__ import annotations

import json

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from teamrelay.admission import RequestHead
from teamrelay.config import Settings
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.oauth.routes import resource_metadata_url, resources
from teamrelay.oauth.tokens import OAuthTokens

REQUIRED_SCOPE = "actions"
STATE_KEY = "relay_key"
KEY_CLIENT = "relay-key"


def _base_url(settings: Settings, scope: Scope) -> str:
    if settings.public_url:
        return settings.public_url
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}"


class BearerGate:
    def __init__(
        self, app: ASGIApp, settings: Settings, keys: KeyStore, tokens: OAuthTokens
    ) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.auth_enabled:
            await self.app(scope, receive, send)
            return
        base = _base_url(self.settings, scope)
        secret = RequestHead.parse(scope["headers"]).key
        key: KeyRecord | None = None
        client_id = KEY_CLIENT
        if secret:
            key = await self.keys.lookup(secret)
            if key is None and self.settings.oauth_enabled:
                audience = await self.tokens.resource(secret)
                if audience is not None and audience in resources(base):
                    key = await self.tokens.lookup(secret, mcp=True)
                    client_id = "oauth"
        if key is None:
            error = "invalid_token" if secret else None
            await self._refuse(send, base, 401, error, "Sign in, or send a relay key as bearer.")
            return
        if REQUIRED_SCOPE not in key.scopes:
            await self._refuse(
                send, base, 403, "insufficient_scope", "The MCP tools need the 'actions' scope."
            )
            return
        token = AccessToken(
            token="",
            client_id=client_id,
            scopes=sorted(key.scopes),
            subject=key.id,
            resource=base + "/mcp",
        )
        scope["user"] = AuthenticatedUser(token)
        scope.setdefault("state", {})[STATE_KEY] = key
        await self.app(scope, receive, send)

    async def _refuse(
        self, send: Send, base: str, status: int, error: str | None, description: str
    ) -> None:
        parts = []
        if error:
            parts.append(f'error="{error}"')
        if error == "insufficient_scope":
            parts.append(f'scope="{REQUIRED_SCOPE}"')
        if self.settings.oauth_enabled:
            parts.append(f'resource_metadata="{resource_metadata_url(base)}"')
        challenge = "Bearer " + ", ".join(parts) if parts else 'Bearer realm="teamrelay"'
        body = json.dumps({"error": error or "invalid_token", "error_description": description})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
