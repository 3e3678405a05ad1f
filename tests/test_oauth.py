"""The relay as an OAuth 2.1 authorization server: a scripted client runs every step, and every
way to get a token wrongly is refused with the error OAuth names for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from fakeupstream import FakeUpstream
from oauthclient import (
    OAuthClient,
    OAuthRelay,
    Signed,
    hidden_fields,
    oauth_relay,
    register,
)
from servers import RELAY_KEY
from teamrelay.gateway import Relay

CALLBACK = "http://localhost:8976/callback"


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url) as running:
        yield running


@pytest.fixture
def gate(server: OAuthRelay) -> Iterator[OAuthRelay]:
    server.clock.shift = timedelta()
    yield server
    server.clock.shift = timedelta()


@pytest.fixture
def agent(gate: OAuthRelay) -> Iterator[OAuthClient]:
    client = register(gate.url, CALLBACK)
    yield client
    client.close()


def models(base: str, token: str) -> httpx2.Response:
    return httpx2.get(base + "/v1/models", headers={"authorization": f"Bearer {token}"})


def oauth_error(answer: httpx2.Response) -> str:
    error: str = answer.json()["error"]
    return error


def test_metadata_documents_name_the_endpoints_and_the_resources(gate: OAuthRelay) -> None:
    server = httpx2.get(gate.url + "/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == gate.url
    assert server["authorization_endpoint"] == gate.url + "/oauth/authorize"
    assert server["token_endpoint"] == gate.url + "/oauth/token"
    assert server["revocation_endpoint"] == gate.url + "/oauth/revoke"
    assert server["registration_endpoint"] == gate.url + "/oauth/register"
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert "client_secret_post" in server["token_endpoint_auth_methods_supported"]
    for path, resource in (("", gate.url), ("/mcp", gate.url + "/mcp")):
        document = httpx2.get(gate.url + "/.well-known/oauth-protected-resource" + path).json()
        assert document["resource"] == resource
        assert document["authorization_servers"] == [gate.url]


@pytest.mark.usefixtures("upstream")
def test_scripted_client_registers_signs_in_calls_refreshes_and_revokes(
    gate: OAuthRelay, agent: OAuthClient
) -> None:
    params, verifier = agent.authorize_params(state="st-42", resource=gate.url)
    page = agent.sign_in_page(params)
    assert page.status_code == 200
    assert "Agent" in page.text
    assert hidden_fields(page.text)["csrf"] == agent.browser.cookies["teamrelay_csrf"]
    answer = agent.submit(page, RELAY_KEY)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-42"]

    exchanged = httpx2.post(
        gate.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": CALLBACK,
            "client_id": agent.client_id,
            "code_verifier": verifier or "",
            "resource": gate.url,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.headers["cache-control"] == "no-store"
    tokens = exchanged.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["resource"] == gate.url
    assert set(tokens["scope"].split()) == {"api", "actions"}
    assert models(gate.url, tokens["access_token"]).status_code == 200

    refreshed = agent.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert models(gate.url, fresh["access_token"]).status_code == 200

    assert agent.revoke(fresh["access_token"]).status_code == 200
    assert models(gate.url, fresh["access_token"]).status_code == 401
    assert oauth_error(agent.refresh(fresh["refresh_token"])) == "invalid_grant"


def test_wrong_code_verifier_is_refused(agent: OAuthClient) -> None:
    signed = agent.sign_in(RELAY_KEY)
    answer = agent.exchange(signed, code_verifier="x" * 64)
    assert answer.status_code == 400
    assert oauth_error(answer) == "invalid_grant"


def test_public_client_without_verifier_is_refused(agent: OAuthClient) -> None:
    signed = agent.sign_in(RELAY_KEY)
    signed.verifier = None
    assert oauth_error(agent.exchange(signed)) == "invalid_request"


@pytest.mark.usefixtures("upstream")
def test_reused_code_is_refused_and_ends_what_it_bought(
    gate: OAuthRelay, agent: OAuthClient
) -> None:
    signed = agent.sign_in(RELAY_KEY)
    first = agent.exchange(signed)
    assert first.status_code == 200
    again = agent.exchange(signed)
    assert again.status_code == 400
    assert oauth_error(again) == "invalid_grant"
    assert models(gate.url, first.json()["access_token"]).status_code == 401


def test_wrong_redirect_uri_is_refused_at_both_ends(gate: OAuthRelay, agent: OAuthClient) -> None:
    signed = agent.sign_in(RELAY_KEY)
    answer = agent.exchange(signed, redirect_uri="http://localhost:8976/other")
    assert oauth_error(answer) == "invalid_grant"

    params, _ = agent.authorize_params(redirect_uri="https://attacker.example/cb")
    page = agent.sign_in_page(params)
    assert page.status_code == 400  # never redirected to an unregistered URI
    assert "location" not in page.headers


@pytest.mark.usefixtures("upstream")
def test_expired_code_and_access_token_are_refused(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY)
    signed = agent.sign_in(RELAY_KEY)
    gate.clock.advance(seconds=61)
    assert oauth_error(agent.exchange(signed)) == "invalid_grant"
    assert models(gate.url, tokens["access_token"]).status_code == 200
    gate.clock.advance(hours=1)
    assert models(gate.url, tokens["access_token"]).status_code == 401
    assert agent.refresh(tokens["refresh_token"]).status_code == 200


def test_reused_refresh_token_ends_the_whole_sign_in(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY)
    fresh = agent.refresh(tokens["refresh_token"]).json()
    assert oauth_error(agent.refresh(tokens["refresh_token"])) == "invalid_grant"
    assert oauth_error(agent.refresh(fresh["refresh_token"])) == "invalid_grant"


def test_refresh_token_of_another_client_is_refused(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY)
    other = register(gate.url, CALLBACK, name="Other")
    try:
        assert oauth_error(other.refresh(tokens["refresh_token"])) == "invalid_grant"
    finally:
        other.close()


def test_pkce_plain_and_missing_challenges_are_refused(agent: OAuthClient) -> None:
    for extra in ({"code_challenge_method": "plain"}, {}):
        params, _ = agent.authorize_params(pkce=bool(extra), **extra)
        answer = agent.sign_in_page(params)
        assert answer.status_code == 302
        error = parse_qs(urlsplit(answer.headers["location"]).query)
        assert error["error"] == ["invalid_request"]
        assert error["state"] == ["st-1"]


def test_unknown_resource_is_refused_with_invalid_target(agent: OAuthClient) -> None:
    params, _ = agent.authorize_params(resource="https://elsewhere.example/mcp")
    answer = agent.sign_in_page(params)
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_target"]


def test_sign_in_form_without_its_csrf_cookie_is_refused(agent: OAuthClient) -> None:
    params, _ = agent.authorize_params()
    page = agent.sign_in_page(params)
    form = {**hidden_fields(page.text), "secret": RELAY_KEY, "decision": "allow"}
    answer = httpx2.post(agent.base + "/oauth/authorize", data=form)  # another browser
    assert answer.status_code == 403
    assert "location" not in answer.headers


def test_wrong_key_keeps_the_member_on_the_sign_in_page(agent: OAuthClient) -> None:
    params, _ = agent.authorize_params()
    answer = agent.submit(agent.sign_in_page(params), "tr-not-a-key")
    assert answer.status_code == 401
    assert "not valid" in answer.text
    assert answer.headers["x-frame-options"] == "DENY"


def test_deny_sends_access_denied_back(agent: OAuthClient) -> None:
    params, _ = agent.authorize_params()
    answer = agent.submit(agent.sign_in_page(params), "", decision="deny")
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["st-1"]


@pytest.mark.usefixtures("upstream")
def test_tokens_carry_only_the_scopes_granted(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY, scope="actions")
    assert tokens["scope"] == "actions"
    answer = models(gate.url, tokens["access_token"])
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "insufficient_scope"


def test_unknown_scope_is_refused(agent: OAuthClient) -> None:
    params, _ = agent.authorize_params(scope="admin")
    answer = agent.sign_in_page(params)
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_scope"]


def test_registration_refuses_redirect_uris_that_are_not_https(gate: OAuthRelay) -> None:
    answer = httpx2.post(
        gate.url + "/oauth/register",
        json={"client_name": "Bad", "redirect_uris": ["http://attacker.example/cb"]},
    )
    assert answer.status_code == 400
    assert oauth_error(answer) == "invalid_redirect_uri"


def test_confidential_client_needs_its_secret(gate: OAuthRelay) -> None:
    client = register(gate.url, CALLBACK, method="client_secret_post", name="Confidential")
    try:
        signed = client.sign_in(RELAY_KEY, pkce=False)
        secret = client.client_secret
        client.client_secret = "trs_wrong"
        assert client.exchange(signed).status_code == 401
        client.client_secret = secret
        assert client.exchange(signed).status_code == 200
    finally:
        client.close()


@pytest.mark.usefixtures("upstream")
def test_invite_creates_the_members_key_once_and_signs_them_in(
    gate: OAuthRelay, agent: OAuthClient
) -> None:
    invite = gate.run(lambda relay: _invite(relay, "carol"))
    params, verifier = agent.authorize_params()
    shown = agent.submit(agent.sign_in_page(params), invite)
    assert shown.status_code == 200
    fields = hidden_fields(shown.text)
    key = fields["secret"]
    assert key.startswith("tr-")
    assert key in shown.text
    answer = agent.browser.post(agent.base + "/oauth/authorize", data=fields)
    assert answer.status_code == 302
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    exchanged = agent.exchange(Signed(code, None, verifier))
    assert exchanged.status_code == 200
    assert models(gate.url, key).status_code == 200
    again = agent.submit(agent.sign_in_page(params), invite)
    assert again.status_code == 401


async def _invite(relay: Relay, name: str) -> str:
    store = relay.tokens.store
    return await store.create_invite(
        name, {"api", "actions"}, now=datetime.now(UTC), ttl=timedelta(days=1)
    )


def test_refresh_token_expires_too(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY)
    gate.clock.advance(days=31)
    assert oauth_error(agent.refresh(tokens["refresh_token"])) == "invalid_grant"


@pytest.mark.usefixtures("upstream")
def test_revoking_the_members_key_ends_their_tokens(gate: OAuthRelay, agent: OAuthClient) -> None:
    _, secret = gate.create_key("frank")
    tokens = agent.tokens(secret)
    assert models(gate.url, tokens["access_token"]).status_code == 200
    gate.run(lambda relay: relay.keys.revoke("frank"))
    deadline = time.monotonic() + 5  # the lookup caches' bound
    while models(gate.url, tokens["access_token"]).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert oauth_error(agent.refresh(tokens["refresh_token"])) == "invalid_grant"
