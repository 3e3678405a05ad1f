"""Relay key secrets: how they are made, shown and stored.

A generated secret carries 256 random bits, so a plain SHA-256 digest is the right thing to
store: a slow password hash defends low-entropy secrets against guessing and would only add
latency to every request here. Lookups go by digest; the digest of a guess says nothing about
how close the guess was, so the dictionary lookup leaks nothing a constant-time compare would
protect. `matches` is for the places that do compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "tr-"
_SHOWN = 6  # random characters kept in the display prefix: 36 of 256 bits


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(digest(secret), secret_hash)


def display_prefix(secret: str) -> str:
    """What `keys list` shows so a person can tell keys apart.

    Bootstrap keys from RELAY_KEYS may be short or share a common start (`sk-…`), so showing
    their first characters could reveal most of a secret or fail to tell two apart; they are
    shown by a digest fragment instead.
    """
    if secret.startswith(PREFIX) and len(secret) >= len(PREFIX) + 4 * _SHOWN:
        return secret[: len(PREFIX) + _SHOWN]
    return "#" + digest(secret)[:8]
