"""The dashboard's session cookie and CSRF tokens: signed, expiring, bound to their purpose."""

from __future__ import annotations

import base64
import json

from pydantic import SecretStr

from teamrelay.admin.session import Sessions, session_key
from teamrelay.config import Settings

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_reads_back_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(KEY, ttl=60, clock=clock)
    opened, cookie = sessions.open("key123", "tr-abcdef")
    assert sessions.read(cookie) == opened
    clock.now += 59
    assert sessions.read(cookie) == opened
    clock.now += 1
    assert sessions.read(cookie) is None


def test_an_altered_or_foreign_cookie_is_no_session() -> None:
    sessions = Sessions(KEY)
    _, cookie = sessions.open("key123", "tr-abcdef")
    payload, mac = cookie.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["k"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()
    assert sessions.read(f"{forged}.{mac}") is None
    assert Sessions(b"x" * 32).read(cookie) is None
    for junk in ("", "nodot", "a.b.c", ".", f"{payload}.", "e30.e30"):
        assert sessions.read(junk) is None


def test_csrf_tokens_are_bound_to_their_nonce_and_purpose() -> None:
    sessions = Sessions(KEY)
    token = sessions.csrf_token("login", "nonce-1")
    assert sessions.csrf_valid("login", "nonce-1", token)
    assert not sessions.csrf_valid("logout", "nonce-1", token)
    assert not sessions.csrf_valid("login", "nonce-2", token)
    assert not sessions.csrf_valid("login", None, token)
    assert not sessions.csrf_valid("login", "nonce-1", None)
    assert not Sessions(b"x" * 32).csrf_valid("login", "nonce-1", token)


def test_the_session_key_comes_from_the_signing_key_else_the_upstream_key() -> None:
    upstream_only = Settings(_env_file=None, OPENAI_API_KEY="sk-test-upstream-0000")  # type: ignore[call-arg]
    other_upstream = Settings(_env_file=None, OPENAI_API_KEY="sk-test-upstream-1111")  # type: ignore[call-arg]
    signed = upstream_only.model_copy(update={"signing_key": SecretStr("relay-signing-0000")})
    keys = {session_key(s) for s in (upstream_only, other_upstream, signed)}
    assert len(keys) == 3
    assert b"sk-test-upstream-0000" not in session_key(upstream_only)
    assert session_key(signed) == session_key(
        other_upstream.model_copy(update={"signing_key": SecretStr("relay-signing-0000")})
    )
