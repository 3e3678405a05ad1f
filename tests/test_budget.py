"""Budgets: atomic reservations against a cap, settling, ledger seeding, windows that reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.errors import RelayError
from teamrelay.ledger.models import BudgetRow, LedgerRow
from teamrelay.limits import Budgets, Cap, Estimate
from teamrelay.limits.estimate import Actual

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GUESS = Estimate(input_tokens=60, output_tokens=40, usd=0.5)  # 100 tokens, $0.50
FIVE = (Cap("day", "tokens", 500),)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _reserve_many(budgets: Budgets, count: int, caps: tuple[Cap, ...]) -> int:
    async def one() -> bool:
        try:
            await budgets.reserve("key-a", caps, GUESS)
        except RelayError as error:
            return error.code != "insufficient_quota"  # any other refusal fails the count
        return True

    return sum(await asyncio.gather(*(one() for _ in range(count))))


async def test_twenty_parallel_reservations_with_budget_for_five_admit_five(
    engine: AsyncEngine,
) -> None:
    budgets = Budgets(engine, Clock(NOON))
    assert await _reserve_many(budgets, 20, FIVE) == 5


async def test_two_processes_sharing_the_database_admit_five_together(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    first, second = Budgets(engine, Clock(NOON)), Budgets(other_engine, Clock(NOON))
    admitted = await asyncio.gather(_reserve_many(first, 10, FIVE), _reserve_many(second, 10, FIVE))
    assert sum(admitted) == 5


async def test_every_cap_must_fit_and_a_refusal_reserves_nothing(engine: AsyncEngine) -> None:
    budgets = Budgets(engine, Clock(NOON))
    caps = (Cap("day", "tokens", 10_000), Cap("month", "usd", 1.0))  # $1: two of $0.50
    assert await _reserve_many(budgets, 3, caps) == 2
    async with engine.connect() as connection:
        rows = {
            (row.period, row.unit): row.reserved
            for row in await connection.execute(select(BudgetRow))
        }
    assert rows == {("day", "tokens"): 200.0, ("month", "usd"): 1.0}


async def test_settling_frees_the_reservation_and_counts_the_real_usage(
    engine: AsyncEngine,
) -> None:
    budgets = Budgets(engine, Clock(NOON))
    await budgets.start()
    try:
        held = [await budgets.reserve("key-a", FIVE, GUESS) for _ in range(5)]
        with pytest.raises(RelayError):
            await budgets.reserve("key-a", FIVE, GUESS)
        for reservation in held[:2]:
            budgets.settle(reservation, Actual(tokens=30, usd=0.1))
    finally:
        await budgets.stop()
    async with engine.connect() as connection:
        row = (await connection.execute(select(BudgetRow))).one()
    assert (row.spent, row.reserved) == (60.0, 300.0)
    assert await _reserve_many(budgets, 3, FIVE) == 1  # 500 - 360 leaves room for one more


async def test_the_refusal_names_the_cap_and_when_it_resets(engine: AsyncEngine) -> None:
    budgets = Budgets(engine, Clock(NOON))
    with pytest.raises(RelayError) as refused:
        await budgets.reserve("key-a", (Cap("day", "usd", 0.25),), GUESS)
    error = refused.value
    assert error.status == 429
    assert error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    assert "daily budget of $0.25" in error.message
    assert "2026-11-25 00:00 UTC" in error.message
    assert (b"x-should-retry", b"false") in error.headers


async def _spend_in_ledger(engine: AsyncEngine, when: datetime, tokens: int, usd: float) -> None:
    row = {
        "ts": when,
        "relay_request_id": "req_earlier",
        "key_id": "key-a",
        "key_name": "alice",
        "method": "POST",
        "operation": "createChatCompletion",
        "path": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "duration_ms": 1.0,
        "bytes_in": 1,
        "bytes_out": 1,
        "streamed": False,
        "aborted": False,
        "input_tokens": tokens,
        "output_tokens": 0,
        "cost_usd": usd,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(LedgerRow), [row])


async def test_a_key_the_ledger_shows_spent_is_refused_until_the_window_resets(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    await _spend_in_ledger(engine, NOON - timedelta(hours=1), tokens=450, usd=4.9)
    await _spend_in_ledger(engine, NOON - timedelta(days=1), tokens=10**6, usd=100)  # yesterday
    clock = Clock(NOON)
    first, second = Budgets(engine, clock), Budgets(other_engine, clock)
    for budgets in (first, second):
        with pytest.raises(RelayError, match="daily budget of 500 tokens"):
            await budgets.reserve("key-a", FIVE, GUESS)
        with pytest.raises(RelayError, match=r"daily budget of \$5\.00"):
            await budgets.reserve("key-a", (Cap("day", "usd", 5.0),), GUESS)
    clock.now = NOON + timedelta(hours=12)  # past midnight UTC: a new day
    assert await _reserve_many(second, 6, FIVE) == 5
