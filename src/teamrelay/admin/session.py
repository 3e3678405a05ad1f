"""The dashboard's login session: a signed, expiring cookie holding a key id, never a key.

The cookie is `payload.mac`, HMAC-SHA256 over the payload with a key derived for this purpose
alone (from RELAY_SIGNING_KEY, else from the upstream key), so it cannot be forged, altered or
replayed after it expires. It also carries the key's display prefix, which changes when the
key is rotated: a rotation ends every session opened with the old secret.

CSRF: every form carries a token that is an HMAC of a per-browser nonce (the session's, or
before login a nonce in its own cookie). A page on another origin can neither read the nonce
nor compute the token, even if it manages to plant a cookie of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from teamrelay.config import Settings

SESSION_COOKIE: Final = "teamrelay_admin"
LOGIN_COOKIE: Final = "teamrelay_admin_login"
COOKIE_PATH: Final = "/admin"
SESSION_SECONDS: Final = 8 * 3600
LOGIN_SECONDS: Final = 3600
_DERIVATION: Final = b"teamrelay/admin/session/v1"


def session_key(settings: Settings) -> bytes:
    """RELAY_SIGNING_KEY when set, else the upstream key, each narrowed to this one purpose."""
    base = settings.signing_key or settings.openai_api_key
    return hmac.new(base.get_secret_value().encode(), _DERIVATION, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    key_prefix: str
    nonce: str
    expires: int


class Sessions:
    def __init__(
        self, key: bytes, *, ttl: int = SESSION_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self.ttl = ttl
        self._clock = clock

    def _mac(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\n{text}".encode(), hashlib.sha256).digest())

    def open(self, key_id: str, key_prefix: str) -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(key_id, key_prefix, secrets.token_urlsafe(16), self._now() + self.ttl)
        document = {"k": key_id, "p": key_prefix, "n": session.nonce, "e": session.expires}
        payload = _b64(json.dumps(document, separators=(",", ":")).encode())
        return session, f"{payload}.{self._mac('session', payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for; None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac("session", payload).encode()):
            return None
        try:
            document = json.loads(_unb64(payload))
            session = Session(
                str(document["k"]), str(document["p"]), str(document["n"]), int(document["e"])
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > self._now() else None

    def csrf_token(self, purpose: str, nonce: str) -> str:
        return self._mac(f"csrf:{purpose}", nonce)

    def csrf_valid(self, purpose: str, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(purpose, nonce).encode())

    def _now(self) -> int:
        return int(self._clock())


def new_nonce() -> str:
    return secrets.token_urlsafe(16)
