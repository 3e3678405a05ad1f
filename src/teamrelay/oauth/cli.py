"""`teamrelay oauth clients …` and `teamrelay keys invite`: the operator's side of sign-in.

As with `keys create`, a secret (a client secret, an invite link) is printed once, alone on
stdout, and never stored: the database holds digests only. Everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.keys.store import SCOPES, KeyStore
from teamrelay.ledger.db import database_url, migrated_engine
from teamrelay.ledger.usage import parse_duration
from teamrelay.oauth.routes import INVITE_PATH
from teamrelay.oauth.server import allowed_redirect_uri
from teamrelay.oauth.store import ClientNotFound, OAuthStore

T = TypeVar("T")
_ONCE = "This is the only time the secret is shown: store it now."

oauth_app = typer.Typer(help="OAuth sign-in for GPT Actions and MCP clients.", no_args_is_help=True)
clients_app = typer.Typer(help="Predefined OAuth clients.", no_args_is_help=True)
oauth_app.add_typer(clients_app, name="clients")


def _run(action: Callable[[OAuthStore, KeyStore], Awaitable[T]]) -> T:
    async def main() -> T:
        engine: AsyncEngine
        async with migrated_engine(database_url()) as engine:
            return await action(OAuthStore(engine), KeyStore(engine, cache_ttl=0))

    try:
        return asyncio.run(main())
    except (ClientNotFound, ValueError) as exc:
        _err().print(f"error: {exc.args[0] if exc.args else exc}", highlight=False)
        raise typer.Exit(1) from None


def _err() -> Console:
    return Console(stderr=True)


@clients_app.command("create")
def create_client(
    name: Annotated[str, typer.Option(help="Shown to members when they sign in.")],
    redirect_uri: Annotated[
        list[str],
        typer.Option(
            "--redirect-uri",
            help="Exact callback URL; repeat for several. For a custom GPT: "
            "https://chatgpt.com/aip/<g-id>/oauth/callback (and the chat.openai.com form).",
        ),
    ],
    public: Annotated[
        bool, typer.Option(help="A public client (no secret; PKCE required).")
    ] = False,
) -> None:
    """Create a client and print its secret, once (its id goes to stderr)."""
    bad = [uri for uri in redirect_uri if not allowed_redirect_uri(uri)]
    if bad:
        problem = (
            f"{bad[0]!r}: use an absolute https URL (or http to localhost, 127.0.0.1, [::1]) "
            "with a plain host; no user info, fragment, ';', ',', spaces or controls"
        )
        raise typer.BadParameter(problem, param_hint="--redirect-uri")
    client, secret = _run(
        lambda store, _: store.create_client(
            name.strip() or "Unnamed client",
            redirect_uri,
            auth_method="none" if public else "client_secret_post",
            registered_by="cli",
            now=datetime.now(UTC),
        )
    )
    _err().print(f"Created OAuth client {client.name!r}.", highlight=False)
    _err().print(f"client_id: {client.client_id}", highlight=False)
    if secret is None:
        typer.echo(client.client_id)
        return
    _err().print(_ONCE, style="bold")
    typer.echo(secret)


@clients_app.command("list")
def list_clients() -> None:
    """Every client, without secrets."""
    found = _run(lambda store, _: store.clients())
    if not found:
        _err().print("No OAuth clients yet: create one with `teamrelay oauth clients create`.")
        return
    table = Table()
    for column in ("client_id", "name", "type", "redirect URIs", "created (UTC)", "revoked"):
        table.add_column(column, no_wrap=column == "client_id")
    for client in found:
        table.add_row(
            client.client_id,
            client.name,
            f"{'public' if client.is_public else 'confidential'}, {client.registered_by}",
            "\n".join(client.redirect_uris),
            client.created_at.strftime("%Y-%m-%d %H:%M"),
            client.revoked_at.strftime("%Y-%m-%d %H:%M") if client.revoked_at else "-",
        )
    Console().print(table)


@clients_app.command("revoke")
def revoke_client(client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID")]) -> None:
    """Stop a client, and every token issued to it, working."""
    client = _run(lambda store, _: store.revoke_client(client_id, datetime.now(UTC)))
    _err().print(f"Revoked OAuth client {client.name!r} ({client.client_id}).", highlight=False)


def invite(
    name: Annotated[str, typer.Option(help="The member's key name; unique.")],
    scopes: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(sorted(SCOPES))}.")
    ] = "api,actions",
    expires: Annotated[str, typer.Option(help="How long the invite stays usable.")] = "7d",
    url: Annotated[
        str | None, typer.Option(help="The relay's public URL (default: RELAY_PUBLIC_URL).")
    ] = None,
) -> None:
    """Print a one-time invite link: the member's key is created when they first use it."""
    base = (url or os.environ.get("RELAY_PUBLIC_URL") or "").rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise typer.BadParameter("give --url or set RELAY_PUBLIC_URL", param_hint="--url")
    try:
        ttl = parse_duration(expires)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires") from None
    wanted = {scope.strip() for scope in scopes.split(",") if scope.strip()}
    if not wanted or wanted - SCOPES:
        raise typer.BadParameter(f"choose from {', '.join(sorted(SCOPES))}", param_hint="--scopes")

    async def make(store: OAuthStore, keys: KeyStore) -> str:
        if any(record.name == name.strip() for record in await keys.list()):
            raise ValueError(f"a key named {name.strip()!r} already exists")
        return await store.create_invite(name.strip(), wanted, now=datetime.now(UTC), ttl=ttl)

    code = _run(make)
    _err().print(
        f"Invite for {name.strip()!r} ({', '.join(sorted(wanted))}), usable once within "
        f"{expires}. Send the link privately; the key is shown to the member once.",
        highlight=False,
    )
    typer.echo(f"{base}{INVITE_PATH}#{code}")
