"""Open registration (RFC 7591) without its abuses: a limit per client address, redirect URIs
that are plain absolute https (or loopback http), a 400 for any body it cannot use, and a
consent page that names the redirect's host and says when a client registered itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakeupstream import FakeUpstream
from oauthclient import OAuthClient, OAuthRelay, oauth_relay, register
from servers import RELAY_KEY
from teamrelay.gateway import Relay

CALLBACK = "https://chatgpt.com/connector_platform_oauth_redirect"
BAD_REDIRECTS = [
    "http://attacker.example/cb",
    "https://a.example/cb; script-src *",
    "https://a.example/cb;script-src",
    "https://a.example/cb,https://b.example",
    "https://a.example/c b",
    "https://a.example/cb#fragment",
    "https://a.example/cb\x00",
    "https://a.example/cb\n",
    "https://chatgpt.com@evil.example/cb",
    "https://a.example:99999/cb",
    "https:///cb",
    "javascript:alert(1)",
    "/relative/cb",
    "https://a.example/%zz",
    "x" * 3000,
]


@pytest.fixture(scope="module")
def gate(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(
        fake_upstream.base_url,
        RELAY_OAUTH_REGISTRATIONS_PER_HOUR="3",
        RELAY_TRUSTED_PROXIES="127.0.0.1",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def open_gate(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url) as running:
        yield running


def registration(base: str, body: Any, client: str | None = None) -> httpx2.Response:
    headers = {"x-forwarded-for": client} if client else {}
    return httpx2.post(base + "/oauth/register", json=body, headers=headers)


def client_body(*uris: str, name: str = "Agent") -> dict[str, Any]:
    return {"client_name": name, "redirect_uris": list(uris), "token_endpoint_auth_method": "none"}


def test_registrations_are_limited_per_client_address(gate: OAuthRelay) -> None:
    answers = [registration(gate.url, client_body(CALLBACK), "198.51.100.7") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]
    assert answers[3].json()["error"] == "too_many_requests"
    assert "retry-after" in answers[3].headers
    assert registration(gate.url, client_body(CALLBACK), "198.51.100.8").status_code == 201


@pytest.mark.parametrize("uri", BAD_REDIRECTS)
def test_redirect_uris_that_are_not_plain_https_or_loopback_are_refused(
    open_gate: OAuthRelay, uri: str
) -> None:
    answer = registration(open_gate.url, client_body(CALLBACK, uri))
    assert answer.status_code == 400, answer.text
    # Authlib's own checks (fragments, some forms) answer in the general error.
    assert answer.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")


@pytest.mark.parametrize(
    "uri", [CALLBACK, "http://localhost:8976/cb", "http://127.0.0.1:33418/", "http://[::1]:5/cb"]
)
def test_https_and_loopback_redirects_register(open_gate: OAuthRelay, uri: str) -> None:
    assert registration(open_gate.url, client_body(uri)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        None,
        {"redirect_uris": CALLBACK},
        {"redirect_uris": [CALLBACK, 7]},
        {"redirect_uris": [[CALLBACK]]},
        {"redirect_uris": [CALLBACK], "client_name": {"a": 1}},
        {"redirect_uris": [CALLBACK], "client_name": "tab\there"},
        {"redirect_uris": [CALLBACK], "token_endpoint_auth_method": ["none"]},
        {"redirect_uris": [CALLBACK], "grant_types": "authorization_code"},
        {"redirect_uris": [CALLBACK] * 11},
        {"redirect_uris": []},
    ],
)
def test_odd_metadata_is_a_400(open_gate: OAuthRelay, body: Any) -> None:
    answer = registration(open_gate.url, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("invalid_")


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe{", b"{", b'{"redirect_uris": [1e999999]}'],
)
def test_unreadable_or_deeply_nested_json_is_a_400(open_gate: OAuthRelay, raw: bytes) -> None:
    answer = httpx2.post(
        open_gate.url + "/oauth/register",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code in (400, 413), answer.text


def consent(agent: OAuthClient) -> httpx2.Response:
    params, _ = agent.authorize_params()
    page = agent.sign_in_page(params)
    assert page.status_code == 200, page.text
    return page


def test_consent_page_names_the_host_and_marks_a_self_registered_client(
    open_gate: OAuthRelay,
) -> None:
    agent = register(open_gate.url, CALLBACK, name="ChatGPT")
    try:
        page = consent(agent)
    finally:
        agent.close()
    assert "<b>ChatGPT</b>" in page.text
    assert "registered itself" in page.text
    assert '<b class="host">chatgpt.com</b>' in page.text
    assert "form-action 'self' https://chatgpt.com;" in page.headers["content-security-policy"]


async def _operator_client(relay: Relay, uri: str) -> str:
    client, _ = await relay.tokens.store.create_client(
        "Team GPT", [uri], auth_method="none", registered_by="cli", now=datetime.now(UTC)
    )
    return client.client_id


def test_a_stored_redirect_uri_cannot_extend_the_csp(open_gate: OAuthRelay) -> None:
    """A client stored before redirect URIs were checked, with a `;` in its URI."""
    uri = "https://team.example;script-src *;/cb"
    client_id = open_gate.run(lambda relay: _operator_client(relay, uri))
    agent = OAuthClient(open_gate.url, client_id, uri)
    try:
        page = consent(agent)
    finally:
        agent.close()
    policy = page.headers["content-security-policy"]
    assert "script-src" not in policy
    assert "form-action 'self';" in policy
    assert "set up by your team" in page.text
    assert "registered itself" not in page.text


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
_FIELDS = st.sampled_from(
    [
        "client_name",
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "scope",
        "software_statement",
        "jwks",
        "client_uri",
    ]
)
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "none", "authorization_code", "refresh_token", CALLBACK, "tra_x", "trr_x", "trc_x"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(_FIELDS, _JSON | _TEXT, max_size=6) | _JSON)
def test_no_registration_body_is_a_500(open_gate: OAuthRelay, body: Any) -> None:
    answer = registration(open_gate.url, body)
    assert answer.status_code in (201, 400), answer.text


_FORM_NAMES = st.sampled_from(
    [
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "client_secret",
        "code_verifier",
        "refresh_token",
        "resource",
        "scope",
        "token",
        "token_type_hint",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/oauth/token", "/oauth/revoke"]),
    form=st.lists(st.tuples(_FORM_NAMES | st.text(max_size=8), _TEXT), max_size=8),
    basic=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
)
def test_no_token_or_revocation_form_is_a_500(
    open_gate: OAuthRelay, path: str, form: list[tuple[str, str]], basic: str | None
) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if basic is not None:
        headers["authorization"] = f"Basic {basic}"
    answer = httpx2.post(open_gate.url + path, content=urlencode(form), headers=headers)
    assert answer.status_code < 500, answer.text


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.lists(
        st.tuples(
            _FORM_NAMES
            | st.sampled_from(
                ["response_type", "state", "code_challenge", "code_challenge_method"]
            ),
            _TEXT,
        ),
        max_size=8,
    )
)
def test_no_sign_in_query_is_a_500(open_gate: OAuthRelay, query: list[tuple[str, str]]) -> None:
    answer = httpx2.get(open_gate.url + "/oauth/authorize", params=query)
    assert answer.status_code < 500, answer.text


def test_a_registered_client_signs_in(open_gate: OAuthRelay) -> None:
    agent = register(open_gate.url, "http://127.0.0.1:8976/cb")
    try:
        tokens = agent.tokens(RELAY_KEY)
    finally:
        agent.close()
    assert tokens["access_token"].startswith("tra_")
