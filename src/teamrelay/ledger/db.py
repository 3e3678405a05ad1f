"""Engines for the relay's database, and the migrations that shape it.

SQLite is the embedded default; it runs in WAL mode so the ledger's writer and the key lookups
of request handlers (and `teamrelay` CLI commands in other processes) do not block each other,
with `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt the file) and a
busy timeout so a second writer waits instead of failing. PostgreSQL (`postgresql+asyncpg://`)
is for several relay processes sharing one store.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from teamrelay.config import DEFAULT_DATABASE_URL

BUSY_TIMEOUT_MS = 5000
VERSION_TABLE = "teamrelay_alembic_version"


def database_url() -> str:
    """For operator commands, which need the database but not the upstream key."""
    return os.environ.get("RELAY_DATABASE_URL") or DEFAULT_DATABASE_URL


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def alembic_config() -> Config:
    """Built in code so an installed relay needs no alembic.ini next to it."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Brings the schema to `revision`; safe when several processes start at once.

    Alembic keeps its context in module globals, so upgrades in one process take turns; across
    processes PostgreSQL serialises them (see migrations/env.py).
    """
    loop = asyncio.get_running_loop()
    lock = _upgrade_locks.setdefault(loop, asyncio.Lock())
    engine = create_engine(url)
    try:
        async with lock, engine.begin() as connection:
            await connection.run_sync(_run_upgrade, revision)
    finally:
        await engine.dispose()


_upgrade_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@asynccontextmanager
async def migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """For one-shot commands: the schema brought up to date, then an engine disposed after."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
