"""Small rows written behind the request path: ownership records, budget settlements.

The request path only appends; one task per writer sends each batch as one executemany. A
database that is briefly unavailable is retried with backoff (and, at stop, for a few
seconds); rows the database refuses as data are logged and dropped, never retried forever.
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

    def add(self, row: dict[str, Any]) -> None:
        self._queue.append(row)
        self._wakeup.set()

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
            except TRANSIENT:
                self._queue.extendleft(reversed(batch))
                log.warning("%s: database unavailable, will retry %d rows", self._what, len(batch))
                if self._stopping and backoff > 2:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("%s: database refused %d rows", self._what, len(batch))
            except BaseException:
                self._queue.extendleft(reversed(batch))
                raise
