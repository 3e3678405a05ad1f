"""Team keys for end-to-end tests: made in the relay's database before the relay starts."""

from __future__ import annotations

import asyncio
from typing import Any

from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine, upgrade


async def create_keys_async(url: str, **limits: dict[str, Any]) -> dict[str, str]:
    """One `api,actions` key per name, with its limits; returns name -> secret."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = KeyStore(engine, cache_ttl=0)
        created = {}
        for name, key_limits in limits.items():
            _, secret = await store.create(name, scopes={"api", "actions"}, limits=key_limits)
            created[name] = secret
        return created
    finally:
        await engine.dispose()


def create_keys(url: str, **limits: dict[str, Any]) -> dict[str, str]:
    return asyncio.run(create_keys_async(url, **limits))
