"""Small rows written behind the request path: ownership records, budget settlements.

The request path only appends; one task per writer sends each batch as one executemany. A
database that is briefly unavailable is retried with backoff (and, at stop, for a few
seconds); rows the database refuses as data are logged and dropped, never retried forever.
A reader that must see what was just added (a list from the ownership table) awaits `flush`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("teamrelay.ledger")

TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError)


class BatchWriter:
    def __init__(self, engine: AsyncEngine, statement: Executable, what: str) -> None:
        self._engine = engine
        self._statement = statement
        self._what = what
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._added = 0
        self._settled = 0  # rows written or refused
        self._progress = asyncio.Event()

    def add(self, row: dict[str, Any]) -> None:
        self._queue.append(row)
        self._added += 1
        self._wakeup.set()

    async def flush(self, timeout: float = 5.0) -> None:
        """Waits until the rows added before the call are written or refused; gives up after
        `timeout` seconds (the database is down: the reader's own query will say so)."""
        target = self._added
        if self._task is None:
            await self._write()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._settled < target:
                    self._progress.clear()
                    await self._progress.wait()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"{self._what}-writer")

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.shield(task)
        await self._write()

    async def _run(self) -> None:
        try:
            while not self._stopping:
                await self._wakeup.wait()
                self._wakeup.clear()
                await self._write()
        finally:
            with contextlib.suppress(Exception):
                await self._write()

    async def _write(self) -> None:
        backoff = 0.05
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(self._statement, batch)
                self._settle(len(batch))
            except TRANSIENT:
                self._queue.extendleft(reversed(batch))
                log.warning("%s: database unavailable, will retry %d rows", self._what, len(batch))
                if self._stopping and backoff > 2:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("%s: database refused %d rows", self._what, len(batch))
                self._settle(len(batch))
            except BaseException:
                self._queue.extendleft(reversed(batch))
                raise

    def _settle(self, count: int) -> None:
        self._settled += count
        self._progress.set()
