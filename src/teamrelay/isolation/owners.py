"""Object ownership: recorded off the request path, looked up through an in-process cache.

An object's owner never changes, so a known owner is cached for good (bounded in size);
an unknown id is not cached, because another relay process may record it a moment later.
Records are queued and written by a background task as soon as it wakes (`INSERT ... ON
CONFLICT DO NOTHING`: the first owner recorded stays the owner); `stop()` writes the rest.
The same process sees its own records at once through the cache; another process sees them
once written, and a lookup that misses waits `recheck_delay` once and asks again, to cover
that gap. A crash loses the queued records: those objects then look pre-existing (admin only).

A key's ids in a collection, in the order they were recorded, are what a confined key's list
shows (`listed`); an id the upstream no longer knows is dropped (`forget`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, select, tuple_
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

    async def listed(
        self,
        key_id: str,
        collection: str,
        *,
        descending: bool,
        count: int,
        after: str | None = None,
        before: str | None = None,
    ) -> list[str]:
        """Up to `count` of `key_id`'s ids in `collection`, oldest recorded first (or newest
        first if `descending`), strictly after `after` and before `before` in that order.
        Raises LookupError for a cursor that is not one of these ids. Records queued in this
        process are written first, so an object just created is listed."""
        await self._writer.flush()
        order = tuple_(ObjectRow.created_at, ObjectRow.object_id)
        query = select(ObjectRow.object_id).where(
            ObjectRow.key_id == key_id, ObjectRow.collection == collection
        )
        async with self._engine.connect() as connection:
            for cursor, later in ((after, True), (before, False)):
                if cursor is None:
                    continue
                found = await connection.execute(
                    select(ObjectRow.created_at, ObjectRow.object_id).where(
                        ObjectRow.object_id == cursor,
                        ObjectRow.key_id == key_id,
                        ObjectRow.collection == collection,
                    )
                )
                position = found.one_or_none()
                if position is None:
                    raise LookupError(cursor)
                bound = tuple_(*position)
                query = query.where(order < bound if later == descending else order > bound)
            if descending:
                query = query.order_by(ObjectRow.created_at.desc(), ObjectRow.object_id.desc())
            else:
                query = query.order_by(ObjectRow.created_at, ObjectRow.object_id)
            rows = await connection.execute(query.limit(count))
            return [object_id for (object_id,) in rows]

    async def forget(self, key_id: str, object_ids: Iterable[str]) -> None:
        """Drops the rows of objects the upstream answered 404 for (deleted, expired)."""
        gone = list(object_ids)
        if not gone:
            return
        await self._writer.flush()
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(ObjectRow).where(ObjectRow.key_id == key_id, ObjectRow.object_id.in_(gone))
            )
        for object_id in gone:
            self._cache.pop(object_id, None)

    async def start(self) -> None:
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()
