"""Metrics.record: a batch of entries gives exact per-request counts, token sums and cost."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from teamrelay.ledger.prices import load_prices
from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.observability.metrics import Metrics

MODEL = "gpt-4.1"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(**changes: Any) -> LedgerEntry:
    base = LedgerEntry(
        ts=T0,
        relay_request_id="req_relay_0",
        key_id="k1",
        key_name="alice",
        method="POST",
        operation="createChatCompletion",
        path="/v1/chat/completions",
        model=MODEL,
        status=200,
        duration_ms=20.0,
        ttfb_ms=5.0,
        bytes_in=100,
        bytes_out=1_000,
        streamed=False,
        aborted=False,
        input_tokens=None,
        output_tokens=None,
        cached_tokens=None,
        reasoning_tokens=None,
        upstream_request_id=None,
        error_type=None,
    )
    return dataclasses.replace(base, **changes)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_mixed_batch_gives_exact_counts_token_sums_and_cost() -> None:
    run = secrets.token_hex(4)
    chat, files = f"createChatCompletion_{run}", f"retrieveFile_{run}"
    alice, bob = f"alice-{run}", f"bob-{run}"
    prices = load_prices(None)
    assert prices.lookup(MODEL) is not None
    batch = [
        entry(
            operation=chat,
            key_name=alice,
            input_tokens=100,
            output_tokens=50,
            cached_tokens=20,
            reasoning_tokens=5,
        ),
        entry(
            operation=chat,
            key_name=alice,
            input_tokens=10,
            output_tokens=3,
            cached_tokens=40,
            ttfb_ms=None,
        ),
        entry(operation=chat, key_name=bob, input_tokens=7, output_tokens=9, reasoning_tokens=2),
        entry(operation=chat, key_name=alice, status=404, model=None, error_type="upstream_404"),
        entry(operation=files, key_name=alice, status=404, model=None, method="GET"),
        entry(operation=files, key_name=bob, status=404, model=None, method="GET", ttfb_ms=None),
        entry(operation=files, key_name=bob, status=200, model=None, method="GET"),
    ]
    cost = {alice: 0.0, bob: 0.0}
    for one in batch:
        priced = prices.cost(one.model, one.input_tokens, one.output_tokens, one.cached_tokens)
        if priced is not None:
            assert one.key_name is not None
            cost[one.key_name] += priced
    assert cost[alice] > 0
    assert cost[bob] > 0

    def requests(operation: str, status: str, key: str) -> dict[str, str]:
        return {"operation": operation, "status": status, "key": key}

    def tokens(kind: str, key: str) -> dict[str, str]:
        return {"kind": kind, "model": MODEL, "key": key}

    expected: list[tuple[str, dict[str, str], float]] = [
        ("teamrelay_requests_total", requests(chat, "200", alice), 2),
        ("teamrelay_requests_total", requests(chat, "200", bob), 1),
        ("teamrelay_requests_total", requests(chat, "404", alice), 1),
        ("teamrelay_requests_total", requests(files, "404", alice), 1),
        ("teamrelay_requests_total", requests(files, "404", bob), 1),
        ("teamrelay_requests_total", requests(files, "200", bob), 1),
        ("teamrelay_requests_total", requests(files, "200", alice), 0),
        ("teamrelay_tokens_total", tokens("input", alice), 110),
        ("teamrelay_tokens_total", tokens("output", alice), 53),
        ("teamrelay_tokens_total", tokens("cached", alice), 60),
        ("teamrelay_tokens_total", tokens("reasoning", alice), 5),
        ("teamrelay_tokens_total", tokens("input", bob), 7),
        ("teamrelay_tokens_total", tokens("output", bob), 9),
        ("teamrelay_tokens_total", tokens("cached", bob), 0),
        ("teamrelay_tokens_total", tokens("reasoning", bob), 2),
        ("teamrelay_cost_usd_total", {"model": MODEL, "key": alice}, cost[alice]),
        ("teamrelay_cost_usd_total", {"model": MODEL, "key": bob}, cost[bob]),
        ("teamrelay_cost_usd_total", {"model": "none", "key": alice}, 0),
        ("teamrelay_cost_usd_total", {"model": "none", "key": bob}, 0),
        ("teamrelay_request_duration_seconds_count", {"operation": chat}, 4),
        ("teamrelay_request_duration_seconds_count", {"operation": files}, 3),
        ("teamrelay_upstream_ttfb_seconds_count", {"operation": chat}, 3),
        ("teamrelay_upstream_ttfb_seconds_count", {"operation": files}, 2),
    ]
    before = [sample(name, labels) for name, labels, _ in expected]
    Metrics(prices, lambda: 0).record(batch)
    after = [sample(name, labels) for name, labels, _ in expected]
    for (name, labels, want), old, new in zip(expected, before, after, strict=True):
        assert new - old == pytest.approx(want, rel=1e-12), (name, labels)


def test_cached_tokens_beyond_the_input_are_priced_as_the_input_per_request() -> None:
    key = f"carol-{secrets.token_hex(4)}"
    prices = load_prices(None)
    batch = [
        entry(key_name=key, input_tokens=1_000, output_tokens=0, cached_tokens=0),
        entry(key_name=key, input_tokens=10, output_tokens=0, cached_tokens=900),
    ]
    per_request = sum(
        prices.cost(MODEL, one.input_tokens, one.output_tokens, one.cached_tokens) or 0.0
        for one in batch
    )
    pooled = prices.cost(MODEL, 1_010, 0, 900)
    assert pooled != pytest.approx(per_request)
    labels = {"model": MODEL, "key": key}
    before = sample("teamrelay_cost_usd_total", labels)
    Metrics(prices, lambda: 0).record(batch)
    after = sample("teamrelay_cost_usd_total", labels)
    assert after - before == pytest.approx(per_request, rel=1e-12)
