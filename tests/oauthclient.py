"""A scripted OAuth client and member's browser for tests, and relays with OAuth on.

`Browser` does what a person does on the sign-in page (reads the form, CSRF token included,
and posts their key); `OAuthClient` does what ChatGPT or an MCP client does around it (PKCE,
state, resource, the code exchange, refresh, revocation).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import httpx2

import servers
from servers import RunningRelay, relay_in_thread
from teamrelay.gateway import Relay
from teamrelay.keys.store import KeyRecord

T = TypeVar("T")
CHATGPT_CALLBACK = "https://chatgpt.com/aip/g-0123456789abcdef/oauth/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(n): html.unescape(v) for n, v in _HIDDEN.findall(page)}


@dataclass
class Signed:
    code: str
    state: str | None
    verifier: str | None


@dataclass
class OAuthClient:
    base: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = None
    browser: httpx2.Client = field(default_factory=httpx2.Client)

    def close(self) -> None:
        self.browser.close()

    def authorize_params(
        self, *, state: str | None = "st-1", pkce: bool = True, **extra: str
    ) -> tuple[dict[str, str], str | None]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "api actions",
        }
        if state is not None:
            params["state"] = state
        verifier = None
        if pkce:
            verifier, challenge = pkce_pair()
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        params |= extra
        return params, verifier

    def sign_in_page(self, params: dict[str, str]) -> httpx2.Response:
        return self.browser.get(self.base + "/oauth/authorize", params=params)

    def submit(
        self, page: httpx2.Response, secret: str, decision: str = "allow"
    ) -> httpx2.Response:
        form = {**hidden_fields(page.text), "secret": secret, "decision": decision}
        return self.browser.post(self.base + "/oauth/authorize", data=form)

    def sign_in(self, secret: str, **params: Any) -> Signed:
        query, verifier = self.authorize_params(**params)
        page = self.sign_in_page(query)
        assert page.status_code == 200, page.text
        answer = self.submit(page, secret)
        assert answer.status_code == 302, answer.text
        return Signed(*redirected(answer, self.redirect_uri), verifier)

    def _auth(self, data: dict[str, str]) -> dict[str, str]:
        data = {**data, "client_id": self.client_id}
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        return data

    def exchange(self, signed: Signed, **override: str) -> httpx2.Response:
        data = {
            "grant_type": "authorization_code",
            "code": signed.code,
            "redirect_uri": self.redirect_uri,
        }
        if signed.verifier is not None:
            data["code_verifier"] = signed.verifier
        return httpx2.post(self.base + "/oauth/token", data=self._auth({**data, **override}))

    def refresh(self, refresh_token: str) -> httpx2.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return httpx2.post(self.base + "/oauth/token", data=self._auth(data))

    def revoke(self, token: str) -> httpx2.Response:
        return httpx2.post(self.base + "/oauth/revoke", data=self._auth({"token": token}))

    def tokens(self, secret: str, **params: Any) -> dict[str, Any]:
        answer = self.exchange(self.sign_in(secret, **params))
        assert answer.status_code == 200, answer.text
        tokens: dict[str, Any] = answer.json()
        return tokens


def redirected(answer: httpx2.Response, redirect_uri: str) -> tuple[str, str | None]:
    location = answer.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = parse_qs(urlsplit(location).query)
    assert "error" not in query, query
    return query["code"][0], query.get("state", [None])[0]


def register(
    base: str, redirect_uri: str, method: str = "none", name: str = "Agent"
) -> OAuthClient:
    answer = httpx2.post(
        base + "/oauth/register",
        json={
            "client_name": name,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": method,
        },
    )
    assert answer.status_code == 201, answer.text
    document = answer.json()
    return OAuthClient(base, document["client_id"], redirect_uri, document.get("client_secret"))


class Clock:
    """The relay's OAuth clock, movable: `clock.advance(hours=2)`."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def advance(self, **delta: float) -> None:
        self.shift += timedelta(**delta)


class OAuthRelay:
    """A running relay with OAuth on, its Relay object, its loop and a movable OAuth clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.running = RunningRelay("")
        self.relay: Relay | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return self.running.url

    def run(self, work: Callable[[Relay], Awaitable[T]]) -> T:
        """Run `work(relay)` on the relay's own loop, where its database engine lives."""
        assert self.relay is not None
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work(self.relay), self.loop).result(10)

    def create_key(self, name: str, **options: Any) -> tuple[KeyRecord, str]:
        options.setdefault("scopes", {"api", "actions"})
        return self.run(lambda relay: relay.keys.create(name, **options))


@contextlib.contextmanager
def oauth_relay(upstream_base_url: str, **extra: str) -> Iterator[OAuthRelay]:
    held = OAuthRelay()
    create = servers.create_app

    def capture(settings: Any) -> Relay:
        relay = held.relay = create(settings)
        relay.tokens.clock = held.clock

        async def remember_loop() -> None:
            held.loop = asyncio.get_running_loop()

        relay.startup.append(remember_loop)
        return relay

    # Every test registers its own client from 127.0.0.1: above the default per-address limit.
    env = {"RELAY_OAUTH_ENABLED": "true", "RELAY_OAUTH_REGISTRATIONS_PER_HOUR": "10000", **extra}
    with (
        mock.patch.object(servers, "create_app", capture),
        relay_in_thread(upstream_base_url, **env) as running,
    ):
        held.running = running
        yield held
