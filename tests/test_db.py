"""Engines, pragmas and migrations of the relay's database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.ledger.db import (
    VERSION_TABLE,
    alembic_config,
    create_engine,
    database_url,
    upgrade,
)
from teamrelay.ledger.models import Base

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_database_url_defaults_to_sqlite_in_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RELAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("RELAY_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite+aiosqlite:///{tmp_path}/share/teamrelay/teamrelay.db"
    assert database_url() == expected
    monkeypatch.setenv("RELAY_DATA_DIR", "relative")
    assert database_url() == f"sqlite+aiosqlite:///{tmp_path}/relative/teamrelay.db"
    monkeypatch.setenv("RELAY_DATABASE_URL", "postgresql+asyncpg://relay@db/relay")
    assert database_url() == "postgresql+asyncpg://relay@db/relay"


async def test_sqlite_engine_creates_the_directory_and_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "relay.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            synchronous = (await connection.execute(text("PRAGMA synchronous"))).scalar()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await engine.dispose()
    assert path.parent.is_dir()
    assert (journal, synchronous, busy) == ("wal", 1, 5000)  # 1 is NORMAL


async def test_upgrade_creates_the_tables_and_is_idempotent(
    engine: AsyncEngine, db_url: str
) -> None:
    await upgrade(db_url)  # db_url is already at head: a second run changes nothing

    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.connect() as connection:
        found = await connection.run_sync(tables)
        version = (await connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
    assert {"relay_keys", "ledger", VERSION_TABLE} <= found
    assert version == [(HEAD,)]


async def test_migrations_build_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection)
        return [
            diff
            for diff in compare_metadata(context, Base.metadata)
            if not (diff[0] == "remove_table" and diff[1].name == VERSION_TABLE)
        ]

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_ledger_is_indexed_on_time_and_key(engine: AsyncEngine) -> None:
    def indexed_columns(connection: Connection) -> set[tuple[str, ...]]:
        return {tuple(index["column_names"]) for index in inspect(connection).get_indexes("ledger")}

    async with engine.connect() as connection:
        assert {("ts",), ("key_id",)} <= await connection.run_sync(indexed_columns)


async def _versions(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return list(
                (await connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
            )
    finally:
        await engine.dispose()


@pytest.mark.services
async def test_relay_processes_starting_together_migrate_once(fresh_postgres_url: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from teamrelay.ledger.db import upgrade\n"
        "asyncio.run(upgrade(sys.argv[1]))\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, fresh_postgres_url)
        for _ in range(3)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60)
    assert codes == [0, 0, 0]
    assert await _versions(fresh_postgres_url) == [(HEAD,)]


async def test_upgrades_started_together_in_one_process_take_turns(database: str) -> None:
    await asyncio.gather(*(upgrade(database) for _ in range(3)))
    assert await _versions(database) == [(HEAD,)]
