"""Frames on the Responses WebSocket, each `response.create` taken as one createResponse.

Over HTTP every response is its own request and passes the request path's steps in
`Relay.serve`; over the socket many responses share one connection, so each frame passes the
same steps, with the same components, here: the model allowlist, the key's rate limits and
budgets (admitted before the frame goes upstream, settled from that response's own usage when
it ends), isolation (every id any frame names; the response it creates recorded for the key),
and a ledger row per response. A refused frame never reaches the upstream: the client gets an
`error` event, as the API sends for a bad frame, and the socket stays open.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from teamrelay.catalog import Operation
from teamrelay.errors import RelayError
from teamrelay.keys.store import KeyRecord
from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.limits.gate import Admitted
from teamrelay.tap.usage import tool_calls_in, usage_from

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

_ENDED = frozenset({"response.completed", "response.failed", "response.incomplete"})
_TOLD = tuple(f'"{kind}"' for kind in (*_ENDED, "response.created", "error"))
_PATH = "/responses"


@dataclass(slots=True)
class _Pending:
    """A `response.create` sent upstream, until its response ends."""

    body: bytes
    admitted: Admitted | None
    started: float
    stamp: datetime
    response_id: str | None = None


class ResponseFrames:
    def __init__(
        self, relay: Relay, key: KeyRecord | None, request_id: str, upstream_id: str | None
    ) -> None:
        self.relay = relay
        self.key = key
        self.operation: Operation = relay.router.route("POST", _PATH)
        self.request_id = request_id
        self.upstream_id = upstream_id
        self.count = 0
        self._pending: deque[_Pending] = deque()

    async def admit(self, text: str | None) -> str | None:
        """None when the frame may go upstream; else the `error` event to answer it with."""
        try:
            await self._admit(text)
        except RelayError as error:
            event = {"type": "error", "status": error.status, **json.loads(error.body())}
            return json.dumps(event)
        return None

    async def _admit(self, text: str | None) -> None:
        if text is None:
            raise RelayError(400, "Send JSON text frames on this socket.", code="invalid_frame")
        data = text.encode()
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            raise RelayError(400, "The frame is not valid JSON.", code="invalid_json") from None
        if not isinstance(event, dict):
            raise RelayError(400, "The frame must be a JSON object.", code="invalid_frame")
        relay, key, operation = self.relay, self.key, self.operation
        creates = event.get("type") == "response.create"
        if creates and not relay.router.allowlist.is_open:
            relay.router.check_model(operation, data)
        admitted = None
        if creates and key is not None and key.limits:
            admitted = await relay.limits.admit(key, operation, data)
        try:
            if key is not None and relay.isolation.confines(key):
                await relay.isolation.check(key.id, operation, _PATH, data)
        except RelayError:
            if admitted is not None:
                relay.limits.release(admitted)
            raise
        if creates:
            self._pending.append(_Pending(data, admitted, time.perf_counter(), datetime.now(UTC)))

    def observe(self, text: str) -> None:
        """Reads an upstream event: a response created, ended, or a create refused."""
        if not self._pending or not any(told in text for told in _TOLD):
            return
        event = _event(text)
        kind = event.get("type")
        pending = self._pending[0]
        if kind == "response.created":
            response = event.get("response")
            object_id = response.get("id") if isinstance(response, dict) else None
            if isinstance(object_id, str) and self.key is not None:
                pending.response_id = object_id
                self.relay.isolation.remember(
                    self.key, self.operation, _PATH, pending.body, object_id
                )
        elif kind in _ENDED:
            self._settle(self._pending.popleft(), 200, event.get("response"))
        elif kind == "error" and pending.response_id is None:
            status = event.get("status")
            self._settle(self._pending.popleft(), status if isinstance(status, int) else 400)

    def close(self) -> None:
        """The socket ended: responses still running were cut off, and generation is billed."""
        while self._pending:
            self._settle(self._pending.popleft(), 200, None, aborted=True)

    def _settle(
        self, pending: _Pending, status: int, response: object = None, *, aborted: bool = False
    ) -> None:
        self.count += 1
        found = response if isinstance(response, dict) else {}
        usage = usage_from(found.get("usage"))
        model = found.get("model")
        key = self.key
        entry = LedgerEntry(
            ts=pending.stamp,
            relay_request_id=f"{self.request_id}-{self.count}",
            key_id=key.id if key is not None else None,
            key_name=key.name if key is not None else None,
            method="WS",
            operation=self.operation.operation_id,
            path="/v1/responses",
            model=model if isinstance(model, str) else None,
            status=status,
            duration_ms=(time.perf_counter() - pending.started) * 1000,
            ttfb_ms=None,
            bytes_in=len(pending.body),
            bytes_out=0,
            streamed=True,
            aborted=aborted,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            upstream_request_id=self.upstream_id,
            error_type=None if status < 400 else f"upstream_{status}",
            usage_unknown=usage is None and status < 400 and not aborted,
            tools=tool_calls_in(found),
        )
        self.relay.settle(entry, pending.admitted)


def _event(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
