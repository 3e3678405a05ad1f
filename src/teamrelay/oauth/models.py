"""The authorization server's tables, on the relay's `Base` (migration 0003 creates them).

Every secret here is a SHA-256 digest (`teamrelay.keys.secrets.digest`): client secrets, codes,
access and refresh tokens and invite codes carry 256 random bits, so a fast digest is the right
store (see keys/secrets.py). A token row is one issuance: an access token and, usually, its
refresh token; rows issued from one sign-in share a `family_id`, so reuse of a rotated refresh
token (or of a spent code) can end the whole sign-in at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from teamrelay.ledger.models import Base


class OAuthClientRow(Base):
    __tablename__ = "relay_oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]]
    auth_method: Mapped[str] = mapped_column(String(32))
    registered_by: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class OAuthCodeRow(Base):
    __tablename__ = "relay_oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    family_id: Mapped[str] = mapped_column(String(32))
    redirect_uri: Mapped[str]
    scope: Mapped[str]
    resource: Mapped[str]
    code_challenge: Mapped[str | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OAuthTokenRow(Base):
    __tablename__ = "relay_oauth_tokens"
    __table_args__ = (
        Index("ix_relay_oauth_tokens_family_id", "family_id"),
        Index("ix_relay_oauth_tokens_key_id", "key_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str]
    resource: Mapped[str]
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime]
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class InviteRow(Base):
    """A one-time invite: the key is created (and shown once) when the member first uses it."""

    __tablename__ = "relay_invites"

    invite_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    key_id: Mapped[str | None] = mapped_column(String(32))
