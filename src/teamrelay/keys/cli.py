"""`teamrelay keys …`: the operator hands out and takes back relay keys.

A secret is printed once, alone on stdout (so `$(teamrelay keys create …)` captures it), and
never again: the database holds only its digest. Everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.keys.store import SCOPES, KeyExists, KeyNotFound, KeyRecord, KeyStore
from teamrelay.ledger.db import database_url, migrated_engine
from teamrelay.ledger.usage import parse_duration, parse_since
from teamrelay.limits.policy import LIMIT_FIELDS, check_value

keys_app = typer.Typer(
    help="Relay keys: create, update, list, revoke, rotate.", no_args_is_help=True
)

T = TypeVar("T")
_ONCE = "This is the only time the secret is shown: store it now."


def _run(action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def main() -> T:
        engine: AsyncEngine
        async with migrated_engine(database_url()) as engine:
            return await action(KeyStore(engine, cache_ttl=0))

    try:
        return asyncio.run(main())
    except (KeyExists, KeyNotFound, ValueError) as exc:
        _err().print(f"error: {exc.args[0] if exc.args else exc}", highlight=False)
        raise typer.Exit(1) from None


def _err() -> Console:
    return Console(stderr=True)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _describe(record: KeyRecord) -> str:
    expires = f"expires {_when(record.expires_at)} UTC" if record.expires_at else "no expiry"
    scopes = ", ".join(sorted(record.scopes))
    return f"{record.name} (id {record.id}, {record.prefix}…, {scopes}, {expires})"


_HELP = {field.name: field.help for field in LIMIT_FIELDS}
_OFF = "off"
Rpm = Annotated[str | None, typer.Option("--rpm", help=_HELP["rpm"])]
Tpm = Annotated[str | None, typer.Option("--tpm", help=_HELP["tpm"])]
DailyUsd = Annotated[str | None, typer.Option("--daily-usd", help=_HELP["daily_usd"])]
MonthlyUsd = Annotated[str | None, typer.Option("--monthly-usd", help=_HELP["monthly_usd"])]
DailyTokens = Annotated[str | None, typer.Option("--daily-tokens", help=_HELP["daily_tokens"])]
MonthlyTokens = Annotated[
    str | None, typer.Option("--monthly-tokens", help=_HELP["monthly_tokens"])
]
Isolation = Annotated[str | None, typer.Option("--isolation", help=_HELP["isolation"])]


def _limits(given: dict[str, str | None], *, clearing: bool) -> dict[str, Any]:
    """Checked limit values; with `clearing`, `off` maps to None (remove the limit)."""
    limits: dict[str, Any] = {}
    for name, text in given.items():
        if text is None:
            continue
        if clearing and text.strip().lower() == _OFF:
            limits[name] = None
            continue
        try:
            limits[name] = check_value(name, text.strip())
        except ValueError as exc:
            option = "--" + name.replace("_", "-")
            raise typer.BadParameter(str(exc), param_hint=option) from None
    return limits


def _scopes(text: str) -> set[str]:
    return {scope.strip() for scope in text.split(",") if scope.strip()}


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what the key is for; unique.")],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime (90d, 12w, 24h) or an ISO date; none by default.")
    ] = None,
    scopes: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(sorted(SCOPES))}.")
    ] = "api,actions",
    rpm: Rpm = None,
    tpm: Tpm = None,
    daily_usd: DailyUsd = None,
    monthly_usd: MonthlyUsd = None,
    daily_tokens: DailyTokens = None,
    monthly_tokens: MonthlyTokens = None,
    isolation: Isolation = None,
) -> None:
    """Create a key and print its secret, once."""
    expires_at = None
    if expires is not None:
        try:
            expires_at = _expiry(expires)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--expires") from None
    limits = _limits(
        {
            "rpm": rpm,
            "tpm": tpm,
            "daily_usd": daily_usd,
            "monthly_usd": monthly_usd,
            "daily_tokens": daily_tokens,
            "monthly_tokens": monthly_tokens,
            "isolation": isolation,
        },
        clearing=False,
    )
    wanted = _scopes(scopes)
    record, secret = _run(
        lambda store: store.create(name, scopes=wanted, expires_at=expires_at, limits=limits)
    )
    _err().print(f"Created key {_describe(record)}.", highlight=False)
    _err().print(_ONCE, style="bold")
    typer.echo(secret)


def _expiry(text: str) -> datetime:
    """`90d` means 90 days from now; a date means that moment (UTC if no offset)."""
    now = datetime.now(UTC)
    try:
        return now + parse_duration(text)
    except OverflowError:
        raise ValueError(f"{text!r} reaches past the year 9999") from None
    except ValueError:
        moment = parse_since(text, now=now)
    if moment <= now:
        raise ValueError(f"{text!r} is in the past")
    return moment


@keys_app.command("update")
def update(
    key: Annotated[str, typer.Argument(metavar="ID|NAME")],
    scopes: Annotated[
        str | None, typer.Option(help=f"Replace the scopes (from: {', '.join(sorted(SCOPES))}).")
    ] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    daily_usd: DailyUsd = None,
    monthly_usd: MonthlyUsd = None,
    daily_tokens: DailyTokens = None,
    monthly_tokens: MonthlyTokens = None,
    isolation: Isolation = None,
) -> None:
    """Change a key's limits, budgets, isolation or scopes; `off` removes a limit.

    Every relay process applies the change within 5 seconds.
    """
    limits = _limits(
        {
            "rpm": rpm,
            "tpm": tpm,
            "daily_usd": daily_usd,
            "monthly_usd": monthly_usd,
            "daily_tokens": daily_tokens,
            "monthly_tokens": monthly_tokens,
            "isolation": isolation,
        },
        clearing=True,
    )
    wanted = _scopes(scopes) if scopes is not None else None
    if not limits and wanted is None:
        raise typer.BadParameter("nothing to change: give a limit, --isolation or --scopes")
    record = _run(lambda store: store.update(key, limits=limits, scopes=wanted))
    _err().print(f"Updated key {_describe(record)}: limits {show_limits(record)}.", highlight=False)


def show_limits(record: KeyRecord) -> str:
    """`rpm 60, tpm 100,000, daily $5.00, isolation shared`, or `-` for none."""
    parts = []
    for field in LIMIT_FIELDS:
        value = record.limits.get(field.name)
        if value is None:
            continue
        label = field.name.replace("_usd", "").replace("_tokens", " tokens")
        if field.name.endswith("_usd"):
            parts.append(f"{label} ${float(value):,.2f}")
        elif isinstance(value, int | float):
            parts.append(f"{label} {int(value):,}")
        else:
            parts.append(f"{label} {value}")
    return ", ".join(parts) or "-"


@keys_app.command("list")
def list_keys() -> None:
    """Every key, without secrets."""
    records = _run(lambda store: store.list())
    if not records:
        _err().print("No keys yet: create one with `teamrelay keys create --name NAME`.")
        return
    now = datetime.now(UTC)
    table = Table()
    for column in ("id", "name", "prefix", "scopes", "limits", "created", "expires", "revoked"):
        heading = f"{column} (UTC)" if column in ("created", "expires", "revoked") else column
        table.add_column(heading, no_wrap=column in ("id", "prefix"))
    for record in records:
        expires = _when(record.expires_at)
        if record.expires_at and record.expires_at <= now:
            expires += " (expired)"
        table.add_row(
            record.id,
            record.name,
            record.prefix + "…",
            ",".join(sorted(record.scopes)),
            show_limits(record),
            _when(record.created_at),
            expires,
            _when(record.revoked_at),
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(metavar="ID|NAME")]) -> None:
    """Stop a key working; every relay process refuses it within 5 seconds."""
    record = _run(lambda store: store.revoke(key))
    _err().print(f"Revoked key {record.name} (id {record.id}).", highlight=False)


@keys_app.command("rotate")
def rotate(key: Annotated[str, typer.Argument(metavar="ID|NAME")]) -> None:
    """Replace a key's secret (same id, name and scopes) and print the new one, once."""
    record, secret = _run(lambda store: store.rotate(key))
    _err().print(
        f"Rotated key {_describe(record)}; the old secret stops working within 5 seconds.",
        highlight=False,
    )
    _err().print(_ONCE, style="bold")
    typer.echo(secret)
