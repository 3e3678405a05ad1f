"""`teamrelay oauth clients create|list|revoke` and `teamrelay keys invite`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from teamrelay.keys.secrets import digest
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine
from teamrelay.oauth.cli import invite, oauth_app
from teamrelay.oauth.store import OAuthStore

GPT_CALLBACK = "https://chatgpt.com/aip/g-abc/oauth/callback"


def run(url: str, *args: str, code: int = 0, **env: str) -> tuple[str, str]:
    app = typer.Typer()
    app.add_typer(oauth_app, name="oauth")
    keys = typer.Typer()
    keys.command("invite")(invite)
    keys.command("create", hidden=True)(lambda: None)  # keeps `keys` a group, as mounted
    app.add_typer(keys, name="keys")
    result = CliRunner().invoke(
        app, list(args), env={"RELAY_DATABASE_URL": url, "COLUMNS": "200", **env}
    )
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"


def test_client_secret_is_printed_once_and_stored_as_a_digest(url: str) -> None:
    out, err = run(
        url, "oauth", "clients", "create", "--name", "Team GPT", "--redirect-uri", GPT_CALLBACK
    )
    secret = out.strip()
    client_id = err.split("client_id:")[1].split()[0]
    assert secret.startswith("trs_")
    assert "only time" in err

    async def check() -> None:
        engine = create_engine(url)
        try:
            client = await OAuthStore(engine).client(client_id)
        finally:
            await engine.dispose()
        assert client is not None
        assert client.secret_hash == digest(secret)
        assert client.redirect_uris == (GPT_CALLBACK,)
        assert client.check_endpoint_auth_method("client_secret_post", "token")

    asyncio.run(check())
    listed, _ = run(url, "oauth", "clients", "list")
    assert client_id in listed
    assert secret not in listed
    run(url, "oauth", "clients", "revoke", client_id)

    async def revoked() -> None:
        engine = create_engine(url)
        try:
            assert await OAuthStore(engine).client(client_id) is None
        finally:
            await engine.dispose()

    asyncio.run(revoked())


def test_redirect_uri_must_be_https(url: str) -> None:
    run(
        url,
        "oauth",
        "clients",
        "create",
        "--name",
        "Bad",
        "--redirect-uri",
        "http://example.com/cb",
        code=2,
    )


def test_invite_prints_a_link_whose_code_stays_out_of_the_server_request(url: str) -> None:
    out, err = run(url, "keys", "invite", "--name", "bob", RELAY_PUBLIC_URL="https://relay.test")
    link = out.strip()
    assert link.startswith("https://relay.test/oauth/invite#tri_")
    assert "bob" in err

    async def redeem() -> None:
        engine = create_engine(url)
        try:
            store, keys = OAuthStore(engine), KeyStore(engine, cache_ttl=0)
            code = link.split("#", 1)[1]
            made = await store.redeem_invite(code, keys, datetime.now(UTC))
            assert made is not None
            assert made[0].name == "bob"
            assert await keys.lookup(made[1]) is not None
            assert await store.redeem_invite(code, keys, datetime.now(UTC)) is None
        finally:
            await engine.dispose()

    asyncio.run(redeem())
    run(url, "keys", "invite", "--name", "bob", code=1, RELAY_PUBLIC_URL="https://relay.test")


def test_invite_needs_the_public_url(url: str) -> None:
    run(url, "keys", "invite", "--name", "zed", code=2)
