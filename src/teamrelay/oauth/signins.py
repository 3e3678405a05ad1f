"""Ending a key's sign-ins: what rotating or revoking a relay key does to its OAuth grants.

A token acts as the key it was issued for, so a member who rotates a leaked key must not be
left with sign-ins that the leak bought. The key store calls this inside the transaction that
rotates or revokes the key, so whichever process does it (the CLI, the admin API, a relay),
the database ends the grants with the secret: unexchanged codes expire, access and refresh
tokens are revoked. Other processes stop honouring them within their lookup caches' TTL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from teamrelay.oauth.models import OAuthCodeRow, OAuthTokenRow


async def end_sign_ins(session: AsyncSession, key_id: str, now: datetime) -> None:
    await session.execute(
        update(OAuthTokenRow)
        .where(OAuthTokenRow.key_id == key_id, OAuthTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(OAuthCodeRow)
        .where(
            OAuthCodeRow.key_id == key_id,
            OAuthCodeRow.used_at.is_(None),
            OAuthCodeRow.expires_at > now,
        )
        .values(expires_at=now)
    )
