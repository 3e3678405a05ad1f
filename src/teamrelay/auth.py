"""Who is calling: relay keys from the request headers, and the identity they stand for.

Keys are compared by their SHA-256 digest: the table holds digests only, and a lookup by digest
leaks nothing useful about the secret through timing (the digest of a guess says nothing about
how close the guess is), which is what a constant-time compare of the secrets would protect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    key_id: str
    name: str
    scopes: frozenset[str]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class StaticKeys:
    """Keys from RELAY_KEYS, held as digests; the database-backed store replaces it later."""

    def __init__(self, secrets: Sequence[str]) -> None:
        digests = [digest(secret) for secret in secrets]
        self._by_digest = {
            hexdigest: Identity(
                key_id=f"env-{hexdigest[:12]}",
                name=f"bootstrap-{hexdigest[:8]}",
                scopes=frozenset({"api", "actions", "admin"}),
            )
            for hexdigest in digests
        }

    async def lookup(self, secret: str) -> Identity | None:
        return self._by_digest.get(digest(secret))
