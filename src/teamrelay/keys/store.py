"""Keys in the database, and the cache that keeps them off the hot path.

Every lookup result (hit or miss) is cached in-process by secret digest for `cache_ttl`
seconds; a cache hit is one SHA-256 and a dict lookup. The TTL bounds how long a revocation
takes to reach a process that did not make it, so it is capped below 5 s. Concurrent misses
for one digest share one query, and the cache is bounded so a flood of distinct bad keys costs
memory for `max_entries` results at most.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from teamrelay.keys.secrets import digest, display_prefix, generate
from teamrelay.ledger.models import KeyRow
from teamrelay.oauth.signins import end_sign_ins

SCOPES = frozenset({"api", "actions", "admin"})
BOOTSTRAP_SCOPES = SCOPES
MAX_CACHE_TTL = 4.0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    limits: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    created_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


class KeyNotFound(LookupError):
    pass


class KeyExists(ValueError):
    pass


def _record(row: KeyRow) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=frozenset(row.scopes),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        limits=MappingProxyType(dict(row.limits)),
        created_at=row.created_at,
    )


def _checked_scopes(scopes: Collection[str]) -> builtins.list[str]:
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SCOPES))}"
        )
    if not scopes:
        raise ValueError("a key needs at least one scope")
    return sorted(set(scopes))


class KeyStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        bootstrap: Sequence[str] = (),
        cache_ttl: float = 2.0,
        max_entries: int = 50_000,
    ) -> None:
        if not 0 <= cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"cache_ttl must be within 0..{MAX_CACHE_TTL} s (revocation bound)")
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._bootstrap = tuple(bootstrap)
        self._ttl = cache_ttl
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._pending: dict[str, asyncio.Task[KeyRecord | None]] = {}
        # Called with a key's id when this process changes it (OAuth forgets its tokens).
        self.on_change: builtins.list[Callable[[str], None]] = []

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    async def start(self) -> None:
        """Registers RELAY_KEYS; one already present keeps its row, revoked or not.

        So a bootstrap key the operator revoked stays revoked across restarts until it is
        removed from the environment.
        """
        now = datetime.now(UTC)
        for secret in dict.fromkeys(self._bootstrap):
            secret_hash = digest(secret)
            async with self._sessions() as session:
                found = await session.scalar(
                    select(KeyRow.id).where(KeyRow.secret_hash == secret_hash)
                )
                if found is not None:
                    continue
                prefix = display_prefix(secret)
                session.add(
                    KeyRow(
                        id=_new_id(),
                        name=f"bootstrap-{prefix}",
                        prefix=prefix,
                        secret_hash=secret_hash,
                        scopes=sorted(BOOTSTRAP_SCOPES),
                        limits={},
                        created_at=now,
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()  # registered meanwhile, or its name kept by a rotation

    async def lookup(self, secret: str) -> KeyRecord | None:
        secret_hash = digest(secret)
        cached = self._cache.get(secret_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await self._fetch(secret_hash)
        if record is None or not record.usable(datetime.now(UTC)):
            return None
        return record

    async def _fetch(self, secret_hash: str) -> KeyRecord | None:
        """Callers share one query per digest; one caller's cancellation does not cancel it."""
        task = self._pending.get(secret_hash)
        if task is None:
            task = asyncio.create_task(self._query(secret_hash))
            self._pending[secret_hash] = task
            task.add_done_callback(lambda done: self._settled(secret_hash, done))
        return await asyncio.shield(task)

    def _settled(self, secret_hash: str, task: asyncio.Task[KeyRecord | None]) -> None:
        del self._pending[secret_hash]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have gone

    async def _query(self, secret_hash: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(KeyRow).where(KeyRow.secret_hash == secret_hash))
        record = None if row is None else _record(row)
        self._remember(secret_hash, record)
        return record

    def _remember(self, secret_hash: str, record: KeyRecord | None) -> None:
        """A usable record is kept until the TTL or its expiry, whichever comes first, so a
        cache hit needs no clock but the monotonic one."""
        now = time.monotonic()
        if len(self._cache) >= self._max_entries:
            self._cache = {h: entry for h, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        deadline = now + self._ttl
        if record is not None:
            wall = datetime.now(UTC)
            if not record.usable(wall):
                record = None
            elif record.expires_at is not None:
                deadline = min(deadline, now + (record.expires_at - wall).total_seconds())
        self._cache[secret_hash] = (deadline, record)

    def _forget(self, record_id: str) -> None:
        stale = [h for h, (_, rec) in self._cache.items() if rec and rec.id == record_id]
        for secret_hash in stale:
            del self._cache[secret_hash]
        for changed in self.on_change:
            changed(record_id)

    async def create(
        self,
        name: str,
        *,
        scopes: Collection[str],
        expires_at: datetime | None = None,
        limits: Mapping[str, Any] | None = None,
    ) -> tuple[KeyRecord, str]:
        """Returns the secret: the only time it exists outside the caller's hands."""
        name = name.strip()
        if not name:
            raise ValueError("a key needs a name")
        secret = generate()
        row = KeyRow(
            id=_new_id(),
            name=name,
            prefix=display_prefix(secret),
            secret_hash=digest(secret),
            scopes=_checked_scopes(scopes),
            limits=dict(limits or {}),
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
        async with self._sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise KeyExists(f"a key named {name!r} already exists") from None
        return _record(row), secret

    async def list(self) -> builtins.list[KeyRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(KeyRow).order_by(KeyRow.created_at, KeyRow.name))
            return [_record(row) for row in rows]

    async def get(self, id_or_name: str) -> KeyRecord:
        async with self._sessions() as session:
            return _record(await self._find(session, id_or_name))

    async def revoke(self, id_or_name: str) -> KeyRecord:
        async with self._sessions() as session:
            row = await self._find(session, id_or_name)
            now = datetime.now(UTC)
            if row.revoked_at is None:
                await session.execute(
                    update(KeyRow)
                    .where(KeyRow.id == row.id, KeyRow.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            await end_sign_ins(session, row.id, now)
            await session.commit()
            await session.refresh(row)
        self._forget(row.id)
        return _record(row)

    async def rotate(self, id_or_name: str) -> tuple[KeyRecord, str]:
        """Same id, name, scopes and ledger history; a new secret, and the old one stops
        working, with every OAuth sign-in made with it (a rotation is how a leak is answered)."""
        secret = generate()
        async with self._sessions() as session:
            row = await self._find(session, id_or_name)
            if row.revoked_at is not None:
                raise ValueError(f"key {row.name!r} is revoked; create a new one instead")
            row.secret_hash = digest(secret)
            row.prefix = display_prefix(secret)
            await end_sign_ins(session, row.id, datetime.now(UTC))
            await session.commit()
        self._forget(row.id)
        return _record(row), secret

    async def update(
        self,
        id_or_name: str,
        *,
        limits: Mapping[str, Any] | None = None,
        scopes: Collection[str] | None = None,
    ) -> KeyRecord:
        """Merges `limits` into the key's (a None value removes that limit); replaces `scopes`.

        Values are stored as given: callers check them (`teamrelay.limits.checked_limits`).
        Other processes apply the change within the lookup cache's TTL.
        """
        async with self._sessions() as session:
            row = await self._find(session, id_or_name)
            if limits:
                merged = {**row.limits, **limits}
                row.limits = {name: value for name, value in merged.items() if value is not None}
            if scopes is not None:
                row.scopes = _checked_scopes(scopes)
            await session.commit()
        self._forget(row.id)
        return _record(row)

    @staticmethod
    async def _find(session: AsyncSession, id_or_name: str) -> KeyRow:
        rows = (
            await session.scalars(
                select(KeyRow).where(or_(KeyRow.id == id_or_name, KeyRow.name == id_or_name))
            )
        ).all()
        if rows:
            return min(rows, key=lambda row: row.id != id_or_name)  # an id beats a name
        raise KeyNotFound(f"no key with id or name {id_or_name!r}")


def _new_id() -> str:
    return secrets.token_hex(8)
