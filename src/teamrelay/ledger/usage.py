"""Usage aggregates over the ledger, shared by `teamrelay usage` and `GET /admin/api/usage`.

Sums run in the database, so a report costs one indexed scan of the period whatever its size;
groups by UTC day use each dialect's own date function (see `UTCDay`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Label, SQLColumnExpression, String, func, null, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from teamrelay.ledger.models import LedgerRow

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class By(StrEnum):
    key = "key"
    model = "model"
    day = "day"
    operation = "operation"


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One group's sums; `group` is None for rows without one (say, no model)."""

    group: str | None
    label: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float

    def counts(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(frozen=True, slots=True)
class UsageReport:
    by: By
    since: datetime | None
    groups: list[UsageGroup]
    total: UsageGroup

    def to_dict(self) -> dict[str, Any]:
        """Groups are keyed by what they group: `key_id` and `key_name`, `model`, `day`..."""
        return {
            "by": self.by.value,
            "since": self.since.isoformat() if self.since else None,
            "groups": [_named(self.by, group) | group.counts() for group in self.groups],
            "total": self.total.counts(),
        }


def _named(by: By, group: UsageGroup) -> dict[str, Any]:
    if by is By.key:
        return {"key_id": group.group, "key_name": group.label}
    return {by.value: group.group}


def parse_duration(text: str) -> timedelta:
    """`30m`, `24h`, `7d`, `2w`; ValueError for any other text, also one too long to hold."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 24h, 7d or 2w")
    try:
        return timedelta(**{_UNITS[match[2]]: int(match[1])})
    except (OverflowError, ValueError):  # past timedelta's range, or more digits than int reads
        raise ValueError(f"{text!r} is longer than a date can reach") from None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (`7d`) or an ISO date or time (`2026-11-01`, taken as UTC);
    always in UTC, as the ledger's times are. ValueError for anything else, so callers answer
    a clear 400 (or a CLI error), also for a duration reaching back before the year 1."""
    now = now or datetime.now(UTC)
    if _DURATION.match(text):
        try:
            return now - parse_duration(text)
        except (OverflowError, ValueError):
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (7d, 24h) nor an ISO date") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


class UTCDay(FunctionElement[str]):
    """The UTC calendar day of a timestamp as `YYYY-MM-DD`."""

    type = String()
    inherit_cache = True


@compiles(UTCDay, "sqlite")
def _utc_day_sqlite(element: UTCDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"  # stored as naive UTC


@compiles(UTCDay, "postgresql")
def _utc_day_postgresql(element: UTCDay, compiler: SQLCompiler, **kw: Any) -> str:
    ts = compiler.process(element.clauses, **kw)
    return f"to_char(({ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _dimension(by: By) -> SQLColumnExpression[Any]:
    if by is By.key:
        return LedgerRow.key_id
    if by is By.model:
        return LedgerRow.model
    if by is By.operation:
        return LedgerRow.operation
    return UTCDay(LedgerRow.ts)


async def usage_report(
    engine: AsyncEngine, *, by: By = By.key, since: datetime | None = None
) -> UsageReport:
    dimension: Label[Any] = _dimension(by).label("grp")
    label = (func.max(LedgerRow.key_name) if by is By.key else null()).label("label")
    query = select(
        dimension,
        label,
        func.count().label("requests"),
        func.coalesce(func.sum(LedgerRow.input_tokens), 0),
        func.coalesce(func.sum(LedgerRow.output_tokens), 0),
        func.coalesce(func.sum(LedgerRow.cached_tokens), 0),
        func.coalesce(func.sum(LedgerRow.reasoning_tokens), 0),
        func.coalesce(func.sum(LedgerRow.cost_usd), 0.0),
    ).group_by(dimension)
    if since is not None:
        query = query.where(LedgerRow.ts >= since)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    groups = [
        UsageGroup(
            group=None if row[0] is None else str(row[0]),
            label=str(row[1]) if row[1] is not None else None if row[0] is None else str(row[0]),
            requests=int(row[2]),
            input_tokens=int(row[3]),
            output_tokens=int(row[4]),
            cached_tokens=int(row[5]),
            reasoning_tokens=int(row[6]),
            cost_usd=float(row[7]),
        )
        for row in rows
    ]
    if by is By.day:
        groups.sort(key=lambda g: g.group or "")
    else:
        groups.sort(key=lambda g: (-g.cost_usd, -g.requests, g.group or ""))
    return UsageReport(by=by, since=since, groups=groups, total=_total(groups))


def _total(groups: list[UsageGroup]) -> UsageGroup:
    return UsageGroup(
        group=None,
        label="total",
        requests=sum(g.requests for g in groups),
        input_tokens=sum(g.input_tokens for g in groups),
        output_tokens=sum(g.output_tokens for g in groups),
        cached_tokens=sum(g.cached_tokens for g in groups),
        reasoning_tokens=sum(g.reasoning_tokens for g in groups),
        cost_usd=sum(g.cost_usd for g in groups),
    )
