"""What the dashboard shows for one period: usage by key, model and day, recent errors, keys.

Reads only; the sums come from `usage_report`, so the page, the CLI and the JSON API agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.admin.charts import Chart, bars, columns, day_series, days_between
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.ledger.models import LedgerRow
from teamrelay.ledger.usage import By, UsageGroup, usage_report

PERIODS: Final = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_PERIOD: Final = "7d"
RECENT_ERRORS: Final = 50
NO_KEY: Final = "(no key)"
NO_MODEL: Final = "(no model)"


@dataclass(frozen=True, slots=True)
class ErrorRow:
    ts: datetime
    key_name: str
    operation: str
    status: int
    error_type: str
    relay_request_id: str


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as an operator may see it: never its secret, only the display prefix."""

    id: str
    name: str
    prefix: str
    scopes: str
    limits: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str


@dataclass(frozen=True, slots=True)
class Section:
    chart: Chart
    groups: list[UsageGroup]


@dataclass(frozen=True, slots=True)
class Overview:
    period: str
    since: datetime
    now: datetime
    total: UsageGroup
    by_key: Section
    by_model: Section
    by_day: Section
    errors: list[ErrorRow]
    error_count: int
    keys: list[KeyView]


def _limits_text(limits: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(limits.items())) or "none"


def key_view(record: KeyRecord, now: datetime) -> KeyView:
    if record.revoked_at is not None:
        state = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return KeyView(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        scopes=", ".join(sorted(record.scopes)),
        limits=_limits_text(record.limits),
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        state=state,
    )


async def recent_errors(
    engine: AsyncEngine, since: datetime, limit: int = RECENT_ERRORS
) -> tuple[list[ErrorRow], int]:
    """The latest `limit` rows with status >= 400 since `since`, and how many there are."""
    failed = (LedgerRow.status >= 400, LedgerRow.ts >= since)
    query = (
        select(
            LedgerRow.ts,
            LedgerRow.key_name,
            LedgerRow.operation,
            LedgerRow.method,
            LedgerRow.path,
            LedgerRow.status,
            LedgerRow.error_type,
            LedgerRow.relay_request_id,
        )
        .where(*failed)
        .order_by(LedgerRow.ts.desc(), LedgerRow.id.desc())
        .limit(limit)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
        count = await connection.scalar(select(func.count()).select_from(LedgerRow).where(*failed))
    errors = [
        ErrorRow(
            ts=row.ts,
            key_name=row.key_name or NO_KEY,
            operation=row.operation or f"{row.method} {row.path}",
            status=row.status,
            error_type=row.error_type or "",
            relay_request_id=row.relay_request_id,
        )
        for row in rows
    ]
    return errors, int(count or 0)


async def overview(
    engine: AsyncEngine, keys: KeyStore, period: str, now: datetime | None = None
) -> Overview:
    """The dashboard's data for `period` (one of PERIODS), ending now."""
    now = now or datetime.now(UTC)
    since = now - PERIODS[period]
    by_key = await usage_report(engine, by=By.key, since=since)
    by_model = await usage_report(engine, by=By.model, since=since)
    by_day = await usage_report(engine, by=By.day, since=since)
    errors, error_count = await recent_errors(engine, since)
    per_day = {group.group or "": group.requests for group in by_day.groups}
    day_chart = columns("Requests by day (UTC)", day_series(days_between(since, now), per_day))
    return Overview(
        period=period,
        since=since,
        now=now,
        total=by_key.total,
        by_key=Section(
            bars("Requests by key", [(g.label or NO_KEY, g.requests) for g in by_key.groups]),
            by_key.groups,
        ),
        by_model=Section(
            bars("Requests by model", [(g.group or NO_MODEL, g.requests) for g in by_model.groups]),
            by_model.groups,
        ),
        by_day=Section(day_chart, by_day.groups),
        errors=errors,
        error_count=error_count,
        keys=[key_view(record, now) for record in await keys.list()],
    )
