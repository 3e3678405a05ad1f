"""One request's account: gathered along the hot path, settled once in a `finally`.

Settling is synchronous (observers only enqueue), so it runs even when the request task is
cancelled, and a request that fails anywhere still leaves its ledger row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

from starlette.responses import Response

from teamrelay.body import RequestBody
from teamrelay.catalog import model_from_json
from teamrelay.errors import RelayError
from teamrelay.forward import Exchange
from teamrelay.keys.store import KeyRecord
from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.limits.billed import SHAPED_JSON_OPERATIONS
from teamrelay.tap.usage import ToolCall, Usage, tool_calls_of, usage_from

Observer = Callable[[LedgerEntry], None]
_NO_USAGE = (None, None, None, None, None)


@dataclass(slots=True)
class Ticket:
    method: str
    path: str
    request_id: bytes
    started: float
    key: KeyRecord | None = None
    operation: str | None = None
    body: bytes | RequestBody | None = None
    exchange: Exchange | None = None
    refusal: RelayError | None = None
    # The answer shows a model call an earlier row counted (a stored response fetched again).
    recounted: bool = False

    @classmethod
    def open(cls, method: str, path: str, request_id: bytes) -> Ticket:
        return cls(method, path, request_id, time.perf_counter())


_NO_EXCHANGE = Exchange()  # read only: a request refused before it went upstream


class Outcome(NamedTuple):
    """What a key's limits settle from, when nothing else needs the whole ledger entry."""

    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    model: str | None
    aborted: bool
    status: int
    usage_unknown: bool = False
    tools: tuple[ToolCall, ...] = ()
    audio: tuple[int, int] | None = None
    tier: str | None = None


def outcome_of(ticket: Ticket) -> Outcome:
    exchange = ticket.exchange or _NO_EXCHANGE
    usage, model = _tapped(ticket, exchange)
    tools = () if ticket.recounted else _tools(exchange)
    if usage is not None:  # then the status does not matter
        return Outcome(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
            model,
            exchange.aborted,
            exchange.status,
            tools=tools,
            audio=usage.audio,
            tier=_tier(exchange),
        )
    status, _ = _status_of(ticket, exchange)
    unknown = not ticket.recounted and _usage_unknown(exchange, status)
    return Outcome(None, None, None, model, exchange.aborted, status, unknown, tools)


def _tools(exchange: Exchange) -> tuple[ToolCall, ...]:
    return tool_calls_of(exchange.tap.tools) if exchange.tap is not None else ()


def _tier(exchange: Exchange) -> str | None:
    return exchange.tap.tier if exchange.tap is not None else None


def _usage_unknown(exchange: Exchange, status: int) -> bool:
    """A successful answer the tap should have read and could not: not "no usage"."""
    tap = exchange.tap
    return tap is not None and tap.unreadable and status < 400


def _status_of(ticket: Ticket, exchange: Exchange) -> tuple[int, str | None]:
    status, error_type = exchange.status, exchange.error_type
    if ticket.refusal is not None:  # the code the client got, else its type
        return ticket.refusal.status, ticket.refusal.code or ticket.refusal.kind
    if status == 0:
        return 499, error_type or "client_disconnected"
    if status >= 400 and error_type is None:
        return status, f"upstream_{status}"
    return status, error_type


def _tapped(ticket: Ticket, exchange: Exchange) -> tuple[Usage | None, str | None]:
    tap = exchange.tap
    if tap is None:
        return None, None
    return (None if ticket.recounted else tap.usage), tap.model


def entry_of(ticket: Ticket) -> LedgerEntry:
    exchange = ticket.exchange or _NO_EXCHANGE
    usage, model = _tapped(ticket, exchange)
    body = ticket.body
    if model is None and isinstance(body, bytes):
        model = model_from_json(body)
    status, error_type = _status_of(ticket, exchange)
    key = ticket.key
    ttfb = exchange.ttfb
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, audio = usage or _NO_USAGE
    return LedgerEntry(
        ts=datetime.now(UTC),
        relay_request_id=ticket.request_id.decode(),
        key_id=key.id if key else None,
        key_name=key.name if key else None,
        method=ticket.method,
        operation=ticket.operation,
        path=ticket.path[:1000],
        model=model,
        status=status,
        duration_ms=(time.perf_counter() - ticket.started) * 1000,
        ttfb_ms=ttfb * 1000 if ttfb is not None else None,
        bytes_in=_bytes_in(body),
        bytes_out=exchange.bytes_out,
        streamed=exchange.streamed,
        aborted=exchange.aborted,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        upstream_request_id=exchange.upstream_request_id,
        error_type=error_type,
        shaped_body=body
        if isinstance(body, bytes) and ticket.operation in SHAPED_JSON_OPERATIONS
        else None,
        usage_unknown=usage is None and not ticket.recounted and _usage_unknown(exchange, status),
        tools=() if ticket.recounted else _tools(exchange),
        audio=audio,
        tier=_tier(exchange),
    )


def _bytes_in(body: bytes | RequestBody | None) -> int:
    if body is None:
        return 0
    return len(body) if isinstance(body, bytes) else body.received


def wrapper_entry(
    ticket: Ticket, operation: str, answer: Response | None, *, counts_usage: bool = True
) -> LedgerEntry:
    """The row of an Actions wrapper call: its compact JSON answer names the model and usage.

    Without `counts_usage` the row leaves the usage out: another row counted that model call.
    """
    ticket.operation = operation
    entry = entry_of(ticket)
    if answer is None:
        return entry
    entry.status = answer.status_code
    entry.error_type = f"upstream_{answer.status_code}" if answer.status_code >= 400 else None
    body = bytes(getattr(answer, "body", b""))
    entry.bytes_out = len(body)
    try:
        document = json.loads(body) if body[:1] == b"{" else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        usage = usage_from(document.get("usage")) if counts_usage else None
        if usage is not None:
            entry.input_tokens, entry.output_tokens = usage.input_tokens, usage.output_tokens
            entry.cached_tokens, entry.reasoning_tokens = (
                usage.cached_tokens,
                usage.reasoning_tokens,
            )
            entry.audio = usage.audio
        if isinstance(document.get("model"), str):
            entry.model = document["model"]
    return entry


# Operations whose answer repeats a model call made earlier (a stored object fetched again).
_FETCHES: Final = frozenset({"getResponse", "cancelResponse"})
_NEVER_GENERATES: Final = frozenset({"getChatCompletion"})  # stored at create, never later
_SHOWN_AGAIN: Final = _FETCHES | _NEVER_GENERATES | {"createResponse"}
_COUNTED_KEPT: Final = 10_000


class CountedOnce:
    """One usage per model call. A response's usage shows in its create answer or, when it ran
    in the background, in any number of fetches (`GET /v1/responses/{id}`, getAnswer): the
    first row that shows it counts it. Kept per process for the newest 10,000 responses: a
    second relay process, or a restart, does not know what this one counted."""

    def __init__(self, kept: int = _COUNTED_KEPT) -> None:
        self._ids: dict[str, None] = {}
        self._kept = kept

    def first(self, response_id: str) -> bool:
        """Whether no row has counted `response_id`'s usage yet; from now on one has."""
        if response_id in self._ids:
            return False
        if len(self._ids) >= self._kept:
            del self._ids[next(iter(self._ids))]
        self._ids[response_id] = None
        return True

    def recounts(self, ticket: Ticket) -> bool:
        """Whether this request's answer shows usage an earlier row counted."""
        operation = ticket.operation
        if operation not in _SHOWN_AGAIN:
            return False
        exchange = ticket.exchange
        tap = exchange.tap if exchange is not None else None
        if tap is None or tap.usage is None:
            return False
        if operation in _NEVER_GENERATES:
            return True
        return tap.object_id is not None and not self.first(tap.object_id)
