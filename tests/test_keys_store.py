"""KeyStore: hashes only in the table, cached lookups, revocation reaching other processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.keys.secrets import digest, display_prefix, generate, matches
from teamrelay.keys.store import KeyExists, KeyNotFound, KeyStore

BOOTSTRAP = ("tr-test-bootstrap-0000000000000000000000000000", "sk-test-relay-0000")


@contextmanager
def queries(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def every_stored_value(engine: AsyncEngine) -> list[str]:
    """Every column of every row of every table, as text."""

    def table_names(connection: Any) -> list[str]:
        return list(inspect(connection).get_table_names())

    values: list[str] = []
    async with engine.connect() as connection:
        for table in await connection.run_sync(table_names):
            for row in await connection.execute(text(f"SELECT * FROM {table}")):
                values.extend(str(value) for value in row)
    return values


def test_generated_secrets_are_long_random_and_shown_by_a_short_prefix() -> None:
    secret = generate()
    assert secret.startswith("tr-")
    assert len(secret) >= 40
    assert generate() != secret
    assert display_prefix(secret) == secret[:9]
    assert matches(secret, digest(secret))
    assert not matches(secret + "x", digest(secret))


def test_short_or_foreign_secrets_are_shown_by_a_digest_fragment_only() -> None:
    for secret in ("sk-test-relay-0000", "tr-short", "x"):
        shown = display_prefix(secret)
        assert shown.startswith("#")
        assert shown[1:] == digest(secret)[:8]


async def test_bootstrap_keys_are_stored_as_hashes_only(engine: AsyncEngine) -> None:
    store = KeyStore(engine, bootstrap=BOOTSTRAP)
    await store.start()
    await store.start()  # restarts register nothing twice
    _, created = await store.create("alice", scopes={"api"})
    stored = await every_stored_value(engine)
    for secret in (*BOOTSTRAP, created):
        assert digest(secret) in stored
        assert not [value for value in stored if secret in value]
    records = await store.list()
    assert len(records) == 3
    for secret in BOOTSTRAP:
        record = await store.lookup(secret)
        assert record is not None
        assert record.name == f"bootstrap-{display_prefix(secret)}"
        assert record.scopes == {"api", "actions", "admin"}


async def test_a_revoked_bootstrap_key_stays_revoked_after_a_restart(engine: AsyncEngine) -> None:
    store = KeyStore(engine, bootstrap=BOOTSTRAP[:1])
    await store.start()
    record = await store.lookup(BOOTSTRAP[0])
    assert record is not None
    await store.revoke(record.id)
    restarted = KeyStore(engine, bootstrap=BOOTSTRAP[:1])
    await restarted.start()
    assert await restarted.lookup(BOOTSTRAP[0]) is None


async def test_created_key_works_with_its_scopes_limits_and_expiry(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    expires = datetime.now(UTC) + timedelta(days=90)
    record, secret = await store.create(
        "alice", scopes=["api", "actions"], expires_at=expires, limits={"rpm": 60}
    )
    found = await store.lookup(secret)
    assert found == record
    assert found.scopes == {"api", "actions"}
    assert found.limits == {"rpm": 60}
    assert found.expires_at == expires
    assert found.prefix == secret[:9]
    assert await store.lookup("tr-not-a-key") is None


async def test_names_are_unique_and_scopes_checked(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    await store.create("alice", scopes={"api"})
    with pytest.raises(KeyExists):
        await store.create("alice", scopes={"api"})
    with pytest.raises(ValueError, match="unknown scope"):
        await store.create("bob", scopes={"api", "root"})
    with pytest.raises(ValueError, match="at least one scope"):
        await store.create("carol", scopes=set())


async def test_expired_keys_are_refused_even_from_the_cache(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    _, past = await store.create("old", scopes={"api"}, expires_at=datetime.now(UTC) - timedelta(1))
    assert await store.lookup(past) is None
    _, soon = await store.create(
        "brief", scopes={"api"}, expires_at=datetime.now(UTC) + timedelta(seconds=0.3)
    )
    assert await store.lookup(soon) is not None
    await asyncio.sleep(0.35)
    assert await store.lookup(soon) is None


async def test_a_cached_key_is_refused_once_it_expires_before_the_cache_ttl(
    engine: AsyncEngine,
) -> None:
    store = KeyStore(engine, cache_ttl=4.0)
    expires = datetime.now(UTC) + timedelta(seconds=1)
    _, secret = await store.create("brief", scopes={"api"}, expires_at=expires)
    assert await store.lookup(secret) is not None
    cached_at = time.monotonic()
    with queries(engine) as seen:
        assert await store.lookup(secret) is not None
    assert seen == []
    await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.05)
    assert await store.lookup(secret) is None
    assert await store.lookup(secret) is None
    assert time.monotonic() - cached_at < 4.0


async def test_a_cache_hit_reads_no_wall_clock(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(engine, cache_ttl=4.0)
    _, forever = await store.create("forever", scopes={"api"})
    _, dated = await store.create(
        "dated", scopes={"api"}, expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert await store.lookup(forever) is not None
    assert await store.lookup(dated) is not None

    class NoWallClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> NoWallClock:
            raise AssertionError("a cache hit read the wall clock")

    monkeypatch.setattr("teamrelay.keys.store.datetime", NoWallClock)
    for _ in range(10):
        assert await store.lookup(forever) is not None
        assert await store.lookup(dated) is not None


async def test_a_revoked_key_stays_refused_from_the_cache(engine: AsyncEngine) -> None:
    store = KeyStore(engine, cache_ttl=4.0)
    record, secret = await store.create("alice", scopes={"api"})
    assert await store.lookup(secret) is not None
    await store.revoke(record.id)
    fresh = KeyStore(engine, cache_ttl=4.0)
    for _ in range(3):
        assert await store.lookup(secret) is None
        assert await fresh.lookup(secret) is None
    with queries(engine) as seen:
        assert await store.lookup(secret) is None
        assert await fresh.lookup(secret) is None
    assert seen == []


async def test_a_cache_hit_or_a_known_bad_key_needs_no_query(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    _, secret = await store.create("alice", scopes={"api"})
    assert await store.lookup(secret) is not None
    assert await store.lookup("tr-bad-key") is None
    with queries(engine) as seen:
        for _ in range(100):
            assert await store.lookup(secret) is not None
            assert await store.lookup("tr-bad-key") is None
    assert seen == []


async def test_a_flood_of_one_bad_key_costs_one_query(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    with queries(engine) as seen:
        results = await asyncio.gather(*(store.lookup("tr-flood") for _ in range(200)))
    assert results == [None] * 200
    assert len(seen) == 1


async def test_a_flood_of_distinct_bad_keys_keeps_the_cache_bounded(engine: AsyncEngine) -> None:
    store = KeyStore(engine, max_entries=50)
    _, secret = await store.create("alice", scopes={"api"})
    for n in range(200):
        assert await store.lookup(f"tr-bad-{n}") is None
    assert store.cache_size <= 50
    assert await store.lookup(secret) is not None


async def test_revocation_reaches_another_process_within_five_seconds(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    here = KeyStore(engine)
    elsewhere = KeyStore(other_engine)  # the default cache, as a second relay process runs it
    record, secret = await here.create("alice", scopes={"api"})
    assert await elsewhere.lookup(secret) is not None  # now cached over there
    revoked = await here.revoke("alice")
    assert revoked.revoked_at is not None
    assert await here.lookup(secret) is None  # at once where it was revoked
    started = time.monotonic()
    while await elsewhere.lookup(secret) is not None:
        assert time.monotonic() - started < 5, "still accepted 5 s after revocation"
        await asyncio.sleep(0.05)
    assert (await here.revoke(record.id)).revoked_at == revoked.revoked_at  # idempotent


async def test_rotation_keeps_the_identity_and_retires_the_old_secret(
    engine: AsyncEngine,
) -> None:
    store = KeyStore(engine)
    record, old = await store.create("alice", scopes={"api", "admin"})
    assert await store.lookup(old) is not None
    rotated, new = await store.rotate(record.id)
    assert new != old
    assert (rotated.id, rotated.name, rotated.scopes) == (record.id, record.name, record.scopes)
    assert rotated.prefix == new[:9]
    assert await store.lookup(old) is None
    assert await store.lookup(new) == rotated
    await store.revoke("alice")
    with pytest.raises(ValueError, match="revoked"):
        await store.rotate("alice")


async def test_unknown_keys_cannot_be_revoked_or_rotated(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    with pytest.raises(KeyNotFound):
        await store.revoke("nobody")
    with pytest.raises(KeyNotFound):
        await store.rotate("nobody")


async def test_an_id_is_matched_before_a_name(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    first, _ = await store.create("alice", scopes={"api"})
    second, _ = await store.create(first.id, scopes={"api"})  # a name that looks like an id
    assert (await store.get(first.id)).id == first.id
    assert (await store.revoke(first.id)).id == first.id
    assert (await store.get(second.id)).revoked_at is None


def test_the_cache_cannot_outlive_the_revocation_bound(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="revocation"):
        KeyStore(engine, cache_ttl=10)


async def test_keys_table_holds_no_secret_column(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        columns = await connection.run_sync(
            lambda sync: {column["name"] for column in inspect(sync).get_columns("relay_keys")}
        )
    assert "secret_hash" in columns
    assert not {name for name in columns if "secret" in name and name != "secret_hash"}
