"""Runs revisions on the connection `teamrelay.ledger.db.upgrade` hands over.

On PostgreSQL a transaction-scoped advisory lock serialises relay processes that start at the
same moment, so only the first applies a revision and the others find it done.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from teamrelay.ledger.models import Base

_LOCK_ID = 0x7E_A3_4E_1A  # arbitrary, fixed: "teamrelay migrations"


def _run(connection: Connection) -> None:
    config = context.config
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=config.get_main_option("version_table") or "alembic_version",
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `teamrelay db upgrade` or teamrelay.ledger.db.upgrade")
_run(connection)
