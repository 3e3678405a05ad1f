"""The authorization server's HTTP side: metadata, sign-in, token, revocation, registration.

Endpoints (all under the relay's public URL, which is also the issuer):
- `/.well-known/oauth-authorization-server` (RFC 8414) and
  `/.well-known/oauth-protected-resource[/mcp]` (RFC 9728, the document MCP clients find
  through `WWW-Authenticate: Bearer resource_metadata=...`; MCP authorization spec,
  https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization).
- `/oauth/authorize` (GET: the sign-in page; POST: the member's key, or an invite code),
  `/oauth/token`, `/oauth/revoke` (RFC 7009), `/oauth/register` (RFC 7591),
  `/oauth/invite` (turn an invite into a key without an OAuth client).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2 import OAuth2Error  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
)
from authlib.oauth2.rfc7591 import InvalidClientMetadataError  # type: ignore[import-untyped]
from fastapi import APIRouter
from limits import RateLimitItemPerHour
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from teamrelay.config import Settings
from teamrelay.keys.store import KeyNotFound, KeyRecord, KeyStore
from teamrelay.limits.rate import RateLimits
from teamrelay.oauth import pages
from teamrelay.oauth.server import (
    AUTH_METHODS,
    GRANT_TYPES,
    BodyRequest,
    FormRequest,
    RelayAuthorizationServer,
    Unit,
    invalid_grant,
    running,
)
from teamrelay.oauth.store import (
    ACCESS_PREFIX,
    INVITE_PREFIX,
    MCP_PATH,
    OAUTH_SCOPES,
    REFRESH_PREFIX,
    OAuthStore,
    scope_list,
)
from teamrelay.oauth.tokens import OAuthTokens

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
REGISTER_PATH = "/oauth/register"
INVITE_PATH = "/oauth/invite"
PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource"
_OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
)
_MAX_BODY = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_NAMES = re.compile(r"[A-Za-z0-9._~:-]+(?: [A-Za-z0-9._~:-]+)*")
_PRINTABLE = re.compile(r"[\x20-\x7e]{0,4096}")
_NAME_PARAMETERS = frozenset(
    {"response_type", "grant_type", "token_type_hint", "code_challenge_method", "decision"}
)
_METADATA_STRINGS = frozenset({"client_name", "token_endpoint_auth_method", "scope"})
_METADATA_LISTS = frozenset({"redirect_uris", "grant_types", "response_types"})
_TOO_MANY = {
    "error": "too_many_requests",
    "error_description": "Too many client registrations from this address: try again later.",
}
Answer = tuple[int, Any, list[tuple[str, str]]]


def base_url(settings: Settings, request: Request) -> str:
    return settings.public_url or str(request.base_url).rstrip("/")


def public_uri(settings: Settings, request: Request) -> str:
    """The URL the client used: under RELAY_PUBLIC_URL, else the request's own (whose scheme
    and host come from a trusted proxy, `teamrelay.proxies`). Authlib refuses OAuth over
    plain http to anything but loopback (`insecure_transport`), so behind TLS termination it
    must see the https URL, not the proxy's hop to the relay."""
    query = request.url.query
    return base_url(settings, request) + request.url.path + (f"?{query}" if query else "")


def resources(base: str) -> tuple[str, ...]:
    """The relay's resource identifiers (RFC 8707): the whole relay, and its MCP endpoint."""
    return base, base + MCP_PATH


def resource_metadata_url(base: str) -> str:
    return base + PROTECTED_RESOURCE_PATH + MCP_PATH


def authorization_server_metadata(base: str, registration: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "scopes_supported": list(OAUTH_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": base + "/manifest",
    }
    if registration:
        document["registration_endpoint"] = base + REGISTER_PATH
    return document


def protected_resource_metadata(base: str, resource: str) -> dict[str, Any]:
    return {
        "resource": resource,
        "authorization_servers": [base],
        "scopes_supported": list(OAUTH_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "teamrelay",
    }


def _with_issuer(location: str, issuer: str) -> str:
    """RFC 9207: the authorization response names its issuer (mix-up defence)."""
    return str(add_params_to_uri(location, [("iss", issuer)]))


def _json(answer: Answer, issuer: str | None = None) -> Response:
    status, body, headers = answer
    if status in (301, 302, 303, 307):
        location = dict(headers)["Location"]
        if issuer is not None:
            location = _with_issuer(location, issuer)
        return RedirectResponse(location, status_code=302)
    response = JSONResponse(body if isinstance(body, dict) else {}, status_code=status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["cache-control"] = "no-store"
    response.headers["pragma"] = "no-cache"
    return response


def _single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Every parameter once (RFC 6749 section 3.1: none may repeat), each of the characters
    RFC 6749 appendix A allows it: printable ASCII, and names for the ones that are names.
    Refused before Authlib sees them, since it echoes some values in its error descriptions
    and raises ValueError for a description with characters an error may not carry."""
    values: dict[str, str] = {}
    for name, value in items:
        if not _NAME.fullmatch(name):
            continue  # no OAuth parameter: ignored, as unknown ones are (section 3.1)
        if name in values:
            raise InvalidRequestError(f"'{name}' is repeated.")
        grammar = _NAMES if name in _NAME_PARAMETERS else _PRINTABLE
        if not grammar.fullmatch(value):
            raise InvalidRequestError(f"'{name}' has characters OAuth does not allow there.")
        values[name] = value
    return values


async def _small_body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise InvalidRequestError("The request is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (what OAuth endpoints take), bounded."""
    try:
        text = (await _small_body(request)).decode()
    except UnicodeDecodeError:
        raise InvalidRequestError("The form is not UTF-8.") from None
    return _single_values(parse_qsl(text, keep_blank_values=True))


def _client_metadata(body: bytes) -> dict[str, Any]:
    """The RFC 7591 metadata the relay uses, each of its type; the rest is ignored, as
    section 2 lets a server do. Anything else (not JSON, too deep, odd types) is a 400."""
    try:
        document = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise InvalidClientMetadataError("The body is not a JSON object.") from None
    if not isinstance(document, dict):
        raise InvalidClientMetadataError("The body is not a JSON object.")
    metadata: dict[str, Any] = {}
    for name in _METADATA_STRINGS & document.keys():
        value = document[name]
        if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
            raise InvalidClientMetadataError(f"'{name}' must be a short printable string.")
        metadata[name] = value
    for name in _METADATA_LISTS & document.keys():
        value = document[name]
        if not (isinstance(value, list) and 0 < len(value) <= 10) or not all(
            isinstance(item, str) and 0 < len(item) <= 2000 for item in value
        ):
            raise InvalidClientMetadataError(f"'{name}' must be a list of 1 to 10 strings.")
        metadata[name] = value
    return metadata


def _basic_client_id(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(decoded.split(":", 1)[0]) or None


def _readable_basic(request: Request) -> None:
    """Basic client credentials must decode to text: Authlib decodes them as UTF-8 and
    raises UnicodeDecodeError (a 500) for other bytes, so those are refused here."""
    parts = request.headers.get("authorization", "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "basic":
        return
    try:
        base64.b64decode(parts[1]).decode()
    except binascii.Error:
        return  # Authlib reads these as no credentials
    except UnicodeDecodeError:
        raise InvalidClientError(description="The Basic credentials are not UTF-8.") from None


class OAuthRoutes:
    """What the endpoints share: the Authlib server, the store, the relay's keys and tokens."""

    def __init__(
        self, settings: Settings, keys: KeyStore, tokens: OAuthTokens, rates: RateLimits
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.tokens = tokens
        self.rates = rates
        self.registrations = RateLimitItemPerHour(
            settings.oauth_registrations_per_hour, namespace="teamrelay"
        )
        self.store: OAuthStore = tokens.store
        self.server = RelayAuthorizationServer()

    def unit(self, request: Request) -> Unit:
        return Unit(
            now=self.tokens.clock(),
            resources=resources(base_url(self.settings, request)),
            access_ttl=self.settings.oauth_access_ttl,
            refresh_ttl=self.settings.oauth_refresh_ttl,
        )

    def _form_request(self, request: Request, data: dict[str, str]) -> FormRequest:
        return FormRequest(
            request.method, public_uri(self.settings, request), data, request.headers
        )

    async def _usable_key(self, key_id: str, work: Unit) -> None:
        try:
            key = await self.keys.get(key_id)
        except KeyNotFound:
            return
        if key.usable(work.now):
            work.keys[key.id] = key

    def _check_resource(self, params: Mapping[str, str], work: Unit) -> None:
        resource = params.get("resource")
        if resource is not None and resource.rstrip("/") not in work.resources:
            error = InvalidRequestError(
                f"Unknown resource: this server is {work.resources[0]} "
                f"(or {work.resources[1]} for MCP)."
            )
            error.error = "invalid_target"
            raise error

    # The sign-in

    async def _consent(self, request: Request, params: dict[str, str]) -> tuple[Unit, Any, Any]:
        work = self.unit(request)
        client_id = params.get("client_id", "")
        client = await self.store.client(client_id) if client_id else None
        if client is not None:
            work.clients[client.client_id] = client
        oauth_request = self._form_request(request, params)
        with running(work):
            grant = self.server.get_consent_grant(oauth_request)
        try:
            self._check_resource(params, work)
        except OAuth2Error as error:
            error.redirect_uri = grant.redirect_uri
            error.state = params.get("state")
            raise
        return work, grant, oauth_request

    def _refused(self, request: Request, error: Any) -> Response:
        if getattr(error, "redirect_uri", None):
            _, _, headers = error()
            location = _with_issuer(dict(headers)["Location"], base_url(self.settings, request))
            return RedirectResponse(location, status_code=302)
        description = error.description or error.error
        return pages.problem_page(request, f"{error.error}: {description}")

    async def authorize_page(self, request: Request) -> Response:
        try:
            params = _single_values(request.query_params.multi_items())
            work, grant, _ = await self._consent(request, params)
        except OAuth2Error as error:
            return self._refused(request, error)
        return self._sign_in_page(request, work, grant, params)

    def _sign_in_page(
        self,
        request: Request,
        work: Unit,
        grant: Any,
        params: Mapping[str, str],
        error: str = "",
        status: int = 200,
    ) -> Response:
        client = grant.request.client
        kept = {name: params[name] for name in _OAUTH_PARAMS if name in params}
        kept.setdefault("redirect_uri", grant.redirect_uri)
        return pages.sign_in(
            request,
            client_name=client.name,
            self_registered=client.registered_by == "dynamic",
            redirect_uri=grant.redirect_uri,
            scopes=scope_list(grant.request.scope),
            params=kept,
            csrf=pages.csrf_token(request),
            error=error,
            status=status,
        )

    async def authorize_submit(self, request: Request) -> Response:
        try:
            form = await _form(request)
            if not pages.csrf_ok(request, form):
                return pages.problem_page(
                    request, "This form expired or came from elsewhere: start again.", 403
                )
            work, grant, oauth_request = await self._consent(request, form)
        except OAuth2Error as error:
            return self._refused(request, error)
        if form.get("decision") != "allow":
            with running(work):
                answer = self.server.create_authorization_response(
                    oauth_request, grant_user=None, grant=grant
                )
            return _json(answer, work.resources[0])
        secret = form.get("secret", "").strip()
        key: KeyRecord | None
        if secret.startswith(INVITE_PREFIX):
            try:
                redeemed = await self.store.redeem_invite(secret, self.keys, work.now)
            except ValueError:
                redeemed = None
            if redeemed is None:
                return self._sign_in_page(
                    request, work, grant, form, "That invite is unknown, used or expired.", 401
                )
            record, new_secret = redeemed
            kept = {name: form[name] for name in _OAUTH_PARAMS if name in form}
            return pages.key_shown_once(
                request,
                record.name,
                new_secret,
                then_sign_in=kept,
                csrf=pages.csrf_token(request),
                redirect_uri=grant.redirect_uri,
            )
        key = await self.keys.lookup(secret) if secret else None
        if key is None:
            return self._sign_in_page(
                request, work, grant, form, "That relay key is not valid.", 401
            )
        if not set(scope_list(grant.request.scope)) & key.scopes:
            return self._sign_in_page(
                request, work, grant, form, "Your key cannot do what this app asks for.", 403
            )
        with running(work):
            answer = self.server.create_authorization_response(
                oauth_request, grant_user=key, grant=grant
            )
        if work.new_code is not None:
            await self.store.add_code(work.new_code)
        return _json(answer, work.resources[0])

    # Tokens

    async def token(self, request: Request) -> Response:
        work = self.unit(request)
        try:
            form = await _form(request)
            _readable_basic(request)
            oauth_request = self._form_request(request, form)
        except OAuth2Error as error:
            return _json(self.server.handle_error_response(None, error))
        for client_id in {form.get("client_id"), _basic_client_id(request)} - {None}:
            client = await self.store.client(str(client_id))
            if client is not None:
                work.clients[client.client_id] = client
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code" and form.get("code"):
            work.code = await self.store.code(form["code"])
            if work.code is not None:
                if work.code.used_at is not None:
                    # RFC 6749 section 4.1.2: a code used twice revokes what it was traded for.
                    await self._revoke_family(work.code.family_id, work)
                    return _json(invalid_grant("This code was already used."))
                if form.get("resource") and form["resource"].rstrip("/") != work.code.resource:
                    return _json(invalid_grant("resource differs from the authorization's."))
                await self._usable_key(work.code.key_id, work)
        elif grant_type == "refresh_token" and form.get("refresh_token"):
            work.refresh = await self.store.token_by_refresh(form["refresh_token"])
            if work.refresh is not None:
                if work.refresh.rotated_at is not None and work.refresh.revoked_at is None:
                    # Reuse of a rotated refresh token: someone holds a copy. End the sign-in.
                    await self._revoke_family(work.refresh.family_id, work)
                    return _json(invalid_grant("This refresh token was already used."))
                await self._usable_key(work.refresh.key_id, work)
        with running(work):
            answer = self.server.create_token_response(oauth_request)
        if answer[0] == 200 and work.issued is not None:
            stored = await self.store.issue(
                work.issued,
                spends_code=work.spent_code.code_hash if work.spent_code else None,
                rotates=work.rotated.id if work.rotated else None,
            )
            if not stored:
                await self._revoke_family(work.issued.family_id, work)
                return _json(invalid_grant("This grant was already used."))
        return _json(answer)

    async def _revoke_family(self, family_id: str, work: Unit) -> None:
        await self.store.revoke_family(family_id, work.now)
        self.tokens.forget_family(family_id)

    async def revoke(self, request: Request) -> Response:
        work = self.unit(request)
        try:
            form = await _form(request)
            _readable_basic(request)
            revocation = self._form_request(request, form)
        except OAuth2Error as error:
            return _json(self.server.handle_error_response(None, error))
        for client_id in {form.get("client_id"), _basic_client_id(request)} - {None}:
            client = await self.store.client(str(client_id))
            if client is not None:
                work.clients[client.client_id] = client
        token = form.get("token", "")
        if token.startswith(ACCESS_PREFIX):
            work.revocable = await self.store.token_by_access(token)
        elif token.startswith(REFRESH_PREFIX):
            work.revocable = await self.store.token_by_refresh(token)
        with running(work):
            answer = self.server.create_endpoint_response("revocation", revocation)
        if answer[0] == 200 and work.revoked is not None:
            # RFC 7009 section 2.1: revoking either token ends the grant it belongs to.
            await self._revoke_family(work.revoked.family_id, work)
        return _json(answer)

    async def register(self, request: Request) -> Response:
        work = self.unit(request)
        uri = public_uri(self.settings, request)
        address = request.client.host if request.client else "unknown"
        if not await self.rates.hit(self.registrations, "oauth-registrations", address):
            return _json((429, _TOO_MANY, [("Retry-After", "3600")]))
        try:
            InsecureTransportError.check(uri)
            metadata = _client_metadata(await _small_body(request))
        except OAuth2Error as error:
            return _json(self.server.handle_error_response(None, error))
        oauth_request = BodyRequest(uri, metadata, request.headers)
        with running(work):
            answer = self.server.create_endpoint_response("client_registration", oauth_request)
        if answer[0] != 201 or work.registered is None:
            return _json(answer)
        registered = work.registered
        method = registered.get("token_endpoint_auth_method") or "client_secret_basic"
        client, secret = await self.store.create_client(
            str(registered.get("client_name") or "Unnamed client")[:200],
            registered["redirect_uris"],
            auth_method=method,
            registered_by="dynamic",
            now=work.now,
        )
        document = {
            **registered,
            "client_id": client.client_id,
            "client_id_issued_at": int(client.created_at.timestamp()),
            "token_endpoint_auth_method": method,
            "grant_types": list(GRANT_TYPES),
            "response_types": ["code"],
        }
        if secret is not None:
            document["client_secret"] = secret
            document["client_secret_expires_at"] = 0
        return _json((201, document, []))

    # Invites without a client

    async def invite_page(self, request: Request) -> Response:
        return pages.invite_form(request, pages.csrf_token(request))

    async def invite_submit(self, request: Request) -> Response:
        try:
            values = await _form(request)
        except InvalidRequestError:
            values = {}
        if not pages.csrf_ok(request, values):
            expired = "This form expired: open the invite link again."
            return pages.problem_page(request, expired, 403)
        code = values.get("invite", "").strip()
        try:
            redeemed = (
                await self.store.redeem_invite(code, self.keys, self.tokens.clock())
                if code.startswith(INVITE_PREFIX)
                else None
            )
        except ValueError:
            redeemed = None
        if redeemed is None:
            error = "That invite is unknown, used or expired."
            return pages.invite_form(request, pages.csrf_token(request), error)
        record, secret = redeemed
        return pages.key_shown_once(request, record.name, secret)


def oauth_router(
    settings: Settings, keys: KeyStore, tokens: OAuthTokens, rates: RateLimits
) -> APIRouter:
    routes = OAuthRoutes(settings, keys, tokens, rates)
    router = APIRouter(include_in_schema=False)

    @router.get("/.well-known/oauth-authorization-server")
    async def server_metadata(request: Request) -> Response:
        base = base_url(settings, request)
        return JSONResponse(
            authorization_server_metadata(base, settings.oauth_dynamic_registration)
        )

    @router.get(PROTECTED_RESOURCE_PATH)
    async def resource_metadata(request: Request) -> Response:
        base = base_url(settings, request)
        return JSONResponse(protected_resource_metadata(base, base))

    @router.get(PROTECTED_RESOURCE_PATH + MCP_PATH)
    async def mcp_resource_metadata(request: Request) -> Response:
        base = base_url(settings, request)
        return JSONResponse(protected_resource_metadata(base, base + MCP_PATH))

    router.add_api_route(AUTHORIZE_PATH, routes.authorize_page, methods=["GET"])
    router.add_api_route(AUTHORIZE_PATH, routes.authorize_submit, methods=["POST"])
    router.add_api_route(TOKEN_PATH, routes.token, methods=["POST"])
    router.add_api_route(REVOKE_PATH, routes.revoke, methods=["POST"])
    if settings.oauth_dynamic_registration:
        router.add_api_route(REGISTER_PATH, routes.register, methods=["POST"])
    router.add_api_route(INVITE_PATH, routes.invite_page, methods=["GET"])
    router.add_api_route(INVITE_PATH, routes.invite_submit, methods=["POST"])
    return router
