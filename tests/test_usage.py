"""Usage aggregates against totals computed independently from the same entries."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from teamrelay.ledger.cli import db_app, usage
from teamrelay.ledger.prices import load_prices
from teamrelay.ledger.recorder import LedgerEntry, Recorder
from teamrelay.ledger.usage import By, parse_duration, parse_since, usage_report

PRICES = load_prices()
NOW = datetime.now(UTC)
KEYS = [("k_alice", "alice"), ("k_bob", "bob"), ("k_carol", "carol"), (None, None)]
MODELS = ["gpt-5-mini-2025-08-07", "gpt-4o", "gpt-4.1-nano", "in-house-model", None]
OPERATIONS = ["createResponse", "createChatCompletion", "createEmbedding", "createFile", None]
COUNTS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def make_entries(count: int = 400, seed: int = 5) -> list[LedgerEntry]:
    rng = random.Random(seed)
    entries = []
    for n in range(count):
        key_id, key_name = rng.choice(KEYS)
        has_usage = rng.random() < 0.8
        input_tokens = rng.randint(0, 5_000) if has_usage else None
        entries.append(
            LedgerEntry(
                ts=NOW - timedelta(days=rng.uniform(0, 10)),
                relay_request_id=f"req_{n}",
                key_id=key_id,
                key_name=key_name,
                method=rng.choice(["GET", "POST"]),
                operation=rng.choice(OPERATIONS),
                path="/v1/x",
                model=rng.choice(MODELS),
                status=rng.choice([200, 200, 200, 400, 500]),
                duration_ms=rng.uniform(1, 900),
                ttfb_ms=rng.uniform(1, 50),
                bytes_in=rng.randint(0, 10_000),
                bytes_out=rng.randint(0, 10_000),
                streamed=rng.random() < 0.5,
                aborted=rng.random() < 0.1,
                input_tokens=input_tokens,
                output_tokens=rng.randint(0, 2_000) if has_usage else None,
                cached_tokens=rng.randint(0, input_tokens) if input_tokens else None,
                reasoning_tokens=rng.randint(0, 500) if has_usage else None,
                upstream_request_id=None,
                error_type=None,
            )
        )
    return entries


ENTRIES = make_entries()

GROUPERS: dict[By, Callable[[LedgerEntry], str | None]] = {
    By.key: lambda e: e.key_id,
    By.model: lambda e: e.model,
    By.operation: lambda e: e.operation,
    By.day: lambda e: e.ts.astimezone(UTC).date().isoformat(),
}


def expected(by: By, since: datetime | None) -> tuple[dict[str | None, dict[str, Any]], dict]:
    groups: dict[str | None, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "cost_usd": 0.0} | dict.fromkeys(COUNTS, 0)
    )
    total: dict[str, Any] = {"requests": 0, "cost_usd": 0.0} | dict.fromkeys(COUNTS, 0)
    for entry in ENTRIES:
        if since is not None and entry.ts < since:
            continue
        cost = PRICES.cost(
            entry.model, entry.input_tokens, entry.output_tokens, entry.cached_tokens
        )
        for sums in (groups[GROUPERS[by](entry)], total):
            sums["requests"] += 1
            for name in COUNTS:
                sums[name] += getattr(entry, name) or 0
            sums["cost_usd"] += cost or 0.0
    return dict(groups), total


def assert_sums_equal(found: dict[str, Any], wanted: dict[str, Any]) -> None:
    assert {k: found[k] for k in ("requests", *COUNTS)} == {
        k: wanted[k] for k in ("requests", *COUNTS)
    }
    assert found["cost_usd"] == pytest.approx(wanted["cost_usd"], abs=1e-5)


@pytest.fixture
async def ledger(engine: AsyncEngine, db_url: str) -> str:
    recorder = Recorder(engine, PRICES, batch_size=128)
    await recorder.start()
    for entry in ENTRIES:
        recorder.record(entry)
    await recorder.stop()
    assert recorder.written == len(ENTRIES)
    return db_url


@pytest.mark.parametrize("by", list(By))
@pytest.mark.parametrize("since", [None, "7d"])
async def test_report_groups_and_total_match_independent_sums(
    engine: AsyncEngine, ledger: str, by: By, since: str | None
) -> None:
    start = parse_since(since) if since else None
    report = await usage_report(engine, by=by, since=start)
    wanted_groups, wanted_total = expected(by, start)
    found = report.to_dict()
    assert_sums_equal(found["total"], wanted_total)
    column = "key_id" if by is By.key else by.value
    assert {group[column] for group in found["groups"]} == set(wanted_groups)
    for group in found["groups"]:
        assert_sums_equal(group, wanted_groups[group[column]])


async def test_report_by_key_names_each_key(engine: AsyncEngine, ledger: str) -> None:
    report = await usage_report(engine, by=By.key)
    assert {(g.group, g.label) for g in report.groups} == set(KEYS)


async def test_report_by_day_is_in_date_order(engine: AsyncEngine, ledger: str) -> None:
    days = [group.group for group in (await usage_report(engine, by=By.day)).groups]
    assert days == sorted(days)
    assert len(days) in (10, 11)


async def test_an_empty_ledger_reports_zero_totals(engine: AsyncEngine) -> None:
    report = (await usage_report(engine, by=By.model)).to_dict()
    assert report["groups"] == []
    assert report["total"] == {"requests": 0, "cost_usd": 0.0} | dict.fromkeys(COUNTS, 0)


def test_durations_and_dates_parse_as_periods() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("24h", now=now) == now - timedelta(hours=24)
    assert parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    for bad in ("7", "seven days", "-3d", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_since(bad)
    for too_far in ("99999999d", "9" * 5000 + "d", "0001-01-01T00:00+05:00"):
        with pytest.raises(ValueError, match=r"year 1|years 1 to 9999"):
            parse_since(too_far)
    assert parse_since("2026-11-01T05:00+05:00") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T05:00+05:00").tzinfo is UTC


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(db_app, name="db")
    app.command("usage")(usage)
    return app


def run_cli(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli(), list(args), env={"RELAY_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_usage_by_key_matches_independent_totals(ledger: str) -> None:
    report = json.loads(run_cli(ledger, "usage", "--since", "7d", "--by", "key", "--json"))
    since = datetime.fromisoformat(report["since"])
    wanted_groups, wanted_total = expected(By.key, since)
    assert_sums_equal(report["total"], wanted_total)
    assert len(report["groups"]) == len(wanted_groups)
    for group in report["groups"]:
        assert_sums_equal(group, wanted_groups[group["key_id"]])


def test_cli_usage_csv_has_a_row_per_group_and_the_total(ledger: str) -> None:
    rows = list(csv.DictReader(io.StringIO(run_cli(ledger, "usage", "--by", "model", "--csv"))))
    wanted_groups, wanted_total = expected(By.model, parse_since("7d"))
    assert len(rows) == len(wanted_groups) + 1
    total = rows[-1]
    assert total["model"] == "(total)"
    assert int(total["requests"]) == wanted_total["requests"]
    assert int(total["input_tokens"]) == wanted_total["input_tokens"]
    assert float(total["cost_usd"]) == pytest.approx(wanted_total["cost_usd"], abs=1e-5)


def test_cli_usage_table_shows_the_total(ledger: str) -> None:
    shown = run_cli(ledger, "usage", "--by", "day", "--since", "30d")
    _, wanted_total = expected(By.day, None)
    assert "total" in shown
    assert f"{wanted_total['requests']:,}" in shown


@pytest.mark.parametrize("since", ["soon", "99999999d", "999999999999w", "0001-01-01T00:00+05:00"])
def test_cli_usage_refuses_a_bad_period(ledger: str, since: str) -> None:
    result = CliRunner().invoke(
        cli(), ["usage", "--since", since], env={"RELAY_DATABASE_URL": ledger}
    )
    assert result.exit_code == 2
    assert "--since" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_db_upgrade_brings_a_new_database_to_head(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'relay.db'}"
    result = CliRunner().invoke(cli(), ["db", "upgrade"], env={"RELAY_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert (tmp_path / "new" / "relay.db").exists()
