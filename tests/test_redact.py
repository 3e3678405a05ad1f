"""Redact: credentials in every shape a library prints them are blanked, other text is kept."""

from __future__ import annotations

import logging

import pytest

from teamrelay.config import Settings
from teamrelay.observability.logs import JsonFormatter, configured_secrets
from teamrelay.observability.redact import Redact, scrub

KEY = "tr-" + "k" * 43


@pytest.mark.parametrize(
    ("logged", "shown"),
    [
        (f"< authorization: Bearer {KEY}", "< authorization: [redacted]"),
        ("< Authorization: Basic dXNlcjpwYXNz", "< Authorization: [redacted]"),
        (f"< x-relay-key: {KEY}", "< x-relay-key: [redacted]"),
        (f"{{'authorization': 'Bearer {KEY}'}}", "{'authorization': '[redacted]'}"),
        (f"[(b'x-relay-key', b'{KEY}')]", "[(b'x-relay-key', b'[redacted]')]"),
        (
            f"< sec-websocket-protocol: realtime, openai-insecure-api-key.{KEY}",
            "< sec-websocket-protocol: realtime, openai-insecure-api-key.[redacted]",
        ),
        (
            f'"WebSocket /v1/realtime?model=gpt-realtime&api_key={KEY}" 401',
            '"WebSocket /v1/realtime?model=gpt-realtime&api_key=[redacted]" 401',
        ),
        ("/oauth/token?code=trc_abc&state=s1", "/oauth/token?code=[redacted]&state=s1"),
        ("refreshed tra_" + "a" * 40 + " ok", "refreshed [redacted] ok"),
        ("upstream key sk-proj-" + "x" * 30, "upstream key [redacted]"),
        (
            'chunk: b\'{"download_url":"https://relay.example/actions/download/eyJwIjo.c2ln"}\'',
            'chunk: b\'{"download_url":"https://relay.example/actions/download/[redacted]"}\'',
        ),
        (
            "fetching https://files.oaiusercontent.com/file-1?se=2026&sig=c2lnbmF0dXJl&sp=r",
            "fetching https://files.oaiusercontent.com/file-1?se=2026&sig=[redacted]&sp=r",
        ),
        ("key bootstrap-tr-test-a made", "key bootstrap-tr-test-a made"),
        ("no cookie, redirecting to the sign-in", "no cookie, redirecting to the sign-in"),
    ],
)
def test_credentials_are_blanked_and_the_rest_kept(logged: str, shown: str) -> None:
    assert scrub(logged) == shown


def test_configured_secrets_of_any_shape_are_blanked_but_short_ones_ignored() -> None:
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "got %s and %s", ("abc", "x"), None)
    Redact(["abc"]).filter(record)
    assert record.getMessage() == "got abc and x"
    record = logging.LogRecord(
        "x", logging.DEBUG, __file__, 1, "got %s", ("choose-a-long-random-key",), None
    )
    Redact(["choose-a-long-random-key", "long-random"]).filter(record)
    assert record.getMessage() == "got [redacted]"


def test_a_traceback_is_rendered_redacted_for_text_and_json() -> None:
    try:
        raise RuntimeError(f"refused header authorization: Bearer {KEY}")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__)
        )
    Redact().filter(record)
    text = logging.Formatter().format(record)
    json_line = JsonFormatter().format(record)
    assert "RuntimeError" in text
    assert "RuntimeError" in json_line
    assert KEY not in text
    assert KEY not in json_line


def test_the_configured_secrets_include_every_password_in_a_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:env-proxy-pass-1@proxy.internal:3128")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        OPENAI_API_KEY="sk-upstream-key-000000000000",
        OPENAI_BASE_URL="https://gateway:base-url-pass-1@gateway.internal/v1",
        RELAY_KEYS="choose-a-long-random-key",
        RELAY_DATABASE_URL="postgresql+asyncpg://relay:db-pass-000001@db.internal/relay",
        RELAY_UPSTREAM_PROXY="http://egress:relay-proxy-pass-1@proxy.internal:3128",
    )
    found = configured_secrets(settings)
    for secret in (
        "sk-upstream-key-000000000000",
        "choose-a-long-random-key",
        "base-url-pass-1",
        "db-pass-000001",
        "relay-proxy-pass-1",
        "env-proxy-pass-1",
    ):
        assert secret in found
