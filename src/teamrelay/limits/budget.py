"""Budgets: reserve an estimate before forwarding, settle to the real usage after.

Admission is one transaction of conditional UPDATEs, one per cap:

    UPDATE relay_budgets SET reserved = reserved + :e
    WHERE <key, period, window, unit> AND spent + reserved + :e <= :cap

A row is only changed when the estimate still fits, and both SQLite (one writer at a time) and
PostgreSQL (the row lock, with the WHERE re-checked after a concurrent commit) make that
check-and-add atomic, so parallel requests on any number of processes sharing the database
cannot slip past a cap. If any cap refuses, the transaction rolls back the others.

A window's row is created on its first use, seeded from the ledger's rows for that key and
window (what was spent before the budget existed, or before this row was made).

Settling (reserved -= estimate, spent += actual) is queued from the request's `finally` and
written by a background task at once; `stop()` writes what is queued. A crash loses the
queued settlements: those reservations then stay held until their window ends, which errs
towards refusing, never towards overspending.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import Double, and_, bindparam, cast, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.errors import RelayError
from teamrelay.ledger.batches import BatchWriter
from teamrelay.ledger.models import BudgetRow, LedgerRow
from teamrelay.limits.estimate import Actual, Estimate
from teamrelay.limits.policy import Cap
from teamrelay.limits.windows import Clock, Window, window_of

log = logging.getLogger(__name__)

_MAX_ENSURED = 100_000

_ROW = and_(
    BudgetRow.key_id == bindparam("b_key"),
    BudgetRow.period == bindparam("b_period"),
    BudgetRow.starts == bindparam("b_starts"),
    BudgetRow.unit == bindparam("b_unit"),
)
_RESERVE = (
    update(BudgetRow)
    .where(_ROW, BudgetRow.spent + BudgetRow.reserved + bindparam("b_amount") <= bindparam("b_cap"))
    .values(reserved=BudgetRow.reserved + bindparam("b_amount"))
)
_SETTLE = (
    update(BudgetRow)
    .where(_ROW)
    .values(
        reserved=BudgetRow.reserved - bindparam("b_held"),
        spent=BudgetRow.spent + bindparam("b_used"),
    )
)


@dataclass(frozen=True, slots=True)
class Hold:
    """One cap's share of a reservation."""

    cap: Cap
    window: Window
    amount: float

    def row(self, key_id: str) -> dict[str, Any]:
        return {
            "b_key": key_id,
            "b_period": self.window.span,
            "b_starts": self.window.label,
            "b_unit": self.cap.unit,
        }


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: str
    holds: tuple[Hold, ...]
    guess: Estimate


def over_budget(cap: Cap, window: Window) -> RelayError:
    resets = window.end.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return RelayError(
        429,
        f"This relay key has used its {cap.describe()}; it resets at {resets}.",
        code="insufficient_quota",
        type="insufficient_quota",
        headers=((b"x-should-retry", b"false"),),
    )


class Budgets:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self.clock = clock
        self._ensured: set[tuple[str, str, str, str]] = set()
        self._settlements = BatchWriter(engine, _SETTLE, "budgets")

    async def reserve(self, key_id: str, caps: tuple[Cap, ...], guess: Estimate) -> Reservation:
        """Holds the estimate against every cap, or raises the 429 of the first that refuses."""
        now = self.clock()
        holds = tuple(
            Hold(cap, window_of(cap.span, now), guess.usd if cap.unit == "usd" else guess.tokens)
            for cap in caps
        )
        for hold in holds:
            await self._ensure(key_id, hold)
        async with self._engine.begin() as connection:
            for hold in holds:
                values = hold.row(key_id) | {"b_amount": hold.amount, "b_cap": hold.cap.amount}
                result = await connection.execute(_RESERVE, values)
                if result.rowcount != 1:
                    raise over_budget(hold.cap, hold.window)  # rolls the others back
        return Reservation(key_id, holds, guess)

    async def _ensure(self, key_id: str, hold: Hold) -> None:
        """Creates the window's row if absent, its `spent` seeded from the ledger."""
        window, unit = hold.window, hold.cap.unit
        marker = (key_id, window.span, window.label, unit)
        if marker in self._ensured:
            return
        used = (
            LedgerRow.cost_usd
            if unit == "usd"
            else func.coalesce(LedgerRow.input_tokens, 0)
            + func.coalesce(LedgerRow.output_tokens, 0)
        )
        columns: list[Any] = [
            literal(key_id),
            literal(window.span),
            literal(window.label),
            literal(unit),
            cast(func.coalesce(func.sum(used), 0), Double()),
            cast(literal(0), Double()),
        ]
        seed = select(*columns).where(
            LedgerRow.key_id == key_id, LedgerRow.ts >= window.start, LedgerRow.ts < window.end
        )
        insert = postgresql_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(BudgetRow)
            .from_select(["key_id", "period", "starts", "unit", "spent", "reserved"], seed)
            .on_conflict_do_nothing()
        )
        async with self._engine.begin() as connection:
            await connection.execute(statement)
        if len(self._ensured) >= _MAX_ENSURED:
            self._ensured.clear()
        self._ensured.add(marker)

    def settle(self, reservation: Reservation, actual: Actual) -> None:
        """Queues the settlement; never blocks, never raises (it runs in a `finally`)."""
        for hold in reservation.holds:
            used = actual.usd if hold.cap.unit == "usd" else float(actual.tokens)
            self._settlements.add(
                hold.row(reservation.key_id) | {"b_held": hold.amount, "b_used": used}
            )

    async def start(self) -> None:
        await self._settlements.start()

    async def stop(self) -> None:
        await self._settlements.stop()
