"""Forwarded headers count only from RELAY_TRUSTED_PROXIES: a relay behind a trusted proxy
knows its https scheme and public host (issuer, Secure cookies, HSTS), and a client that
sends the same headers straight to the relay changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from fakeupstream import FakeUpstream
from oauthclient import OAuthClient, OAuthRelay, oauth_relay
from teamrelay.config import ConfigError, load_settings
from teamrelay.proxies import parse_forwarded

METADATA = "/.well-known/oauth-authorization-server"
CALLBACK = "https://chatgpt.com/connector_platform_oauth_redirect"
PROXIED = {"x-forwarded-proto": "https", "x-forwarded-host": "relay.example"}


@pytest.fixture(scope="module")
def trusting(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url, RELAY_TRUSTED_PROXIES="127.0.0.1/32") as running:
        yield running


@pytest.fixture(scope="module")
def direct(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url) as running:
        yield running


def test_a_trusted_proxys_scheme_and_host_make_the_issuer_and_hsts(trusting: OAuthRelay) -> None:
    answer = httpx2.get(trusting.url + METADATA, headers=PROXIED)
    assert answer.json()["issuer"] == "https://relay.example"
    assert answer.headers["strict-transport-security"] == "max-age=31536000"


def test_rfc_7239_forwarded_counts_like_x_forwarded(trusting: OAuthRelay) -> None:
    forwarded = 'for="[2001:db8::7]:4711";proto=https;host="relay.example:8443", for=10.0.0.2'
    answer = httpx2.get(trusting.url + METADATA, headers={"forwarded": forwarded})
    assert answer.json()["issuer"] == "https://relay.example:8443"
    assert "strict-transport-security" in answer.headers


def test_an_unreadable_host_or_forwarded_is_not_used(trusting: OAuthRelay) -> None:
    answer = httpx2.get(
        trusting.url + METADATA,
        headers={"x-forwarded-host": "evil.example/path", "forwarded": "proto=https;;="},
    )
    assert answer.json()["issuer"] == trusting.url
    assert "strict-transport-security" not in answer.headers


def test_a_sign_in_page_behind_the_proxy_sets_a_secure_cookie(trusting: OAuthRelay) -> None:
    registered = httpx2.post(
        trusting.url + "/oauth/register",
        json={
            "client_name": "Agent",
            "redirect_uris": [CALLBACK],
            "token_endpoint_auth_method": "none",
        },
        headers=PROXIED,
    )
    assert registered.status_code == 201, registered.text
    agent = OAuthClient(trusting.url, registered.json()["client_id"], CALLBACK)
    params, _ = agent.authorize_params()
    page = httpx2.get(trusting.url + "/oauth/authorize", params=params, headers=PROXIED)
    assert page.status_code == 200, page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("teamrelay_csrf=")
    assert "secure" in cookie.lower().split("; ")
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    plain = httpx2.get(trusting.url + "/oauth/authorize", params=params)
    assert "secure" not in plain.headers["set-cookie"].lower().split("; ")


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/register"])
def test_token_revoke_and_register_behind_the_proxy_answer_oauth_errors(
    trusting: OAuthRelay, path: str
) -> None:
    answer = httpx2.post(trusting.url + path, data={"token": "x"}, headers=PROXIED)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"] != "insecure_transport"


def test_headers_from_an_untrusted_peer_change_nothing(direct: OAuthRelay) -> None:
    answer = httpx2.get(
        direct.url + METADATA, headers={**PROXIED, "forwarded": "proto=https;host=evil.example"}
    )
    assert answer.json()["issuer"] == direct.url
    assert "strict-transport-security" not in answer.headers


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/register"])
def test_plain_http_to_a_public_host_is_insecure_transport_not_a_500(
    direct: OAuthRelay, path: str
) -> None:
    answer = httpx2.post(direct.url + path, data={"token": "x"}, headers={"host": "relay.example"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "insecure_transport"


def test_forwarded_grammar() -> None:
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711", for=unknown') == [
        {"for": "[2001:db8:cafe::17]:4711"},
        {"for": "unknown"},
    ]
    assert parse_forwarded(r'host="a\"b"') == [{"host": 'a"b'}]
    for bad in ("", "for", "for=a b", "for=a;for=b", 'for="open', "for=a,,", "=x", "for=a;"):
        assert parse_forwarded(bad) is None, bad


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert load_settings(
        OPENAI_API_KEY="sk-x", RELAY_TRUSTED_PROXIES="10.0.0.0/8, ::1"
    ).trusted_proxies == ("10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match="RELAY_TRUSTED_PROXIES"):
        load_settings(OPENAI_API_KEY="sk-x", RELAY_TRUSTED_PROXIES="proxy.internal")
