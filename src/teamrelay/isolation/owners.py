"""Object ownership: recorded off the request path, looked up through an in-process cache.

An object's owner never changes, so a known owner is cached for good (bounded in size);
an unknown id is not cached, because another relay process may record it a moment later.
Records are queued and written by a background task as soon as it wakes (`INSERT ... ON
CONFLICT DO NOTHING`: the first owner recorded stays the owner); `stop()` writes the rest.
The same process sees its own records at once through the cache; another process sees them
once written, and a lookup that misses waits `recheck_delay` once and asks again, to cover
that gap. A crash loses the queued records: those objects then look pre-existing (admin only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.ledger.batches import BatchWriter
from teamrelay.ledger.models import ObjectRow

log = logging.getLogger(__name__)

_QUERY_CHUNK = 500


class Owners:
    def __init__(
        self, engine: AsyncEngine, *, cache_limit: int = 200_000, recheck_delay: float = 0.2
    ) -> None:
        self._engine = engine
        self._cache: dict[str, str] = {}
        self._cache_limit = cache_limit
        self._recheck_delay = recheck_delay
        insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._writer = BatchWriter(engine, insert(ObjectRow).on_conflict_do_nothing(), "ownership")

    def record(self, object_id: str, key_id: str, collection: str, *, fresh: bool = True) -> None:
        """Queues `key_id` as the owner; `fresh` ids (just created) are cached at once."""
        if self._cache.get(object_id) == key_id:
            return
        if fresh:
            self._remember(object_id, key_id)
        self._writer.add(
            {
                "object_id": object_id,
                "key_id": key_id,
                "collection": collection,
                "created_at": datetime.now(UTC),
            }
        )

    def _remember(self, object_id: str, key_id: str) -> None:
        if len(self._cache) >= self._cache_limit:
            self._cache.clear()
        self._cache[object_id] = key_id

    async def owner_of(self, object_id: str, *, recheck: bool = True) -> str | None:
        owner = self._cache.get(object_id)
        if owner is not None:
            return owner
        found = await self._query([object_id])
        if object_id not in found and recheck and self._recheck_delay:
            await asyncio.sleep(self._recheck_delay)
            found = await self._query([object_id])
        return found.get(object_id)

    async def owners_of(self, object_ids: Iterable[str]) -> dict[str, str]:
        """Known owners of `object_ids`: the cache, then one query for the rest."""
        known: dict[str, str] = {}
        missing: list[str] = []
        for object_id in object_ids:
            owner = self._cache.get(object_id)
            if owner is None:
                missing.append(object_id)
            else:
                known[object_id] = owner
        if missing:
            known.update(await self._query(missing))
        return known

    async def _query(self, object_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        async with self._engine.connect() as connection:
            for start in range(0, len(object_ids), _QUERY_CHUNK):
                chunk = object_ids[start : start + _QUERY_CHUNK]
                rows = await connection.execute(
                    select(ObjectRow.object_id, ObjectRow.key_id).where(
                        ObjectRow.object_id.in_(chunk)
                    )
                )
                found.update((object_id, key_id) for object_id, key_id in rows)
        for object_id, key_id in found.items():
            self._remember(object_id, key_id)
        return found

    async def start(self) -> None:
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()
