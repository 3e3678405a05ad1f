"""`teamrelay keys …`: secrets printed exactly once, and nowhere else."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from teamrelay.keys.cli import keys_app
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine


@dataclass
class Shell:
    """Runs `keys` commands against one database and keeps everything they printed."""

    url: str
    transcript: str = ""

    def run(self, *args: str, code: int = 0) -> tuple[str, str]:
        app = typer.Typer()
        app.add_typer(keys_app, name="keys")
        result = CliRunner().invoke(
            app, ["keys", *args], env={"RELAY_DATABASE_URL": self.url, "COLUMNS": "200"}
        )
        self.transcript += result.stdout + result.stderr
        assert result.exit_code == code, result.output
        return result.stdout, result.stderr


@pytest.fixture
def shell(db_url: str) -> Shell:
    return Shell(db_url)


def lookup(url: str, secret: str) -> bool:
    async def main() -> bool:
        engine = create_engine(url)
        try:
            return await KeyStore(engine, cache_ttl=0).lookup(secret) is not None
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_secrets_appear_only_in_their_one_time_print(shell: Shell) -> None:
    alice, note = shell.run("create", "--name", "alice", "--expires", "90d")
    secret = alice.strip()
    assert secret.startswith("tr-")
    assert alice == secret + "\n"  # stdout is the secret alone, for $(...) capture
    assert "only time" in note
    assert secret not in note

    bob = shell.run("create", "--name", "bob", "--scopes", "api,actions,admin")[0].strip()
    shell.run("list")
    shell.run("revoke", "bob")
    rotated = shell.run("rotate", "alice")[0].strip()
    shell.run("list")
    shell.run("create", "--name", "alice", code=1)
    shell.run("revoke", "nobody", code=1)

    for one_time in (secret, bob, rotated):
        assert shell.transcript.count(one_time) == 1
    assert secret[:9] in shell.transcript or rotated[:9] in shell.transcript  # prefixes shown


def test_created_key_works_and_rotation_retires_the_old_secret(shell: Shell) -> None:
    first = shell.run("create", "--name", "alice")[0].strip()
    assert lookup(shell.url, first)
    second = shell.run("rotate", "alice")[0].strip()
    assert not lookup(shell.url, first)
    assert lookup(shell.url, second)
    shell.run("revoke", "alice")
    assert not lookup(shell.url, second)


def test_list_shows_each_key_without_secrets(shell: Shell) -> None:
    secret = shell.run("create", "--name", "alice", "--scopes", "api")[0].strip()
    shell.run("create", "--name", "ci", "--expires", "2099-01-01")
    shell.run("revoke", "ci")
    listing = shell.run("list")[0]
    for shown in ("alice", "ci", secret[:9], "api", "2099-01-01"):
        assert shown in listing
    assert secret not in listing
    assert datetime.now(UTC).strftime("%Y-%m-%d") in listing  # created, and revoked for ci


def test_create_refuses_bad_scopes_and_past_expiry(shell: Shell) -> None:
    assert "unknown scope" in shell.run("create", "--name", "x", "--scopes", "root", code=1)[1]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    shell.run("create", "--name", "x", "--expires", yesterday, code=2)
    shell.run("create", "--name", "x", "--expires", "soon", code=2)
    shell.run("create", "--name", "x", "--expires", "99999999d", code=2)


def test_an_empty_list_says_how_to_start(shell: Shell) -> None:
    assert "keys create" in shell.run("list")[1]
