"""Codes, access and refresh tokens, client secrets and invites are stored as digests only, and
none of them appears in any log line, even with every logger at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Connection, inspect, text

from fakeupstream import FakeUpstream
from oauthclient import OAuthRelay, Signed, hidden_fields, oauth_relay, register
from servers import RELAY_KEY
from teamrelay.gateway import Relay
from teamrelay.keys.secrets import digest

CALLBACK = "http://localhost:8978/callback"


@pytest.fixture
def gate(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[OAuthRelay]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"
    with oauth_relay(fake_upstream.base_url, RELAY_DATABASE_URL=url) as running:
        yield running


async def _every_value(relay: Relay) -> list[str]:
    def dump(connection: Connection) -> list[str]:
        values = []
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                values.extend(str(value) for value in row)
        return values

    async with relay.engine.connect() as connection:
        return await connection.run_sync(dump)


async def _invite(relay: Relay) -> str:
    return await relay.tokens.store.create_invite(
        "erin", {"api", "actions"}, now=datetime.now(UTC), ttl=timedelta(days=1)
    )


@pytest.mark.usefixtures("upstream")
def test_no_secret_is_stored_in_clear_or_logged(
    gate: OAuthRelay, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    confidential = register(gate.url, CALLBACK, method="client_secret_post", name="Vault")
    public = register(gate.url, CALLBACK)
    try:
        signed = confidential.sign_in(RELAY_KEY)
        tokens = confidential.exchange(signed).json()
        refreshed = confidential.refresh(tokens["refresh_token"]).json()
        assert confidential.revoke(refreshed["refresh_token"]).status_code == 200
        invite = gate.run(_invite)
        params, verifier = public.authorize_params()
        shown = public.submit(public.sign_in_page(params), invite)
        erin_key = hidden_fields(shown.text)["secret"]
        answer = public.browser.post(gate.url + "/oauth/authorize", data=hidden_fields(shown.text))
        code = httpx2.URL(answer.headers["location"]).params["code"]
        erin = public.exchange(Signed(code, None, verifier)).json()
        httpx2.get(
            gate.url + "/v1/models", headers={"authorization": f"Bearer {erin['access_token']}"}
        )
    finally:
        confidential.close()
        public.close()

    secrets = {
        "client secret": confidential.client_secret or "",
        "code": signed.code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "rotated access token": refreshed["access_token"],
        "rotated refresh token": refreshed["refresh_token"],
        "invite": invite,
        "invited member's key": erin_key,
        "invited member's code": code,
        "invited member's access token": erin["access_token"],
    }
    assert all(secrets.values())
    stored = gate.run(_every_value)
    digests = set(stored)
    out, err = capfd.readouterr()
    # httpx2/httpcore2 records are this test's own client (the member's browser) at DEBUG.
    relay_records = [r for r in caplog.records if not r.name.startswith(("httpx2", "httpcore2"))]
    logged = "\n".join(r.getMessage() for r in relay_records) + out + err
    for what, secret in secrets.items():
        assert not any(secret in value for value in stored), f"{what} stored in clear"
        assert secret not in logged, f"{what} logged"
    for what in ("client secret", "access token", "refresh token", "invite", "code"):
        assert digest(secrets[what]) in digests, f"{what} not stored as a digest"
