"""Prometheus metrics, fed from ledger entries in batches (see `feed`).

With several workers, set PROMETHEUS_MULTIPROC_DIR (`teamrelay serve --workers N` does) and
every worker writes to shared files that any worker's `/metrics` aggregates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from teamrelay.ledger.prices import Prices
from teamrelay.ledger.recorder import LedgerEntry

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_UPSTREAM_ERRORS = {
    "upstream_error": "unreachable",
    "upstream_timeout": "timeout",
    "upstream_broke": "broke_mid_stream",
}

REQUESTS = Counter("teamrelay_requests", "Requests handled on /v1.", ["operation", "status", "key"])
DURATION = Histogram(
    "teamrelay_request_duration_seconds",
    "Whole request, first byte in to last byte out.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
TTFB = Histogram(
    "teamrelay_upstream_ttfb_seconds",
    "Upstream time to response head.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("teamrelay_tokens", "Tokens reported by the upstream.", ["kind", "model", "key"])
COST = Counter("teamrelay_cost_usd", "Estimated cost from the price table.", ["model", "key"])
UPSTREAM_ERRORS = Counter("teamrelay_upstream_errors", "Upstream failures by kind.", ["kind"])
STREAMS = Gauge(
    "teamrelay_streams_in_flight", "Streamed answers being relayed.", multiprocess_mode="livesum"
)
QUEUE = Gauge(
    "teamrelay_ledger_queue_depth", "Ledger rows not yet written.", multiprocess_mode="livesum"
)


class Metrics:
    def __init__(self, prices: Prices, queue_depth: Callable[[], int]) -> None:
        self._prices = prices
        self._queue_depth = queue_depth
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """`labels()` costs microseconds; a dict of the children already made does not."""
        child = self._children.get((metric, *labels))
        if child is None:
            child = self._children[(metric, *labels)] = metric.labels(*labels)
        return child

    def record(self, entries: Sequence[LedgerEntry]) -> None:
        child = self._child
        for entry in entries:
            operation = entry.operation or "none"
            key = entry.key_name or "none"
            child(REQUESTS, operation, str(entry.status), key).inc()
            child(DURATION, operation).observe(entry.duration_ms / 1000)
            if entry.ttfb_ms is not None:
                child(TTFB, operation).observe(entry.ttfb_ms / 1000)
            kind = _UPSTREAM_ERRORS.get(entry.error_type or "")
            if kind is not None:
                child(UPSTREAM_ERRORS, kind).inc()
            if entry.input_tokens is not None or entry.output_tokens is not None:
                self._tokens(entry, key)

    def _tokens(self, entry: LedgerEntry, key: str) -> None:
        model = entry.model or "none"
        counts = (
            ("input", entry.input_tokens),
            ("output", entry.output_tokens),
            ("cached", entry.cached_tokens),
            ("reasoning", entry.reasoning_tokens),
        )
        for kind, count in counts:
            if count:
                self._child(TOKENS, kind, model, key).inc(count)
        cost = self._prices.cost(
            entry.model, entry.input_tokens, entry.output_tokens, entry.cached_tokens
        )
        if cost:
            self._child(COST, model, key).inc(cost)

    def exposition(self) -> tuple[bytes, str]:
        QUEUE.set(self._queue_depth())
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(), CONTENT_TYPE_LATEST
