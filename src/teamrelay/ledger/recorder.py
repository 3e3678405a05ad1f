"""Write-behind for the ledger: request handlers hand rows over and never wait for the database.

`Recorder.record` appends to an in-memory queue; one background task takes up to `batch_size`
rows at a time and writes each batch with a single executemany INSERT, as soon as a batch is
full or `flush_interval` seconds after the last write.

What can be lost, and how much:
- Graceful stop (SIGTERM, lifespan shutdown): nothing. `stop()` writes every queued row, and a
  cancelled writer task still writes what is queued before it ends.
- A crash (SIGKILL, power loss): the rows still queued, which is at most the last
  `flush_interval` seconds of traffic, or more only while the database is slower than the
  traffic (then up to `max_queue` rows). SQLite with `synchronous=NORMAL` may also lose its
  last commits on power loss.
- Queue full (`max_queue` rows waiting, the database down or too slow): the new row is dropped
  and counted in `dropped`; the hot path never blocks on the ledger.
- Database errors: a batch that fails for a connection reason (the database restarting, SQLite
  busy) is put back and retried with backoff; a batch the database refuses as data is written
  again row by row, and only the rows it still refuses are logged and counted in `failed`, so
  one bad row can neither stall the ledger nor take its batch down with it.
- Rows recorded after `stop()` wait in the queue for the next `start()` or `stop()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from teamrelay.ledger.models import LedgerRow
from teamrelay.ledger.prices import Prices
from teamrelay.limits.billed import shape_cost
from teamrelay.tap.usage import ToolCall

log = logging.getLogger(__name__)

_TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError)
_MAX_BACKOFF = 5.0


@dataclass(slots=True)
class LedgerEntry:
    ts: datetime
    relay_request_id: str
    key_id: str | None
    key_name: str | None
    method: str
    operation: str | None
    path: str
    model: str | None
    status: int
    duration_ms: float
    ttfb_ms: float | None
    bytes_in: int
    bytes_out: int
    streamed: bool
    aborted: bool
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    upstream_request_id: str | None
    error_type: str | None
    # A successful answer whose usage could not be read: its reservation stood as the spend.
    usage_unknown: bool = False
    # The dollars a successful request's shape bills when its answer counts no tokens (images
    # by size and quality, speech by characters, audio by minutes): the row's cost then.
    billed_usd: float | None = None
    # Else the JSON body of an image or speech request, priced here (a key without a cap).
    shaped_body: bytes | None = None
    # Built-in tool calls the answer showed (billed beyond tokens); `tool_calls` counts them.
    tools: tuple[ToolCall, ...] = ()
    # The input and output tokens that were audio, when the answer splits them (realtime).
    audio: tuple[int, int] | None = None
    # The `service_tier` the answer says served it: flex tokens cost less.
    tier: str | None = None


_NOT_COLUMNS = ("billed_usd", "shaped_body", "tools", "audio", "tier")
_FIELDS = tuple(f.name for f in fields(LedgerEntry) if f.name not in _NOT_COLUMNS)
_COLUMNS = (*_FIELDS, "tool_calls", "cost_usd")
Row = tuple[Any, ...]
_AFTER_TS = attrgetter(*_FIELDS[1:])  # `ts` is the first field, written as a stamp


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        prices: Prices,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_queue: int = 100_000,
        stop_timeout: float = 10.0,
    ) -> None:
        self._engine = engine
        self._prices = prices
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._stop_timeout = stop_timeout
        self._queue: deque[Row] = deque()
        self._insert: str | None = None
        self._sqlite = engine is not None and engine.dialect.name == "sqlite"
        self._writing = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    @property
    def queue_depth(self) -> int:
        """Rows accepted and not yet committed, including a batch being written."""
        return len(self._queue) + self._writing

    def record(self, entry: LedgerEntry) -> None:
        try:
            if len(self._queue) >= self._max_queue:
                self._drop("ledger queue full (%d rows): dropping rows", self._max_queue)
                return
            if entry.ts.tzinfo is None:
                raise ValueError("LedgerEntry.ts must be an aware datetime")
            self._queue.append(self._row(entry))
            if len(self._queue) >= self._batch_size:
                self._wakeup.set()
        except Exception:
            self._drop("ledger row refused: dropping it", exc_info=True)

    def _drop(self, message: str, *args: Any, exc_info: bool = False) -> None:
        if self.dropped & (self.dropped - 1) == 0:  # log the 1st, 2nd, 4th, 8th... drop
            log.error(message + " (%d dropped so far)", *args, self.dropped + 1, exc_info=exc_info)
        self.dropped += 1

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="ledger-recorder")

    async def stop(self) -> None:
        """Writes every queued row; shielded, so a cancelled caller does not cut it short."""
        self._stopping = True
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._drain_all(), name="ledger-recorder-final")
        task = self._task
        await asyncio.shield(task)
        self._task = None

    async def _run(self) -> None:
        task = asyncio.current_task()
        try:
            while not self._stopping:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
                except TimeoutError:
                    rows = len(self._queue)
                else:
                    rows = len(self._queue) // self._batch_size * self._batch_size
                self._wakeup.clear()
                await self._drain(until=None, rows=rows)
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError  # the driver swallowed it mid-write
        finally:
            await self._drain_all()

    async def _drain_all(self) -> None:
        await self._drain(until=time.monotonic() + self._stop_timeout)
        if self._queue:
            lost = len(self._queue)
            self._queue.clear()
            self.failed += lost
            log.error("ledger: %d rows not written before the stop timeout", lost)

    async def _drain(self, until: float | None, rows: int | None = None) -> None:
        """Writes batches until the queue is empty (or `rows` are written), or a transient
        error needs a pause.

        Woken by a full queue, the writer sends full batches only; the rest waits for the next
        wake-up or the interval. Each batch costs the event loop a few hand-overs of the GIL
        to the SQLite thread, so few full batches beat many small ones.
        """
        backoff = self._flush_interval
        left = rows
        while self._queue and (left is None or left > 0):
            size = min(self._batch_size, len(self._queue))
            if left is not None:
                size = min(size, left)
                left -= size
            batch = [self._queue.popleft() for _ in range(size)]
            self._writing = len(batch)
            try:
                async with self._engine.begin() as connection:
                    await self._write(connection, batch)
            except _TRANSIENT:
                self._requeue(batch)
                log.warning("ledger: database unavailable, will retry %d rows", len(batch))
                if until is None or time.monotonic() + backoff > until:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except Exception:
                if len(batch) == 1:
                    self.failed += 1
                    log.exception("ledger: database refused a row")
                else:
                    await self._write_singly(batch)
            except BaseException:
                self._requeue(batch)  # cancelled mid-write: the final drain writes it
                raise
            else:
                self.written += len(batch)
            finally:
                self._writing = 0

    async def _write(self, connection: AsyncConnection, batch: list[Row]) -> None:
        """One executemany of plain tuples: SQLAlchemy's per-row parameter processing cost
        more than the database itself (13 µs a row against 4)."""
        if self._insert is None:
            statement = insert(LedgerRow).compile(
                dialect=connection.dialect, column_keys=list(_COLUMNS)
            )
            self._insert = str(statement)
        await connection.exec_driver_sql(self._insert, batch)

    def _row(self, entry: LedgerEntry) -> Row:
        ts = entry.ts
        if ts.tzinfo is not UTC:
            ts = ts.astimezone(UTC)
        # SQLite keeps the text form SQLAlchemy's DateTime reads back; others take the object.
        stamp = ts.replace(tzinfo=None).isoformat(" ", "microseconds") if self._sqlite else ts
        prices = self._prices
        cost = prices.cost(
            entry.model,
            entry.input_tokens,
            entry.output_tokens,
            entry.cached_tokens,
            entry.tier,
            audio=entry.audio,
        )
        if cost is None and entry.status < 400:
            cost = entry.billed_usd
            if cost is None and entry.shaped_body is not None:
                cost = shape_cost(entry.operation, entry.shaped_body, prices)
        tool_calls = None
        if entry.tools:
            cost = (cost or 0.0) + prices.tool_cost(entry.tools, entry.model)
            tool_calls = json.dumps(Counter(call.tool for call in entry.tools), sort_keys=True)
        return (stamp, *_AFTER_TS(entry), tool_calls, cost)

    async def _write_singly(self, batch: list[Row]) -> None:
        """After a refused batch: keep every row the database accepts, lose only the bad ones."""
        for index, row in enumerate(batch):
            try:
                async with self._engine.begin() as connection:
                    await self._write(connection, [row])
            except _TRANSIENT:
                self._requeue(batch[index:])
                return
            except Exception:
                self.failed += 1
                log.exception("ledger: database refused a row")
            except BaseException:
                self._requeue(batch[index:])
                raise
            else:
                self.written += 1

    def _requeue(self, batch: list[Row]) -> None:
        self._queue.extendleft(reversed(batch))
        excess = len(self._queue) - self._max_queue
        for _ in range(excess):
            self._queue.pop()
        self.dropped += max(0, excess)
