"""The ledger's write-behind: batching, flushing on stop and cancellation, bounded queue."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.ledger.models import LedgerRow
from teamrelay.ledger.prices import ModelPrice, Prices, ToolPrice
from teamrelay.ledger.recorder import LedgerEntry, Recorder
from teamrelay.tap.usage import ToolCall

PRICES = Prices({"gpt-5-mini": ModelPrice(input=0.25, cached_input=0.025, output=2.0)})
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entry(n: int = 0, **changes: Any) -> LedgerEntry:
    base = LedgerEntry(
        ts=T0 + timedelta(seconds=n),
        relay_request_id=f"req_{n:06d}",
        key_id="k1",
        key_name="alice",
        method="POST",
        operation="createResponse",
        path="/v1/responses",
        model="gpt-5-mini-2025-08-07",
        status=200,
        duration_ms=12.5,
        ttfb_ms=3.25,
        bytes_in=100,
        bytes_out=2_000,
        streamed=n % 2 == 0,
        aborted=False,
        input_tokens=1_000,
        output_tokens=500,
        cached_tokens=200,
        reasoning_tokens=64,
        upstream_request_id=f"up_{n}",
        error_type=None,
    )
    return dataclasses.replace(base, **changes)


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(LedgerRow))).scalar())


@contextmanager
def inserts_seen(engine: AsyncEngine, sizes: list[int] | None = None) -> Iterator[list[bool]]:
    """Each INSERT statement sent to the database: True when sent as one executemany (and
    its number of rows appended to `sizes`)."""
    seen: list[bool] = []

    def before(*args: Any) -> None:
        statement, parameters, executemany = args[2], args[3], args[5]
        if statement.lstrip().upper().startswith("INSERT INTO LEDGER"):
            seen.append(executemany)
            if sizes is not None:
                sizes.append(len(parameters) if executemany else 1)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def test_a_thousand_entries_then_stop_leave_exactly_a_thousand_rows(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES, flush_interval=30)
    await recorder.start()
    with inserts_seen(engine) as inserts:
        for n in range(1_000):
            recorder.record(entry(n))
        await recorder.stop()
    assert await count_rows(engine) == 1_000
    assert recorder.queue_depth == 0
    assert (recorder.written, recorder.dropped, recorder.failed) == (1_000, 0, 0)
    assert inserts == [True, True]  # two batches of 500, one executemany each


async def test_under_load_the_writer_sends_full_batches_and_the_rest_on_the_interval(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES, batch_size=100, flush_interval=1.0)
    await recorder.start()
    sizes: list[int] = []
    deadline = time.monotonic() + 10
    with inserts_seen(engine, sizes):
        for n in range(250):
            recorder.record(entry(n))
        while await count_rows(engine) < 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert sizes == [100, 100]  # woken by a full queue: full batches only
        while await count_rows(engine) < 250:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert sizes == [100, 100, 50]  # the interval sends the rest
        await recorder.stop()


async def test_rows_hold_every_field_and_the_estimated_cost(engine: AsyncEngine) -> None:
    recorder = Recorder(engine, PRICES)
    await recorder.start()
    recorder.record(entry(7))
    recorder.record(entry(8, model="unpriced-model", status=500, error_type="server_error"))
    recorder.record(entry(9, input_tokens=None, output_tokens=None, cached_tokens=None))
    await recorder.stop()
    async with engine.connect() as connection:
        rows = (await connection.execute(select(LedgerRow.__table__).order_by("id"))).mappings()
        stored = [dict(row) for row in rows]
    first = stored[0]
    written = dataclasses.asdict(entry(7))
    for name in ("billed_usd", "shaped_body", "tools", "audio", "tier"):
        del written[name]  # not columns: what prices a row besides its tokens
    assert {k: first[k] for k in first if k not in ("id", "cost_usd", "tool_calls")} == written
    assert first["tool_calls"] is None
    assert first["ts"].tzinfo is not None
    assert first["cost_usd"] == pytest.approx((800 * 0.25 + 200 * 0.025 + 500 * 2.0) / 1e6)
    assert stored[1]["cost_usd"] is None
    assert stored[1]["error_type"] == "server_error"
    assert stored[2]["cost_usd"] is None


async def test_a_row_priced_by_its_shape_costs_that_when_it_succeeded(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES)
    await recorder.start()
    blank = {"input_tokens": None, "output_tokens": None, "cached_tokens": None}
    recorder.record(entry(1, model="dall-e-3", billed_usd=0.08, **blank))
    recorder.record(entry(2, model="dall-e-3", billed_usd=0.08, status=400, **blank))
    await recorder.stop()
    async with engine.connect() as connection:
        costs = (await connection.execute(select(LedgerRow.cost_usd).order_by("id"))).scalars()
        assert list(costs) == [pytest.approx(0.08), None]


async def test_a_rows_tool_calls_are_counted_and_added_to_its_cost(engine: AsyncEngine) -> None:
    tools = {"web_search": ToolPrice(per_1k_calls=10.0), "file_search": ToolPrice(2.5)}
    recorder = Recorder(engine, Prices(PRICES.table, tools))
    await recorder.start()
    calls = (ToolCall("web_search"), ToolCall("web_search"), ToolCall("file_search"))
    recorder.record(entry(1, tools=calls))
    blank = {"input_tokens": None, "output_tokens": None, "cached_tokens": None}
    recorder.record(entry(2, tools=calls[:1], **blank))
    await recorder.stop()
    async with engine.connect() as connection:
        query = select(LedgerRow.tool_calls, LedgerRow.cost_usd).order_by(LedgerRow.id)
        rows = (await connection.execute(query)).all()
    tokens = (800 * 0.25 + 200 * 0.025 + 500 * 2.0) / 1e6
    assert rows[0] == ({"file_search": 1, "web_search": 2}, pytest.approx(tokens + 0.0225))
    assert rows[1] == ({"web_search": 1}, pytest.approx(0.01))


async def test_audio_and_text_tokens_of_a_row_take_their_own_rates(engine: AsyncEngine) -> None:
    voice = ModelPrice(
        input=4.0, cached_input=0.4, output=16.0, audio_input=32.0, audio_output=64.0
    )
    recorder = Recorder(engine, Prices({"gpt-realtime": voice}))
    await recorder.start()
    tokens = {"input_tokens": 1000, "output_tokens": 600, "cached_tokens": 200}
    recorder.record(entry(1, model="gpt-realtime", audio=(300, 500), **tokens))
    recorder.record(entry(2, model="gpt-realtime", audio=(0, 0), **tokens))
    await recorder.stop()
    async with engine.connect() as connection:
        costs = list(
            (await connection.execute(select(LedgerRow.cost_usd).order_by("id"))).scalars()
        )
    cached = 200 * 0.4
    assert costs[0] == pytest.approx((cached + 500 * 4 + 300 * 32 + 100 * 16 + 500 * 64) / 1e6)
    assert costs[1] == pytest.approx((cached + 800 * 4 + 600 * 16) / 1e6)


async def test_rows_are_written_within_the_flush_interval_without_a_stop(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES, flush_interval=0.05)
    await recorder.start()
    try:
        recorder.record(entry())
        deadline = time.monotonic() + 3
        while await count_rows(engine) == 0:
            assert time.monotonic() < deadline, "row not written within 3 s"
            await asyncio.sleep(0.02)
        assert recorder.queue_depth == 0
    finally:
        await recorder.stop()


async def test_queue_depth_counts_rows_not_yet_written(engine: AsyncEngine) -> None:
    recorder = Recorder(engine, PRICES)
    for n in range(25):
        recorder.record(entry(n))
    assert recorder.queue_depth == 25
    await recorder.start()
    await recorder.stop()
    assert recorder.queue_depth == 0
    assert await count_rows(engine) == 25


async def test_a_full_queue_drops_and_counts_without_blocking_or_raising(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES, max_queue=10)
    started = time.perf_counter()
    for n in range(15):
        recorder.record(entry(n))
    assert time.perf_counter() - started < 0.5
    assert (recorder.queue_depth, recorder.dropped) == (10, 5)
    await recorder.start()
    await recorder.stop()
    assert await count_rows(engine) == 10


def test_record_never_raises_on_a_malformed_entry() -> None:
    recorder = Recorder(None, PRICES)  # type: ignore[arg-type]  # never reaches a database
    recorder.record(entry(model=12345))  # type: ignore[arg-type]
    assert (recorder.queue_depth, recorder.dropped) == (0, 1)


async def test_stop_still_flushes_when_its_caller_is_cancelled(engine: AsyncEngine) -> None:
    recorder = Recorder(engine, PRICES, batch_size=50, flush_interval=30)
    await recorder.start()
    for n in range(500):
        recorder.record(entry(n))
    stopping = asyncio.create_task(recorder.stop())
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    deadline = time.monotonic() + 10
    while recorder.queue_depth:
        assert time.monotonic() < deadline, "queue not drained within 10 s"
        await asyncio.sleep(0.02)
    assert await count_rows(engine) == 500


async def test_a_writer_cancelled_mid_batch_writes_everything_before_it_ends(
    engine: AsyncEngine,
) -> None:
    recorder = Recorder(engine, PRICES, batch_size=100, flush_interval=30)
    await recorder.start()
    writer = next(t for t in asyncio.all_tasks() if t.get_name() == "ledger-recorder")
    for n in range(1_000):
        recorder.record(entry(n))
    await asyncio.sleep(0)  # the writer wakes and starts its first batch
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert recorder.queue_depth == 0
    assert await count_rows(engine) == 1_000


async def test_a_row_the_database_refuses_costs_only_that_row(engine: AsyncEngine) -> None:
    recorder = Recorder(engine, PRICES, batch_size=10)
    await recorder.start()
    for n in range(5):
        recorder.record(entry(n, bytes_in=2**70 if n == 2 else 100))  # overflows BIGINT
    await recorder.stop()
    assert (recorder.written, recorder.failed) == (4, 1)
    assert await count_rows(engine) == 4


def test_a_naive_timestamp_is_refused_at_record_time() -> None:
    recorder = Recorder(None, PRICES)  # type: ignore[arg-type]  # never reaches a database
    recorder.record(entry(ts=datetime(2026, 1, 1)))
    assert (recorder.queue_depth, recorder.dropped) == (0, 1)
