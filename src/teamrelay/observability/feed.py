"""Ledger entries handed to slow sinks (metrics, logs) off the request path.

The hot path only appends to a deque; a background task hands batches to the sinks every
`interval`, and anything reading the sinks' state (a `/metrics` scrape) drains first, so
figures are exact at read time. A full deque is drained inline rather than dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence

from teamrelay.ledger.recorder import LedgerEntry

log = logging.getLogger("teamrelay.observability")
Sink = Callable[[Sequence[LedgerEntry]], None]


class Feed:
    def __init__(self, sinks: Sequence[Sink], *, interval: float = 0.25, limit: int = 10_000):
        self._sinks = tuple(sinks)
        self._pending: deque[LedgerEntry] = deque()
        self._interval = interval
        self._limit = limit
        self._task: asyncio.Task[None] | None = None

    def __call__(self, entry: LedgerEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self._limit:
            self.drain()

    def drain(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        for sink in self._sinks:
            try:
                sink(batch)
            except Exception:
                log.exception("an observability sink failed")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="observability-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.drain()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.drain()
