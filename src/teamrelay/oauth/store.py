"""Clients, codes, tokens and invites in the database: digests in, records out.

The records double as the objects Authlib asks for (its `ClientMixin`, `AuthorizationCodeMixin`
and `TokenMixin` duck types), so the grants in server.py read them directly. Single use is
decided here, by conditional updates inside the transaction that issues the new token: two
concurrent exchanges of one code (or one refresh token) cannot both win.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.common.security import generate_token  # type: ignore[import-untyped]
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from teamrelay.keys.secrets import digest
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.oauth.models import InviteRow, OAuthClientRow, OAuthCodeRow, OAuthTokenRow

ACCESS_PREFIX = "tra_"
REFRESH_PREFIX = "trr_"
CODE_PREFIX = "trc_"
CLIENT_SECRET_PREFIX = "trs_"
INVITE_PREFIX = "tri_"
# The MCP endpoint: a resource (RFC 8707) of its own, narrower than the whole relay.
MCP_PATH = "/mcp"
# What a relay key can be asked for over OAuth: never `admin`.
OAUTH_SCOPES = ("api", "actions")
CONFIDENTIAL_METHODS = frozenset({"client_secret_post", "client_secret_basic"})
PUBLIC_METHOD = "none"


def new_secret(prefix: str) -> str:
    """256 random bits from Authlib's generator (43 characters of [A-Za-z0-9])."""
    return prefix + str(generate_token(43))


def scope_list(scope: str | None) -> list[str]:
    return [part for part in (scope or "").split() if part]


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    auth_method: str
    registered_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def is_public(self) -> bool:
        return self.auth_method == PUBLIC_METHOD

    # Authlib's ClientMixin

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """What the client may ask for; everything OAuth grants when it names nothing."""
        wanted = scope_list(scope) or list(OAUTH_SCOPES)
        return " ".join(s for s in wanted if s in OAUTH_SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match (OAuth 2.1 section 4.1.1): no prefixes, no wildcards."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return secrets.compare_digest(digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            return method == PUBLIC_METHOD
        return method in CONFIDENTIAL_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class Code:
    code_hash: str
    client_id: str
    key_id: str
    family_id: str
    redirect_uri: str
    scope: str
    resource: str
    code_challenge: str | None
    expires_at: datetime
    used_at: datetime | None

    # Authlib's AuthorizationCodeMixin (and what its CodeChallenge extension reads)

    @property
    def code_challenge_method(self) -> str | None:
        return "S256" if self.code_challenge else None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    family_id: str
    client_id: str
    key_id: str
    scope: str
    resource: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    rotated_at: datetime | None
    revoked_at: datetime | None

    # Authlib's TokenMixin

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


def _client(row: OAuthClientRow) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        secret_hash=row.secret_hash,
        redirect_uris=tuple(row.redirect_uris),
        auth_method=row.auth_method,
        registered_by=row.registered_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _code(row: OAuthCodeRow) -> Code:
    return Code(
        code_hash=row.code_hash,
        client_id=row.client_id,
        key_id=row.key_id,
        family_id=row.family_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        resource=row.resource,
        code_challenge=row.code_challenge,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


def _token(row: OAuthTokenRow) -> Token:
    return Token(
        id=row.id,
        family_id=row.family_id,
        client_id=row.client_id,
        key_id=row.key_id,
        scope=row.scope,
        resource=row.resource,
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
    )


@dataclass(frozen=True, slots=True)
class Issue:
    """A token pair to store: only digests reach the database."""

    family_id: str
    client_id: str
    key_id: str
    scope: str
    resource: str
    access_token: str
    refresh_token: str | None
    issued_at: datetime
    access_ttl: int
    refresh_ttl: int

    def row(self) -> OAuthTokenRow:
        refresh = self.refresh_token
        return OAuthTokenRow(
            id=secrets.token_hex(16),
            family_id=self.family_id,
            client_id=self.client_id,
            key_id=self.key_id,
            scope=self.scope,
            resource=self.resource,
            access_hash=digest(self.access_token),
            refresh_hash=digest(refresh) if refresh else None,
            issued_at=self.issued_at,
            access_expires_at=self.issued_at + timedelta(seconds=self.access_ttl),
            refresh_expires_at=(
                self.issued_at + timedelta(seconds=self.refresh_ttl) if refresh else None
            ),
        )


class ClientNotFound(LookupError):
    pass


class OAuthStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # Clients

    async def client(self, client_id: str) -> Client | None:
        async with self._sessions() as session:
            row = await session.get(OAuthClientRow, client_id)
        if row is None or row.revoked_at is not None:
            return None
        return _client(row)

    async def create_client(
        self,
        name: str,
        redirect_uris: Sequence[str],
        *,
        auth_method: str,
        registered_by: str,
        now: datetime,
    ) -> tuple[Client, str | None]:
        """Returns the client secret (None for a public client): the only time it exists."""
        secret = None if auth_method == PUBLIC_METHOD else new_secret(CLIENT_SECRET_PREFIX)
        row = OAuthClientRow(
            client_id="rc_" + secrets.token_hex(12),
            name=name,
            secret_hash=digest(secret) if secret else None,
            redirect_uris=list(redirect_uris),
            auth_method=auth_method,
            registered_by=registered_by,
            created_at=now,
        )
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
        return _client(row), secret

    async def clients(self) -> builtins.list[Client]:
        async with self._sessions() as session:
            rows = await session.scalars(select(OAuthClientRow).order_by(OAuthClientRow.created_at))
            return [_client(row) for row in rows]

    async def revoke_client(self, client_id: str, now: datetime) -> Client:
        """The client stops working, and so does every token issued to it."""
        async with self._sessions() as session:
            row = await session.get(OAuthClientRow, client_id)
            if row is None:
                raise ClientNotFound(f"no OAuth client with id {client_id!r}")
            if row.revoked_at is None:
                row.revoked_at = now
            await session.execute(
                update(OAuthTokenRow)
                .where(OAuthTokenRow.client_id == client_id, OAuthTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.commit()
        return _client(row)

    # Codes and tokens

    async def add_code(self, row: OAuthCodeRow) -> None:
        async with self._sessions() as session:
            session.add(row)
            await session.commit()

    async def code(self, code: str) -> Code | None:
        async with self._sessions() as session:
            row = await session.get(OAuthCodeRow, digest(code))
        return None if row is None else _code(row)

    async def token_by_access(self, access_token: str) -> Token | None:
        return await self._token(OAuthTokenRow.access_hash == digest(access_token))

    async def token_by_refresh(self, refresh_token: str) -> Token | None:
        return await self._token(OAuthTokenRow.refresh_hash == digest(refresh_token))

    async def _token(self, condition: object) -> Token | None:
        async with self._sessions() as session:
            row = await session.scalar(select(OAuthTokenRow).where(condition))  # type: ignore[arg-type]
        return None if row is None else _token(row)

    async def issue(
        self, issue: Issue, *, spends_code: str | None = None, rotates: str | None = None
    ) -> bool:
        """Store the pair, spending the code or rotating the refresh token in the same
        transaction; False (and nothing stored) when that code or token was already used."""
        async with self._sessions() as session:
            if spends_code is not None:
                spent = await session.execute(
                    update(OAuthCodeRow)
                    .where(OAuthCodeRow.code_hash == spends_code, OAuthCodeRow.used_at.is_(None))
                    .values(used_at=issue.issued_at)
                )
                if spent.rowcount != 1:  # type: ignore[attr-defined]
                    return False
            if rotates is not None:
                rotated = await session.execute(
                    update(OAuthTokenRow)
                    .where(
                        OAuthTokenRow.id == rotates,
                        OAuthTokenRow.rotated_at.is_(None),
                        OAuthTokenRow.revoked_at.is_(None),
                    )
                    .values(rotated_at=issue.issued_at)
                )
                if rotated.rowcount != 1:  # type: ignore[attr-defined]
                    return False
            session.add(issue.row())
            await session.commit()
        return True

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(OAuthTokenRow)
                .where(OAuthTokenRow.family_id == family_id, OAuthTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.commit()

    # Invites

    async def create_invite(
        self, name: str, scopes: Collection[str], *, now: datetime, ttl: timedelta
    ) -> str:
        secret = new_secret(INVITE_PREFIX)
        async with self._sessions() as session:
            session.add(
                InviteRow(
                    invite_hash=digest(secret),
                    name=name,
                    scopes=sorted(scopes),
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
            await session.commit()
        return secret

    async def redeem_invite(
        self, invite: str, keys: KeyStore, now: datetime
    ) -> tuple[KeyRecord, str] | None:
        """Create the invited member's key, once; None if the invite is unknown, spent or old."""
        invite_hash = digest(invite)
        async with self._sessions() as session:
            row = await session.get(InviteRow, invite_hash)
            if row is None or row.used_at is not None or row.expires_at <= now:
                return None
            claimed = await session.execute(
                update(InviteRow)
                .where(InviteRow.invite_hash == invite_hash, InviteRow.used_at.is_(None))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            await session.commit()
            name, scopes = row.name, list(row.scopes)
        try:
            record, secret = await keys.create(name, scopes=scopes)
        except ValueError:  # the name was taken meanwhile: the invite stays usable
            async with self._sessions() as session:
                await session.execute(
                    update(InviteRow)
                    .where(InviteRow.invite_hash == invite_hash)
                    .values(used_at=None)
                )
                await session.commit()
            raise
        async with self._sessions() as session:
            await session.execute(
                update(InviteRow)
                .where(InviteRow.invite_hash == invite_hash)
                .values(key_id=record.id)
            )
            await session.commit()
        return record, secret
