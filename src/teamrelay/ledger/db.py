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
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from teamrelay.config import load_store_settings

BUSY_TIMEOUT_MS = 5000
VERSION_TABLE = "teamrelay_alembic_version"


class DatabaseUnreachable(Exception):
    """`str()` is the one line to print: the database's URL without its password, and why."""


def database_url() -> str:
    """For operator commands: the database `serve` uses, read from the same settings."""
    return load_store_settings().database_url


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot make the database's folder {folder}: {exc}"
            raise DatabaseUnreachable(message) from None
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
    async with lock:
        engine = create_engine(url)
        try:
            async with _connected(engine, url) as connection, connection.begin():
                await connection.run_sync(_run_upgrade, revision)
        finally:
            await engine.dispose()


@asynccontextmanager
async def _connected(engine: AsyncEngine, url: str) -> AsyncIterator[AsyncConnection]:
    try:
        connection = await engine.connect()
    except (OSError, DBAPIError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        raise DatabaseUnreachable(
            f"cannot reach the database {shown_url(url)}: {_reason(cause)}"
        ) from None
    try:
        yield connection
    finally:
        await connection.close()


_upgrade_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def schema_revisions(url: str) -> tuple[str | None, str | None]:
    """The database's schema revision (None when never migrated) and the newest one known."""
    engine = create_engine(url)
    try:
        async with _connected(engine, url) as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(
                    sync, opts={"version_table": VERSION_TABLE}
                ).get_current_revision()
            )
    finally:
        await engine.dispose()
    return current, ScriptDirectory.from_config(alembic_config()).get_current_head()


@asynccontextmanager
async def migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """For one-shot commands: the schema brought up to date, then an engine disposed after."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _reason(cause: BaseException) -> str:
    """One line: the system's words for a socket error, else the driver's first line."""
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
