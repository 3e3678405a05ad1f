"""The relay as an OAuth 2.1 authorization server for its own keys, on Authlib's grants.

Authlib's server core is synchronous and the relay's database is not, so each request runs as
a unit of work: everything a grant may ask for (the client, the code, the refresh token, the
member's key) is loaded first, Authlib then validates and decides with those records in a
context variable, and what it decided to write (a code, a token pair, a spent code, a rotated
refresh token, a revocation) is committed afterwards, single use enforced in that commit.

What the specs ask, and where it is done:
- OAuth 2.1 (draft-ietf-oauth-v2-1): authorization code only, exact redirect URI match, PKCE
  (RFC 7636) with S256 only (`S256Challenge`); required of public clients. Confidential
  clients may omit it because GPT Actions do not send it (their OAuth settings are a client id
  and secret exchanged with "default (POST)"; see docs/oauth-and-mcp.md).
- Refresh token rotation with reuse detection (OAuth 2.1 section 4.3.1; RFC 9700 4.14.2):
  a rotated refresh token presented again revokes its whole sign-in (`family_id`).
- Resource indicators (RFC 8707), as the MCP authorization spec requires
  (https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization), and as
  OpenAI's Apps SDK asks ("Echo the resource parameter throughout the OAuth flow",
  https://developers.openai.com/apps-sdk/build/auth): validated against the relay's own
  resource URLs, stored as the token's audience, echoed in the token answer.
- Revocation (RFC 7009) and dynamic client registration (RFC 7591).
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from authlib.oauth2 import AuthorizationServer  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    InvalidGrantError,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import (  # type: ignore[import-untyped]
    AuthorizationCodeGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenGenerator  # type: ignore[import-untyped]
from authlib.oauth2.rfc7009 import RevocationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7591 import (  # type: ignore[import-untyped]
    ClientRegistrationEndpoint,
    InvalidRedirectURIError,
)
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]

from teamrelay.keys.secrets import digest
from teamrelay.keys.store import KeyRecord
from teamrelay.oauth.models import OAuthCodeRow
from teamrelay.oauth.store import (
    ACCESS_PREFIX,
    CODE_PREFIX,
    OAUTH_SCOPES,
    PUBLIC_METHOD,
    REFRESH_PREFIX,
    Client,
    Code,
    Issue,
    Token,
    new_secret,
)

# Authlib logs issued tokens at DEBUG ("Issue token %r"): keep its loggers above that, so a
# relay run with debug logging never writes a token.
logging.getLogger("authlib").setLevel(logging.INFO)

CODE_TTL = 60
GRANT_TYPES = ("authorization_code", "refresh_token")
AUTH_METHODS = ("client_secret_post", "client_secret_basic", PUBLIC_METHOD)


@dataclass(slots=True)
class Unit:
    """One OAuth request's records, loaded before Authlib runs, and its decisions after."""

    now: datetime
    resources: tuple[str, ...] = ()
    access_ttl: int = 3600
    refresh_ttl: int = 30 * 86400
    clients: dict[str, Client] = field(default_factory=dict)
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    code: Code | None = None
    refresh: Token | None = None
    revocable: Token | None = None
    # decisions
    new_code: OAuthCodeRow | None = None
    issued: Issue | None = None
    spent_code: Code | None = None
    rotated: Token | None = None
    revoked: Token | None = None
    registered: dict[str, Any] | None = None


_unit: contextvars.ContextVar[Unit] = contextvars.ContextVar("oauth_unit")


@contextmanager
def running(unit: Unit) -> Iterator[Unit]:
    reset = _unit.set(unit)
    try:
        yield unit
    finally:
        _unit.reset(reset)


def unit() -> Unit:
    return _unit.get()


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An already-read form (or query) as Authlib's request."""

    def __init__(self, method: str, uri: str, data: dict[str, str], headers: Mapping[str, str]):
        super().__init__(method, uri, headers=headers)
        self.payload = BasicOAuth2Payload(data)
        self._data = data

    @property
    def args(self) -> dict[str, str]:
        return self._data

    @property
    def form(self) -> dict[str, str]:
        return self._data


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._json = data

    @property
    def data(self) -> dict[str, Any]:
        return self._json


class BodyRequest(JsonRequest):  # type: ignore[misc]
    """An already-read JSON body as Authlib's request."""

    def __init__(self, uri: str, data: dict[str, Any], headers: Mapping[str, str]) -> None:
        super().__init__("POST", uri, headers)
        self.payload = _JsonPayload(data)


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only: `plain` would give a stolen code's thief the verifier too."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        payload = grant.request.payload.data
        client: Client = grant.request.client
        if client.is_public and not payload.get("code_challenge"):
            raise InvalidRequestError("Public clients must use PKCE (code_challenge, S256).")
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Use code_challenge_method=S256.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def save_authorization_code(self, code: str, request: Any) -> None:
        work = unit()
        key: KeyRecord = request.user
        client: Client = request.client
        payload = request.payload.data
        work.new_code = OAuthCodeRow(
            code_hash=digest(code),
            client_id=client.client_id,
            key_id=key.id,
            family_id=secrets.token_hex(16),
            redirect_uri=payload.get("redirect_uri") or client.get_default_redirect_uri() or "",
            scope=" ".join(s for s in request.scope.split() if s in key.scopes),
            resource=payload.get("resource") or work.resources[0],
            code_challenge=payload.get("code_challenge"),
            created_at=work.now,
            expires_at=work.now + timedelta(seconds=CODE_TTL),
        )

    def generate_authorization_code(self) -> str:
        return new_secret(CODE_PREFIX)

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = unit().code
        if found is None or found.code_hash != digest(code) or found.client_id != client.client_id:
            return None
        if found.used_at is not None or found.expires_at <= unit().now:
            return None
        return found if found.key_id in unit().keys else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        unit().spent_code = authorization_code

    def authenticate_user(self, authorization_code: Code) -> KeyRecord | None:
        return unit().keys.get(authorization_code.key_id)


class RotatingRefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        found = unit().refresh
        if found is None or found.revoked_at is not None or found.rotated_at is not None:
            return None
        if found.refresh_expires_at is None or found.refresh_expires_at <= unit().now:
            return None
        return found if found.key_id in unit().keys else None  # the key itself was revoked

    def authenticate_user(self, refresh_token: Token) -> KeyRecord | None:
        return unit().keys.get(refresh_token.key_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        unit().rotated = refresh_token


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return unit().revocable

    def revoke_token(self, token: Token, request: Any) -> None:
        unit().revoked = token


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """Open registration (RFC 7591) for MCP clients such as ChatGPT connectors and coding
    agents; what a client registers is a name and its redirect URIs, and a member still has
    to sign in with their own key before it gets anything."""

    def authenticate_token(self, request: Any) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return {
            "scopes_supported": list(OAUTH_SCOPES),
            "response_types_supported": ["code"],
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        }

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        return {}

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> dict[str, Any]:
        uris = client_metadata.get("redirect_uris") or []
        if not uris or not all(allowed_redirect_uri(uri) for uri in uris):
            raise InvalidRedirectURIError(
                "redirect_uris must be absolute https URLs (or http to localhost, 127.0.0.1 or "
                "[::1]) with a plain host, no user info, fragment, ';', ',', spaces or controls"
            )
        unit().registered = client_metadata
        return client_metadata


# RFC 3986's characters without `#` (no fragments, RFC 6749 section 3.1.2) and `;`, `,`
# (which separate Content-Security-Policy directives and policies); no spaces or controls.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+=%]{1,2000}")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
HOST_NAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def allowed_redirect_uri(uri: str) -> bool:
    """An absolute https URL, or http to this machine's loopback (RFC 8252 section 7.3 for
    native apps), with a plain host name or address, no user info and no fragment."""
    if not _URI_CHARACTERS.fullmatch(uri) or _PERCENT.search(uri):
        return False
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError for a bad one)
    except ValueError:
        return False
    host = parts.hostname
    if host is None or "@" in parts.netloc:
        return False
    if not (HOST_NAME.fullmatch(host) or _is_address(host)):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and host in LOOPBACK_HOSTS


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class RelayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server, reading and writing through the current `Unit`."""

    def __init__(self) -> None:
        super().__init__(scopes_supported=list(OAUTH_SCOPES))
        self.register_grant(CodeGrant, [S256Challenge(required=True)])
        self.register_grant(RotatingRefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Registration)
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: new_secret(ACCESS_PREFIX),
                refresh_token_generator=lambda **_: new_secret(REFRESH_PREFIX),
                expires_generator=lambda client, grant_type: unit().access_ttl,
            ),
        )

    def query_client(self, client_id: str) -> Client | None:
        return unit().clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        work = unit()
        key: KeyRecord = request.user
        client: Client = request.client
        source = request.authorization_code or request.refresh_token
        resource = source.resource if source is not None else work.resources[0]
        token["resource"] = resource
        work.issued = Issue(
            family_id=source.family_id if source is not None else secrets.token_hex(16),
            client_id=client.client_id,
            key_id=key.id,
            scope=token.get("scope") or "",
            resource=resource,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            issued_at=work.now,
            access_ttl=work.access_ttl,
            refresh_ttl=work.refresh_ttl,
        )

    def create_oauth2_request(self, request: Any) -> Any:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(
        self, status: int, body: Any, headers: Any
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


def invalid_grant(description: str) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    status, body, headers = InvalidGrantError(description=description)()
    return status, dict(body), list(headers)
