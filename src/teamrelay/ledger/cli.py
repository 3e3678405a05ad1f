"""`teamrelay db …`, `teamrelay usage` and `teamrelay prices`."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from teamrelay.config import load_store_settings
from teamrelay.ledger.db import database_url, migrated_engine, schema_revisions, shown_url, upgrade
from teamrelay.ledger.models import LedgerRow
from teamrelay.ledger.prices import Prices, PricesError, load_prices
from teamrelay.ledger.usage import By, UsageGroup, UsageReport, parse_since, usage_report

db_app = typer.Typer(help="The relay's database (keys and the usage ledger).", no_args_is_help=True)

_COUNTS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
)


@db_app.command("info")
def info_command() -> None:
    """Where the relay's data is (as every command and `serve` read it) and its schema."""
    settings = load_store_settings()
    current, newest = asyncio.run(schema_revisions(settings.database_url))
    state = "up to date" if current == newest else f"behind {newest}: teamrelay db upgrade"
    typer.echo(f"data directory: {settings.data_dir}")
    typer.echo(f"database: {shown_url(settings.database_url)}")
    typer.echo(f"schema: {current or 'empty'} ({state})")


@db_app.command("upgrade")
def upgrade_command() -> None:
    """Apply pending migrations (the relay also applies them when it starts)."""
    url = database_url()
    asyncio.run(upgrade(url))
    Console(stderr=True).print(f"Database {shown_url(url)} is up to date.", highlight=False)


def usage(
    since: Annotated[
        str, typer.Option(help="Period: a duration back from now (30m, 24h, 7d, 2w) or a date.")
    ] = "7d",
    by: Annotated[By, typer.Option(help="Group rows by this.")] = By.key,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Requests, tokens and estimated cost per key, model, day or operation, with a total."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None

    async def report() -> UsageReport:
        async with migrated_engine(database_url()) as engine:
            return await usage_report(engine, by=by, since=start)

    result = asyncio.run(report())
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif as_csv:
        _write_csv(result)
    else:
        Console().print(_table(result))


def _heads(by: By) -> list[str]:
    return ["key_id", "key_name"] if by is By.key else [by.value]


def _names(by: By, group: UsageGroup) -> list[str]:
    if by is By.key:
        return [group.group or "", group.label or ""]
    return [group.group or ""]


def _write_csv(report: UsageReport) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    heads = _heads(report.by)
    writer.writerow([*heads, *_COUNTS])
    for group in report.groups:
        writer.writerow([*_names(report.by, group), *group.counts().values()])
    writer.writerow(["(total)", *[""] * (len(heads) - 1), *report.total.counts().values()])


def _table(report: UsageReport) -> Table:
    since = report.since.strftime("%Y-%m-%d %H:%M UTC") if report.since else "the beginning"
    table = Table(title=f"Usage by {report.by.value} since {since}", show_footer=True)
    label = "key" if report.by is By.key else report.by.value
    table.add_column(label, footer="total")
    for name in _COUNTS:
        table.add_column(name.replace("_", " "), justify="right", footer=_cell(report.total, name))
    for group in report.groups:
        shown = group.label if report.by is By.key else group.group
        table.add_row(shown or "-", *(_cell(group, name) for name in _COUNTS))
    return table


def _cell(group: UsageGroup, name: str) -> str:
    value = group.counts()[name]
    return f"${value:,.4f}" if name == "cost_usd" else f"{value:,}"


def prices(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ledger: Annotated[
        bool, typer.Option(help="Also list the ledger's models that have no price.")
    ] = True,
) -> None:
    """The price table (shipped, with RELAY_PRICES_FILE laid over it) and the models seen in
    the ledger that it does not price."""
    try:
        table = load_prices()
    except PricesError as exc:
        typer.echo(f"teamrelay: {exc}", err=True)
        raise typer.Exit(2) from None
    unpriced = asyncio.run(_unpriced(table)) if ledger else {}
    if as_json:
        document = {
            "models": {name: price.to_dict() for name, price in table.table.items()},
            "tools": {name: tool.to_dict() for name, tool in table.tools.items()},
            "unpriced": [{"model": name, "requests": n} for name, n in unpriced.items()],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console()
    shown = Table(title="Prices (US dollars)")
    for head in ("model", "kind", "prices", "checked", "source"):
        shown.add_column(head, overflow="fold")
    for name, price in table.table.items():
        shown.add_row(
            name, price.kind, price.described(), price.checked or "-", price.source or "-"
        )
    for name, tool in table.tools.items():
        shown.add_row(name, "tool", tool.described(), tool.checked or "-", tool.source or "-")
    console.print(shown)
    if unpriced:
        missing = Table(title="Models in the ledger without a price (they cost $0)")
        missing.add_column("model")
        missing.add_column("requests", justify="right")
        for name, count in unpriced.items():
            missing.add_row(name, f"{count:,}")
        console.print(missing)
    elif ledger:
        console.print("Every model in the ledger has a price.", highlight=False)


async def _unpriced(table: Prices) -> dict[str, int]:
    """The ledger's models without a price, with their request counts, most used first."""
    count = func.count()
    query = (
        select(LedgerRow.model, count)
        .where(LedgerRow.model.is_not(None))
        .group_by(LedgerRow.model)
        .order_by(count.desc(), LedgerRow.model)
    )
    async with migrated_engine(database_url()) as engine, engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {model: n for model, n in rows if model and table.lookup(model) is None}
