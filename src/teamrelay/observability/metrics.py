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
_TOKEN_KINDS = ("input", "output", "cached", "reasoning")

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
USAGE_UNKNOWN = Counter(
    "teamrelay_usage_unknown",
    "Answers whose usage could not be read; their reservation was kept as the spend.",
    ["operation"],
)
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
        """Counters are summed over the batch first, so a label set costs one `inc` per batch
        rather than one per request; histograms still observe every request."""
        requests: dict[tuple[str, int, str], int] = {}
        tokens: dict[tuple[str | None, str], list[int]] = {}
        timings: dict[str, tuple[Callable[[float], None], Callable[[float], None]]] = {}
        for entry in entries:
            operation = entry.operation or "none"
            key = entry.key_name or "none"
            label = (operation, entry.status, key)
            requests[label] = requests.get(label, 0) + 1
            observe = timings.get(operation)
            if observe is None:
                observe = timings[operation] = self._observers(operation)
            observe[0](entry.duration_ms / 1000)
            if entry.ttfb_ms is not None:
                observe[1](entry.ttfb_ms / 1000)
            if entry.usage_unknown:
                self._child(USAGE_UNKNOWN, operation).inc()
            if entry.error_type in _UPSTREAM_ERRORS:
                self._child(UPSTREAM_ERRORS, _UPSTREAM_ERRORS[entry.error_type]).inc()
            if entry.input_tokens is not None or entry.output_tokens is not None:
                sums = tokens.get((entry.model, key))
                if sums is None:
                    sums = tokens[(entry.model, key)] = [0, 0, 0, 0, 0]
                used_in = entry.input_tokens or 0
                cached = entry.cached_tokens or 0
                sums[0] += used_in
                sums[1] += entry.output_tokens or 0
                sums[2] += cached
                sums[3] += entry.reasoning_tokens or 0
                sums[4] += min(cached, used_in)  # what the price table counts as cached
        for (operation, status, key), count in requests.items():
            self._child(REQUESTS, operation, str(status), key).inc(count)
        for (model, key), sums in tokens.items():
            self._tokens(model, key, sums)

    def _observers(self, operation: str) -> tuple[Callable[[float], None], Callable[[float], None]]:
        return self._child(DURATION, operation).observe, self._child(TTFB, operation).observe

    def _tokens(self, model: str | None, key: str, sums: list[int]) -> None:
        label = model or "none"
        for kind, count in zip(_TOKEN_KINDS, sums[:4], strict=True):
            if count:
                self._child(TOKENS, kind, label, key).inc(count)
        # Exact: with cached tokens clamped per request, the price of the sums is the sum
        # of the prices.
        cost = self._prices.cost(model, sums[0], sums[1], sums[4])
        if cost:
            self._child(COST, label, key).inc(cost)

    def exposition(self) -> tuple[bytes, str]:
        QUEUE.set(self._queue_depth())
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(), CONTENT_TYPE_LATEST
