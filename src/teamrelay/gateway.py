"""The relay's ASGI entry: the `/v1` hot path as a plain ASGI handler, the rest to FastAPI.

A framework on the hot path halved requests/s in DESIGN.md's measurements, so `/v1` requests
that are not relay-local routes are handled here with no middleware stack: one pass over the
headers, auth, the catalog, admission, limits, isolation, then `forward`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from random import getrandbits
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from teamrelay.accounting import CountedOnce, Observer, Ticket, entry_of, outcome_of
from teamrelay.admission import Admission, RequestHead
from teamrelay.body import RequestBody
from teamrelay.catalog import Operation, parse_envelope
from teamrelay.config import Settings
from teamrelay.errors import RelayError, gateway_timeout, unauthorized
from teamrelay.forward import Call, forward
from teamrelay.headers import REQUEST_ID, UpstreamHeaders
from teamrelay.isolation import Isolation, Owners
from teamrelay.isolation.owned import DERIVED_FROM
from teamrelay.keys.store import KeyRecord, KeyStore
from teamrelay.ledger.db import create_engine, upgrade
from teamrelay.ledger.prices import load_prices
from teamrelay.ledger.recorder import LedgerEntry, Recorder
from teamrelay.limits import Admitted, Budgets, Clock, Limits, RateLimits, system_clock
from teamrelay.oauth.store import ACCESS_PREFIX
from teamrelay.oauth.tokens import OAuthTokens
from teamrelay.observability.feed import Feed, Sink
from teamrelay.observability.logs import write_request_lines
from teamrelay.observability.metrics import Metrics
from teamrelay.routing import Router
from teamrelay.tap import inject_include_usage
from teamrelay.upstream import Upstream

logger = logging.getLogger("teamrelay")

LOCAL_V1_PATHS = frozenset(
    {"/v1/health", "/v1/actions/ping", "/v1/actions/relay_info", "/v1/manifest"}
)
PROXY_PATH = "/v1/proxy"
# Streams whose token usage OpenAI reports only when asked: the relay asks, then hides it.
_USAGE_OPT_IN = frozenset({"createChatCompletion", "createCompletion"})
# Headers that describe the client's own body: wrong for the body the envelope stands for.
_ENVELOPE_HEADERS = frozenset({b"content-type", b"content-length", b"accept-encoding"})


async def _no_local_routes(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("Relay.local was not set")


async def _no_websockets(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "websocket.close", "code": 1008})


def _without_accept_encoding(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """For answers the relay must read or edit: ask the upstream for them uncompressed."""
    return [h for h in headers if h[0] != b"accept-encoding"]


def _tune_garbage_collector() -> None:
    """Measured: CPython's default thresholds (700, 10, 10) spent about a fifth of the relay's
    time in collections at load, scanning the long-lived objects of the app and its libraries
    again and again. Freeze what start-up made, and collect the young generation less often
    (requests make few reference cycles). 5,925 -> 7,621 requests/s in the bench harness."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def new_request_id() -> bytes:
    """A correlation id, never a credential: `random` is enough, and unlike `secrets` it
    costs no system call per request."""
    return b"req_relay_%024x" % getrandbits(96)


def require_scope(key: KeyRecord | None, scope: str) -> None:
    """Refuses a key without `scope` (None, auth disabled, holds every scope)."""
    if key is not None and scope not in key.scopes:
        raise RelayError(
            403, f"This relay key lacks the '{scope}' scope.", code="insufficient_scope"
        )


class Relay:
    """The hot path, and the parts the relay's own routes share with it (`local` is set by
    `app.create_app` once those routes are built around this object)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.local: ASGIApp = _no_local_routes
        self.websocket: ASGIApp = _no_websockets
        self.upstream = Upstream(settings)
        self.upstream_headers = UpstreamHeaders(
            settings.openai_api_key.get_secret_value(),
            organization=settings.openai_organization,
            project=settings.openai_project,
            beta=settings.openai_beta,
        )
        self.router = Router(policy_file=settings.policy_file, allowlist=settings.model_allowlist)
        self.admission = Admission(settings, self.router)
        self.engine = create_engine(settings.database_url)
        self.keys = KeyStore(self.engine, bootstrap=settings.relay_keys)
        prices = load_prices(settings.prices_file)
        self.recorder = Recorder(self.engine, prices)
        clock = clock or system_clock(settings.test_clock_offset)
        self.tokens = OAuthTokens(self.engine, self.keys, clock)
        budgets = Budgets(self.engine, clock)
        self.limits = Limits(
            RateLimits(settings.redis_url),
            budgets,
            prices,
            settings.default_output_tokens,
            allow_unpriced=settings.unpriced == "allow",
        )
        self.isolation = Isolation(
            Owners(self.engine),
            self.router.catalog,
            per_key=settings.isolation == "per_key",
            upstream=self.upstream,
            headers=self.upstream_headers,
        )
        self.metrics = Metrics(prices, lambda: self.recorder.queue_depth)
        sinks: list[Sink] = []
        if settings.metrics_enabled:
            sinks.append(self.metrics.record)
        if settings.request_log_enabled:
            sinks.append(write_request_lines)
        self.feed = Feed(sinks)
        self.observers: list[Observer] = [self.feed] if sinks else []
        self.counted = CountedOnce()
        if settings.ledger_enabled:
            self.observers.append(self.recorder.record)
        # With nothing recording usage, answers are read only where isolation needs their id.
        self.reads_usage = bool(self.observers)
        self.startup: list[Callable[[], Awaitable[None]]] = [
            self._migrate,
            self.keys.start,
            self.recorder.start,
            budgets.start,
            self.isolation.owners.start,
            self.feed.start,
            self.upstream.start,
        ]
        self.shutdown: list[Callable[[], Awaitable[None]]] = [
            self.engine.dispose,
            self.isolation.owners.stop,
            budgets.stop,
            self.limits.rates.close,
            self.recorder.stop,
            self.feed.stop,
            self.upstream.close,
        ]

    async def _migrate(self) -> None:
        await upgrade(self.settings.database_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") and path not in LOCAL_V1_PATHS:
                await self.relay(scope, receive, send)
            else:
                await self.local(scope, receive, self._with_request_id(scope, send))
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"].startswith("/v1/"):
            await self.websocket(scope, receive, send)
        else:
            await self.local(scope, receive, send)

    async def relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = RequestHead.parse(scope["headers"])
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        ticket = Ticket.open(
            scope["method"], raw_path.decode("latin-1"), head.request_id or new_request_id()
        )

        async def adapt() -> tuple[Call, Operation, str]:
            ticket.key = await self.identify(head)  # on the row also when refused for scope
            require_scope(ticket.key, "api")
            if scope["path"] == PROXY_PATH:
                return await self._proxy_call(scope, receive, head, ticket)
            return await self.http_call(scope, receive, head, ticket)

        await self.serve(ticket, adapt, receive, send)

    async def serve(
        self,
        ticket: Ticket,
        adapt: Callable[[], Awaitable[tuple[Call, Operation, str]]],
        receive: Receive,
        send: Send,
        *,
        accounted: bool = True,
        deadline: float | None = None,
    ) -> None:
        """The request path's steps, the same for every surface: `adapt` turns the surface's
        request into one upstream call, its catalog operation and its clean path (and sets
        `ticket.key` unless the surface already did); then limits, isolation, forward and
        the ledger row run here, once. Every answer and refusal goes to `send`. Without
        `accounted` the caller keeps the key's limits and the ledger row for a larger whole
        (an Actions wrapper making several calls for one Action). A `deadline` (loop time)
        ends the exchange with a 504 that the ledger row records."""
        operation: Operation | None = None
        path = ""
        admitted: Admitted | None = None
        try:
            call, operation, path = await adapt()
            key = ticket.key
            if key is not None:
                if accounted and key.limits:
                    admitted = await self.limits.admit(key, operation, ticket.body, call.headers)
                confined = self.isolation.confines(key)
                if confined:
                    charge = partial(self.limits.count_requests, key)  # isolation's own calls
                    await self.isolation.check(key.id, operation, path, ticket.body, charge)
                    query = call.target.partition("?")[2]
                    if query:
                        await self.isolation.check_query(key.id, query)
                    if self.isolation.lists(operation):
                        ticket.exchange = await self.isolation.list_owned(
                            self.upstream, call, key.id, operation, send, charge
                        )
                        return
                if operation.operation_id in DERIVED_FROM:
                    call.rewrite = await self.isolation.learner(key, operation, path, confined)
                    call.headers = _without_accept_encoding(call.headers)
            if not (
                self.reads_usage
                or admitted is not None
                or self.isolation.records(operation, ticket.body)
            ):
                call.reads = False
            if deadline is None:
                ticket.exchange = await forward(self.upstream, call, receive, send)
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        ticket.exchange = await forward(self.upstream, call, receive, send)
                except TimeoutError:
                    raise gateway_timeout("within the caller's time budget") from None
        except RelayError as error:
            ticket.refusal = error
            await error.send(send, [(REQUEST_ID, ticket.request_id)])
        finally:
            if accounted:
                ticket.recounted = self.counted.recounts(ticket)
            if accounted and self.observers:
                self.settle(entry_of(ticket), admitted)
            elif admitted is not None:
                self.limits.settle(admitted, outcome_of(ticket))
            if operation is not None and ticket.exchange is not None:
                self.isolation.record(ticket.key, operation, path, ticket.body, ticket.exchange)

    async def http_call(
        self, scope: Scope, receive: Receive, head: RequestHead, ticket: Ticket
    ) -> tuple[Call, Operation, str]:
        """A `/v1` request as the call it makes upstream; the wrappers adapt theirs to it."""
        method = ticket.method
        path = ticket.path[3:]
        operation = self.router.route(method, path)
        ticket.operation = operation.operation_id
        reads_ids = self.isolation.confines(ticket.key)
        body = ticket.body = await self.admission.body(
            head, operation, receive, reads_ids=reads_ids
        )
        target = path
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        client_headers = scope["headers"]
        rewrite = None
        strip_usage = False
        if operation.operation_id == "listModels" and not self.router.allowlist.is_open:
            rewrite = self.router.allowlist.filter_models_list
            client_headers = _without_accept_encoding(client_headers)
        elif (
            self.reads_usage and operation.operation_id in _USAGE_OPT_IN and isinstance(body, bytes)
        ):
            injected = inject_include_usage(body) if b'"stream"' in body else None
            if injected is not None:
                body, strip_usage = injected, True
                client_headers = _without_accept_encoding(client_headers)
        headers = self.upstream_headers.build(
            client_headers, keep_length=isinstance(body, RequestBody)
        )
        call = Call(method, target, headers, body, ticket.request_id, rewrite, strip_usage)
        return call, operation, path

    async def _proxy_call(
        self, scope: Scope, receive: Receive, head: RequestHead, ticket: Ticket
    ) -> tuple[Call, Operation, str]:
        """The seed's `/v1/proxy` envelope: one allowlisted JSON call, for GPT Actions."""
        if scope["method"] != "POST":
            allow = ((b"allow", b"POST"),)
            raise RelayError(
                405, "Use POST for /v1/proxy.", code="method_not_allowed", headers=allow
            )
        envelope = await self.admission.json_body(head, receive)
        return self.envelope_call(envelope, scope["headers"], ticket)

    def envelope_call(
        self,
        envelope: bytes | Mapping[str, Any],
        client_headers: list[tuple[bytes, bytes]],
        ticket: Ticket,
    ) -> tuple[Call, Operation, str]:
        """A `{method, path, query, body}` envelope (`/v1/proxy`, the Actions `callOpenAI`,
        its MCP tool) as one upstream call: the operation is resolved on the clean path,
        never with the query, and anything the catalog cannot resolve is refused."""
        request = parse_envelope(envelope, self.router.catalog, self.router.policy)
        ticket.operation = request.operation.operation_id
        ticket.body = request.body
        if request.body is not None:
            self.router.check_model(request.operation, request.body)
        headers = [h for h in client_headers if h[0] not in _ENVELOPE_HEADERS]
        if request.body is not None:
            headers.append((b"content-type", b"application/json"))
        target = request.path[3:] + (f"?{request.query_string}" if request.query_string else "")
        upstream_headers = self.upstream_headers.build(headers, keep_length=False)
        call = Call(request.method, target, upstream_headers, request.body, ticket.request_id)
        return call, request.operation, request.path[3:]

    def settle(self, entry: LedgerEntry, admitted: Admitted | None = None) -> None:
        """A finished request: its entry to the ledger, metrics and logs, its real usage to
        the key's limits (never blocks)."""
        if admitted is not None and admitted.guess.billed is not None:
            entry.billed_usd = admitted.guess.billed  # images, speech, audio: their row's cost
        for observe in self.observers:
            observe(entry)
        if admitted is not None:
            self.limits.settle(admitted, entry)

    async def authenticate(self, head: RequestHead, scope: str) -> KeyRecord | None:
        """The caller's key, which must hold `scope`; None only when auth is disabled."""
        key = await self.identify(head)
        require_scope(key, scope)
        return key

    async def identify(self, head: RequestHead) -> KeyRecord | None:
        """The caller's key, whatever its scopes; None only when auth is disabled."""
        if not self.settings.auth_enabled:
            return None
        key = await self._key_for(head.key) if head.key else None
        if key is None:
            raise unauthorized()
        return key

    async def _key_for(self, secret: str) -> KeyRecord | None:
        """A relay key first; else an OAuth access token standing for a member's key."""
        key = await self.keys.lookup(secret)
        if key is None and secret.startswith(ACCESS_PREFIX):
            key = await self.tokens.lookup(secret)
        return key

    def _with_request_id(self, scope: Scope, send: Send) -> Send:
        head = RequestHead.parse(scope["headers"])
        request_id = head.request_id or new_request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, request_id)]
            await send(message)

        return send_with_id

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()
        try:
            if not self.settings.auth_enabled:
                logger.warning("RELAY_AUTH_ENABLED=false: the relay accepts requests without a key")
            for step in self.startup:
                await step()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        if self.settings.tune_gc:
            _tune_garbage_collector()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        for step in reversed(self.shutdown):
            await step()
        await send({"type": "lifespan.shutdown.complete"})
