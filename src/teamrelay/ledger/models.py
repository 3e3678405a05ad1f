"""The relay's tables: keys (hashes, never secrets), the ledger (one row per request), budgets
and object ownership.

Migrations in `migrations/versions` create these; a change here needs a new revision there.
Ledger strings are unbounded `VARCHAR`s on purpose: a value longer than a guessed limit would
make PostgreSQL refuse the whole batch it arrived in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    String,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no offset, so one is stored as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the relay stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class KeyRow(Base):
    __tablename__ = "relay_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]]
    limits: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LedgerRow(Base):
    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_ts", "ts"), Index("ix_ledger_key_id", "key_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime]
    relay_request_id: Mapped[str]
    key_id: Mapped[str | None]
    key_name: Mapped[str | None]
    method: Mapped[str]
    operation: Mapped[str | None]
    path: Mapped[str]
    model: Mapped[str | None]
    status: Mapped[int]
    duration_ms: Mapped[float]
    ttfb_ms: Mapped[float | None]
    bytes_in: Mapped[int] = mapped_column(BigInteger())
    bytes_out: Mapped[int] = mapped_column(BigInteger())
    streamed: Mapped[bool]
    aborted: Mapped[bool]
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    cached_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    upstream_request_id: Mapped[str | None]
    error_type: Mapped[str | None]
    usage_unknown: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Built-in tool calls by tool (`{"web_search": 2}`), billed beyond tokens in `cost_usd`.
    tool_calls: Mapped[dict[str, Any] | None]
    cost_usd: Mapped[float | None]


class BudgetRow(Base):
    """Per key, period and window: spent and reserved, in one unit (`usd` or `tokens`).

    `starts` labels the window (`2026-11-24`, `2026-11`). The cap is not stored: admission
    passes the key's current cap, so a changed cap applies at once.
    """

    __tablename__ = "relay_budgets"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    starts: Mapped[str] = mapped_column(String(16), primary_key=True)
    unit: Mapped[str] = mapped_column(String(8), primary_key=True)
    spent: Mapped[float] = mapped_column(Double())
    reserved: Mapped[float] = mapped_column(Double())


class ObjectRow(Base):
    """Who created what: one row per object id the relay saw created through it."""

    __tablename__ = "relay_objects"
    # A confined key's list reads its ids in a collection in this order (`Owners.listed`).
    __table_args__ = (
        Index(
            "ix_relay_objects_key_collection_created",
            "key_id",
            "collection",
            "created_at",
            "object_id",
        ),
    )

    object_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    collection: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
