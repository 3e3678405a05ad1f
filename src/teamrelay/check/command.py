"""`teamrelay check`: the live gates as one command, with progress and a pass/fail table.

The gates need the OpenAI SDK (they call the relay exactly as a team member would); it is
imported when the command runs, so `teamrelay serve` never depends on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from teamrelay.check.probe import Outcome

_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


def _table(root: str, outcomes: list[Outcome]) -> Table:
    table = Table(title=f"teamrelay check: {root}", title_justify="left")
    table.add_column("gate", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("detail")
    for outcome in outcomes:
        table.add_row(
            outcome.gate, _STYLE[outcome.status], f"{outcome.seconds:.2f}s", outcome.detail
        )
    return table


def _summary(outcomes: list[Outcome]) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in _STYLE}
    return f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"


def check(
    base_url: str = typer.Option(
        ..., "--base-url", help="The deployment's URL, with or without /v1."
    ),
    key: str = typer.Option(
        ...,
        "--key",
        envvar="RELAY_CHECK_KEY",
        show_default=False,
        help="A relay key to check with (or set RELAY_CHECK_KEY, kept out of shell history).",
    ),
    slow: bool = typer.Option(
        False, "--slow", help="Also run a batch and download its output (see --batch-wait)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcomes as JSON."),
    model: str | None = typer.Option(
        None, "--model", help="Model to ask (default: the one the relay's /health names)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds per request."),
    batch_wait: float = typer.Option(
        900.0, "--batch-wait", min=0.0, help="Seconds to wait for the batch to finish."
    ),
) -> None:
    """Prove a deployment works: run the live gates against it; exit 1 if any fails."""
    try:
        from teamrelay.check.probe import root_of
        from teamrelay.check.run import gate_names, run_checks
    except ImportError as exc:
        typer.echo(f"teamrelay check needs the openai package ({exc.name} is missing)", err=True)
        raise typer.Exit(2) from None

    root = root_of(base_url)
    names = gate_names(slow=slow)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("starting", total=len(names))

        def on_gate(name: str) -> None:
            progress.update(task, description=name, completed=names.index(name))

        outcomes = run_checks(
            root,
            key,
            slow=slow,
            model=model,
            timeout=timeout,
            batch_wait=batch_wait,
            on_gate=on_gate,
        )
        progress.update(task, completed=len(names))
    failed = [o for o in outcomes if o.status == "fail"]
    if as_json:
        report = {
            "base_url": root,
            "passed": not failed,
            "gates": [asdict(outcome) for outcome in outcomes],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        console = Console()
        console.print(_table(root, outcomes))
        console.print(_summary(outcomes), highlight=False)
        for outcome in failed:
            console.print(
                f"FAIL {outcome.gate}: {outcome.detail}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    if failed:
        raise typer.Exit(1)
