"""`teamrelay coverage` and `teamrelay policy`: the catalog and its decisions, for operators."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from teamrelay.catalog.catalog import Catalog, Operation, load_catalog
from teamrelay.catalog.policy import Policy, PolicyError, load_policy

app = typer.Typer(add_completion=False, no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _load() -> tuple[Catalog, Policy]:
    catalog = load_catalog()
    try:
        return catalog, load_policy(catalog)
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _entry(op: Operation, policy: Policy) -> dict[str, Any]:
    decision = policy.decide(op)
    return {
        "method": op.method,
        "path": "/v1" + op.spec_path,
        "operation_id": op.operation_id,
        "family": op.family,
        "decision": decision.label,
        "surfaces": list(decision.surfaces),
    }


def _counts(ops: Iterable[Operation], policy: Policy) -> dict[str, Any]:
    surfaces: Counter[str] = Counter()
    families: dict[str, Counter[str]] = {}
    for op in ops:
        decision = policy.decide(op)
        keys = decision.surfaces if decision.decided and not decision.blocked else ()
        surfaces.update(keys or (decision.label,))
        families.setdefault(op.family, Counter())[decision.label] += 1
    order = ("blocked", "sdk", "proxy", "actions", "undecided")
    return {
        "surfaces": {name: surfaces[name] for name in order},
        "families": {f: dict(sorted(c.items())) for f, c in sorted(families.items())},
    }


@app.command()
def coverage(as_json: JsonFlag = False) -> None:
    """Every operation with its decision; exit code 1 if any is undecided."""
    catalog, policy = _load()
    spec_ops = [op for op in catalog.operations if op.source == "spec"]
    extra_ops = [op for op in catalog.operations if op.source != "spec"]
    undecided = policy.undecided
    if as_json:
        document = {
            "operations": [_entry(op, policy) for op in spec_ops],
            "extra_operations": [_entry(op, policy) for op in extra_ops],
            "counts": _counts(spec_ops, policy),
            "extra_counts": _counts(extra_ops, policy),
            "undecided": [op.operation_id for op in undecided],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_coverage(spec_ops, extra_ops, policy)
    if undecided:
        raise typer.Exit(1)


def _print_coverage(spec_ops: list[Operation], extra_ops: list[Operation], policy: Policy) -> None:
    console = Console()
    table = Table(title="Operations (spec, then SDK extras marked *)")
    for column in ("method", "path", "operationId", "family", "decision"):
        table.add_column(column)
    for op in (*spec_ops, *extra_ops):
        entry = _entry(op, policy)
        marker = "" if op.source == "spec" else "*"
        style = "red" if entry["decision"] == "undecided" else None
        table.add_row(
            op.method,
            marker + entry["path"],
            op.operation_id,
            op.family,
            entry["decision"],
            style=style,
        )
    console.print(table)
    counts = _counts((*spec_ops, *extra_ops), policy)
    families = Table(title="Per family")
    families.add_column("family")
    families.add_column("operations", justify="right")
    families.add_column("decisions")
    for family, labels in counts["families"].items():
        shown = ", ".join(f"{label} {n}" for label, n in labels.items())
        families.add_row(escape(family), str(sum(labels.values())), shown)
    console.print(families)
    surfaces = ", ".join(f"{name} {n}" for name, n in counts["surfaces"].items())
    console.print(
        f"{len(spec_ops)} spec operations + {len(extra_ops)} SDK extras; per surface: {surfaces}"
    )


@app.command("policy")
def show_policy(as_json: JsonFlag = False) -> None:
    """The effective policy (defaults, then $RELAY_POLICY_FILE) and what decided each part."""
    catalog, policy = _load()
    source = str(policy.path) if policy.path else "built-in defaults"
    if as_json:
        document = {
            "file": str(policy.path) if policy.path else None,
            "operations": {
                op.operation_id: {
                    "decision": policy.decide(op).label,
                    "source": policy.decide(op).source,
                }
                for op in catalog.operations
            },
        }
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console()
    console.print(f"Policy: {source}", markup=False)
    table = Table()
    for column in ("family", "decision", "decided by", "operations"):
        table.add_column(column)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for op in catalog.operations:
        decision = policy.decide(op)
        layer = decision.source.rsplit(" ", 1)[0] if decision.decided else "undecided"
        groups.setdefault((op.family, decision.label, layer), []).append(op.operation_id)
    for (family, label, layer), names in sorted(groups.items()):
        shown = ", ".join(names) if len(names) <= 4 else f"{len(names)} operations"
        table.add_row(escape(family), label, escape(layer), escape(shown))
    console.print(table)
