"""`teamrelay keys create/update/list` set and show limits, budgets and isolation."""

from __future__ import annotations

import asyncio

import typer
from typer.testing import CliRunner

from teamrelay.keys.cli import keys_app
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.ledger.db import create_engine


def run(url: str, *args: str, code: int = 0) -> str:
    app = typer.Typer()
    app.add_typer(keys_app, name="keys")
    result = CliRunner().invoke(
        app, ["keys", *args], env={"RELAY_DATABASE_URL": url, "COLUMNS": "250"}
    )
    assert result.exit_code == code, result.output
    return result.stdout + result.stderr


def record(url: str, name: str) -> KeyRecord:
    async def main() -> KeyRecord:
        engine = create_engine(url)
        try:
            return await KeyStore(engine, cache_ttl=0).get(name)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_create_update_and_list_limits(db_url: str) -> None:
    run(db_url, "create", "--name", "alice", "--rpm", "60", "--daily-usd", "5")
    assert dict(record(db_url, "alice").limits) == {"rpm": 60, "daily_usd": 5.0}

    shown = run(
        db_url, "update", "alice", "--tpm", "100000", "--rpm", "off", "--isolation", "shared"
    )
    assert "tpm 100,000" in shown
    assert dict(record(db_url, "alice").limits) == {
        "tpm": 100000,
        "daily_usd": 5.0,
        "isolation": "shared",
    }
    run(db_url, "update", "alice", "--scopes", "api", "--monthly-tokens", "2000000")
    alice = record(db_url, "alice")
    assert alice.scopes == frozenset({"api"})
    assert alice.limits["monthly_tokens"] == 2_000_000

    listing = run(db_url, "list")
    assert "tpm 100,000, daily $5.00, monthly tokens 2,000,000, isolation shared" in listing


def test_bad_limit_values_are_refused_by_option(db_url: str) -> None:
    out = run(db_url, "create", "--name", "bob", "--rpm", "fast", code=2)
    assert "--rpm" in out
    run(db_url, "create", "--name", "bob")
    assert "--isolation" in run(db_url, "update", "bob", "--isolation", "nobody", code=2)
    assert "nothing to change" in run(db_url, "update", "bob", code=2)
    assert run(db_url, "update", "carol", "--rpm", "5", code=1)
