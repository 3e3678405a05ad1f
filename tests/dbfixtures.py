"""Database fixtures: a migrated, empty database per test, on SQLite and on PostgreSQL.

`db_url` (and `engine` on top of it) is parametrised over both; a test that takes it runs
twice. SQLite gets a fresh file per test. PostgreSQL is the server on 127.0.0.1:5432,
database `test`, trust auth: each test run creates its own role and a schema of the same name
(PostgreSQL's default search path, `"$user", public`, then puts the relay's tables there), so
the URL alone selects the schema, also in subprocesses, and runs never see each other's rows.
Tests in one run share the schema, emptied before each test.

If PostgreSQL is unreachable its variants are skipped with the reason, unless
RELAY_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.ledger.db import create_engine, upgrade

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"
PG_ADMINS = ("postgres", "root")
_TABLES = (
    "ledger",
    "relay_keys",
    "relay_budgets",
    "relay_objects",
    "relay_oauth_clients",
    "relay_oauth_codes",
    "relay_oauth_tokens",
    "relay_invites",
)


def services_unavailable(reason: str) -> None:
    if os.environ.get("RELAY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RELAY_REQUIRE_SERVICES=1: required here)", pytrace=False)
    pytest.skip(reason)


async def _admin_connection() -> asyncpg.Connection:
    problems = []
    for user in PG_ADMINS:
        try:
            return await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database=PG_DATABASE, timeout=3
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            problems.append(f"as {user}: {exc}")
    services_unavailable(
        f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DATABASE} unreachable ({'; '.join(problems)})"
    )
    raise AssertionError("unreachable")


class PostgresSchemas:
    """Creates role+schema pairs on the test server, and drops them all at the end."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self._admin = admin
        self._names: list[str] = []

    async def create(self) -> str:
        name = f"teamrelay_test_{secrets.token_hex(5)}"
        await self._admin.execute(f"CREATE ROLE {name} LOGIN")
        await self._admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        self._names.append(name)
        return f"postgresql+asyncpg://{name}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"

    async def drop_all(self) -> None:
        for name in self._names:
            await self._admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            await self._admin.execute(f"DROP ROLE IF EXISTS {name}")
        self._names.clear()


@pytest.fixture(scope="session")
async def postgres_schemas() -> AsyncIterator[PostgresSchemas]:
    admin = await _admin_connection()
    schemas = PostgresSchemas(admin)
    try:
        yield schemas
    finally:
        await schemas.drop_all()
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_url(postgres_schemas: PostgresSchemas) -> str:
    """This run's migrated schema on the test server."""
    url = await postgres_schemas.create()
    await upgrade(url)
    return url


@pytest.fixture
async def fresh_postgres_url(postgres_schemas: PostgresSchemas) -> str:
    """An empty, unmigrated schema of its own (for migration tests)."""
    return await postgres_schemas.create()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)],
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Which database, as a URL; not yet migrated for SQLite, not yet emptied for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'relay.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db_url(database: str) -> str:
    """A migrated database with empty tables."""
    if database.startswith("sqlite"):
        await upgrade(database)
        return database
    engine = create_engine(database)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY"))
    finally:
        await engine.dispose()
    return database


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def other_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database, as another relay process would have."""
    engine = create_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def ledger_rows(url: str) -> list[dict[str, Any]]:
    """Every ledger row in the database at `url`, read with an engine of its own."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT * FROM ledger"))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()
