"""Access tokens as relay keys: which key a bearer token acts as, checked on every request.

A token acts as the member's relay key, narrowed to the scopes granted at sign-in: the same key
id and name in the ledger, the same budgets and isolation. It is bound to the resource it was
issued for (RFC 8707, its audience): a token for the whole relay (the default, and what GPT
Actions get) works on `/v1`, the Actions and `/mcp`; a token for `/mcp` (what MCP clients ask
for) works on `/mcp` only, so a connector's token cannot be spent on the rest of the API.

A lookup result is cached for a couple of seconds like KeyStore's (the same revocation bound
across processes); this process forgets a token the moment it revokes it.

This module is imported by the gateway's auth path, so it imports nothing from the app side.
"""

from __future__ import annotations

import dataclasses
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.keys.secrets import digest
from teamrelay.keys.store import KeyNotFound, KeyRecord, KeyStore
from teamrelay.limits import Clock
from teamrelay.oauth.store import ACCESS_PREFIX, MCP_PATH, OAuthStore, scope_list

CACHE_TTL = 2.0
# True while an `/mcp` request is served: its tools call the Actions wrappers in-process with
# the caller's credential, which `/mcp`'s gate has already accepted for `/mcp`.
AT_MCP: ContextVar[bool] = ContextVar("oauth_at_mcp", default=False)
_MAX_ENTRIES = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    key_id: str
    family_id: str
    scopes: frozenset[str]
    expires_at: datetime
    resource: str


class OAuthTokens:
    """The resource-server side of the relay's OAuth: access token → KeyRecord."""

    def __init__(self, engine: AsyncEngine, keys: KeyStore, clock: Clock | None = None) -> None:
        self.store = OAuthStore(engine)
        self.keys = keys
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self._cache: dict[str, tuple[float, _Found | None]] = {}
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        keys.on_change.append(self.forget_key)  # rotated or revoked here: refused at once

    async def lookup(self, token: str, *, mcp: bool = False) -> KeyRecord | None:
        """The key `token` acts as at `/mcp` (`mcp`) or anywhere else; None if unknown,
        expired, revoked, issued for `/mcp` only when used elsewhere, or its key is unusable."""
        found = await self.find(token)
        at_mcp = mcp or AT_MCP.get()
        if found is None or (not at_mcp and found.resource.endswith(MCP_PATH)):
            return None
        key = await self._key(found.key_id)
        if key is None or not key.usable(self.clock()):
            return None
        return dataclasses.replace(key, scopes=key.scopes & found.scopes)

    async def _key(self, key_id: str) -> KeyRecord | None:
        """The member's key by id, cached like tokens (a revoked key stops within the TTL)."""
        cached = self._keys.get(key_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            key: KeyRecord | None = await self.keys.get(key_id)
        except KeyNotFound:
            key = None
        if len(self._keys) >= _MAX_ENTRIES:
            self._keys.clear()
        self._keys[key_id] = (time.monotonic() + CACHE_TTL, key)
        return key

    async def resource(self, token: str) -> str | None:
        """The audience (RFC 8707 resource) the token was issued for."""
        found = await self.find(token)
        return None if found is None else found.resource

    async def find(self, token: str) -> _Found | None:
        if not token.startswith(ACCESS_PREFIX):
            return None
        token_hash = digest(token)
        cached = self._cache.get(token_hash)
        if cached is not None and cached[0] > time.monotonic():
            found = cached[1]
        else:
            found = await self._query(token)
            self._remember(token_hash, found)
        if found is None or found.expires_at <= self.clock():
            return None
        return found

    async def _query(self, token: str) -> _Found | None:
        row = await self.store.token_by_access(token)
        if row is None or row.revoked_at is not None:
            return None
        return _Found(
            row.key_id,
            row.family_id,
            frozenset(scope_list(row.scope)),
            row.access_expires_at,
            row.resource,
        )

    def _remember(self, token_hash: str, found: _Found | None) -> None:
        now = time.monotonic()
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache = {h: entry for h, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
        self._cache[token_hash] = (now + CACHE_TTL, found)

    def forget_family(self, family_id: str) -> None:
        stale = [h for h, (_, f) in self._cache.items() if f and f.family_id == family_id]
        for token_hash in stale:
            del self._cache[token_hash]

    def forget_key(self, key_id: str) -> None:
        stale = [h for h, (_, f) in self._cache.items() if f and f.key_id == key_id]
        for token_hash in stale:
            del self._cache[token_hash]
        self._keys.pop(key_id, None)

    def forget_all(self) -> None:
        self._cache.clear()
        self._keys.clear()
