"""The `teamrelay` command: serve, and the operator's tools mounted from their packages."""

from __future__ import annotations

import os
import tempfile

import typer
import uvicorn

from teamrelay.catalog import PolicyError
from teamrelay.catalog import cli as catalog_cli
from teamrelay.check import check
from teamrelay.config import ConfigError, load_settings
from teamrelay.keys.cli import keys_app
from teamrelay.ledger.cli import db_app, prices, usage
from teamrelay.ledger.db import DatabaseUnreachable
from teamrelay.oauth.cli import invite, oauth_app
from teamrelay.observability.logs import configured_secrets, logging_config
from teamrelay.routing import Router

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A team's relay to OpenAI.")


@app.callback()
def _root() -> None:
    """Keeps `serve` a subcommand while it is the only one."""


@app.command()
def serve(
    host: str = typer.Option("0.0.0.0", help="Interface to listen on."),
    port: int = typer.Option(8000, envvar="PORT", help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Run the relay (uvicorn with uvloop and httptools)."""
    try:
        settings = load_settings()
        Router(policy_file=settings.policy_file, allowlist=settings.model_allowlist)
    except (ConfigError, PolicyError) as exc:
        typer.echo(f"teamrelay: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers > 1 and settings.redis_url is None:
        typer.echo(
            f"teamrelay: --workers {workers} needs RELAY_REDIS_URL: without it each worker counts "
            f"rate limits on its own, so a key would get {workers} times its limit "
            "(run one worker, or set RELAY_REDIS_URL)",
            err=True,
        )
        raise typer.Exit(2)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="teamrelay-metrics-")
    uvicorn.run(
        "teamrelay.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        log_config=logging_config(settings.log_format, log_level, configured_secrets(settings)),
        access_log=False,
        timeout_graceful_shutdown=settings.drain_seconds,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


for command in catalog_cli.app.registered_commands:
    app.registered_commands.append(command)
app.command()(check)
app.add_typer(keys_app, name="keys", help="Relay keys: create, list, revoke, rotate.")
app.add_typer(db_app, name="db", help="The relay's database.")
app.command("usage")(usage)
app.command("prices")(prices)
app.add_typer(oauth_app, name="oauth", help="OAuth clients for per-member sign-in.")
keys_app.command("invite")(invite)


def main() -> None:
    """Configuration and database failures are one line each, not a traceback."""
    try:
        app()
    except (ConfigError, DatabaseUnreachable) as exc:
        typer.echo(f"teamrelay: {exc}", err=True)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
