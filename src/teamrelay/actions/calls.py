"""The wrappers' calls to the OpenAI API: the relay's pooled session, a deadline, honest errors.

Every call runs against the Action's deadline (RELAY_ACTIONS_ANSWER_BUDGET, under the 45 s
round trip), so no wrapper answers late. Upstream refusals come back as they came, except
that a 429 always carries `Retry-After` (ChatGPT backs off on 429s; see limits.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
from starlette.types import Message
from yarl import URL

from teamrelay.accounting import Ticket
from teamrelay.actions.limits import DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER
from teamrelay.catalog import Matched, Operation
from teamrelay.errors import RelayError, bad_gateway, gateway_timeout
from teamrelay.forward import Call
from teamrelay.gateway import new_request_id
from teamrelay.headers import text_headers
from teamrelay.keys.store import KeyRecord

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

_ERROR_BODY_LIMIT = 16 * 1024
# `Relay.serve` ends a late exchange itself (a 504 on its row); this only bounds what is left.
BACKSTOP_SECONDS = 1.0
# An answer the relay's path gives an Action is read whole to be cut to fit; past this it is
# refused rather than held (Actions take 100,000 characters).
MAX_RELAYED_ANSWER = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def loop_time(self) -> float:
        """The same moment on the running event loop's clock."""
        return asyncio.get_running_loop().time() + self.remaining()

    def timeout(self) -> aiohttp.ClientTimeout:
        left = self.remaining()
        if left <= 0.05:
            raise gateway_timeout("the Action's time budget ran out")
        return aiohttp.ClientTimeout(total=left)


class Passthrough(Exception):
    """An upstream error answer, sent on to the Action as it came (bounded in size)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def retry_after(headers: Mapping[str, str]) -> str:
    """Seconds to wait, from `retry-after` or `retry-after-ms`, bounded; a default if none."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return str(min(MAX_RETRY_AFTER, max(1, math.ceil(seconds))))
    return str(DEFAULT_RETRY_AFTER)


def segment(value: str) -> str:
    """One path segment from a caller's id: percent-encoded so it can never add a segment."""
    return quote(value, safe="")


class Captured:
    """The ASGI messages of one answer of the relay's path, kept for an Action to reshape."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            # A second start is the relay's refusal of an answer that ran out of time.
            self.chunks, self.size, self.overflow = [], 0, False
            self.status = message["status"]
            self.headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > MAX_RELAYED_ANSWER:
                self.overflow = True
            elif chunk:
                self.chunks.append(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def refusal(self) -> Passthrough:
        """A refusal (the relay's own or the upstream's) as it came, a 429 with Retry-After."""
        headers = {"content-type": self.headers.get("content-type", "application/json")}
        if self.status == 429:
            headers["retry-after"] = retry_after(self.headers)
        return Passthrough(self.status, self.body, headers)


async def never_disconnects() -> Message:
    """The Action's body was read already; its connection's end cancels the handler."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


# The key an Action request acts for, set by the wrappers' auth dependency: the calls below
# apply that key's isolation without every wrapper passing it along.
CALLER: ContextVar[KeyRecord | None] = ContextVar("actions_caller", default=None)


class OpenAICalls:
    """The wrappers' upstream calls. A JSON call (`json`) runs the relay's own request path
    (`Relay.serve`): the operation resolved by the router on the clean path, the model
    allowlist, isolation (ids in path, query and body; lists filtered with working paging;
    created and derived objects recorded) and the one upstream client. The wrapper route
    keeps the key's rate limits, budget and ledger row for the whole Action (see routes.py).
    Uploads (`json_form`) and streamed downloads (`open`) still use the aiohttp session,
    guarded here with the same isolation, failing closed."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self.upstream = relay.upstream
        self._headers = relay.upstream_headers
        self._catalog = relay.router.catalog
        self._policy = relay.router.policy
        self._isolation = relay.isolation

    def _operation(self, method: str, path: str) -> Operation | None:
        resolution = self._catalog.resolve(method, path)
        return resolution.operation if isinstance(resolution, Matched) else None

    async def _guard(
        self, method: str, path: str, data: Any, query: Mapping[str, Any] | None = None
    ) -> None:
        """The caller's isolation, as on `/v1`: another key's ids are absent (404). Fails
        closed: for a confined key, a path the catalog cannot resolve (a query in it, an id
        with characters an id never has) is refused, never passed unchecked."""
        key = CALLER.get()
        if key is None or not self._isolation.confines(key):
            return
        operation = self._operation(method, path) if "?" not in path else None
        if operation is None:
            raise RelayError(404, "No such object.", type="invalid_request_error")
        body = data if isinstance(data, bytes) else None
        await self._isolation.check(key.id, operation, path, body)
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            await self._isolation.check_query(key.id, urlencode(pairs, doseq=True))

    async def _own(self, method: str, path: str, data: Any, answer: Any) -> Any:
        """After a successful call: keep only owned items of a list, remember what was made."""
        key = CALLER.get()
        operation = self._operation(method, path)
        if key is None or operation is None or not isinstance(answer, dict):
            return answer
        confined = self._isolation.confines(key)
        items = answer.get("data")
        if confined and self._isolation.lists(operation) and isinstance(items, list):
            answer["data"] = await self._isolation.keep_owned(key.id, items)
            return answer
        body = data if isinstance(data, bytes) else None
        object_id = answer.get("id")
        self._isolation.remember(
            key, operation, path, body, object_id if isinstance(object_id, str) else None
        )
        await self._isolation.learn_from(key, operation, path, confined, answer)
        return answer

    def allowed(self, operation_id: str) -> bool:
        operation = self._catalog.by_id.get(operation_id)
        return operation is not None and not self._policy.decide(operation).blocked

    def check(self, operation_id: str) -> None:
        if not self.allowed(operation_id):
            raise RelayError(
                403, f"{operation_id} is blocked on this relay.", code="blocked_operation"
            )

    def headers(self, content_type: str | None = "application/json") -> list[tuple[str, str]]:
        extra = [(b"content-type", content_type.encode())] if content_type else []
        return text_headers(self._headers.build(extra, keep_length=False))

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> URL:
        pairs = {k: v for k, v in (query or {}).items() if v is not None}
        suffix = "?" + urlencode(pairs) if pairs else ""
        return URL(self.upstream.base_url + path + suffix, encoded=True)

    async def open(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        query: Mapping[str, Any] | None = None,
        data: Any = None,
        content_type: str | None = None,
    ) -> aiohttp.ClientResponse:
        """A successful upstream response, not yet read; the caller releases it."""
        await self._guard(method, path, data, query)
        try:
            response = await self.upstream.session.request(
                method,
                self.url(path, query),
                headers=self.headers(content_type),
                data=data,
                timeout=deadline.timeout(),
                allow_redirects=False,
            )
        except TimeoutError:
            raise gateway_timeout("within the Action's time budget") from None
        except aiohttp.ClientError as exc:
            raise bad_gateway(type(exc).__name__) from None
        if response.status >= 400:
            try:
                body = await response.content.read(_ERROR_BODY_LIMIT)
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.release()
            raise _refusal(response, body)
        return response

    async def json(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        answer = await self.relayed(method, path, deadline, query=query, data=data)
        if answer.status >= 400:
            raise answer.refusal()
        try:
            return json.loads(answer.body)
        except ValueError:
            raise bad_gateway("the answer was not JSON") from None

    async def relayed(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        query: Mapping[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Captured:
        """One JSON call through `Relay.serve` as the caller (`CALLER`), its answer whole.
        The wrapper accounts for it (`accounted=False`): no second rate-limit charge and no
        second ledger row for one Action."""
        relay = self._relay
        ticket = Ticket.open(method, path, new_request_id())
        ticket.key = CALLER.get()

        async def adapt() -> tuple[Call, Operation, str]:
            if "?" in path:  # a query belongs in `query`: never resolve a path with one
                raise RelayError(400, "A path with a query.", code="invalid_path")
            operation = relay.router.route(method, path)
            ticket.operation = operation.operation_id
            ticket.body = data
            if data is not None:
                relay.router.check_model(operation, data)
            extra = [(b"content-type", b"application/json")] if data is not None else []
            headers = relay.upstream_headers.build(extra, keep_length=False)
            pairs = {k: v for k, v in (query or {}).items() if v is not None}
            target = path + ("?" + urlencode(pairs, doseq=True) if pairs else "")
            return Call(method, target, headers, data, ticket.request_id), operation, path

        captured = Captured()
        try:
            async with asyncio.timeout(max(deadline.remaining(), 0.0) + BACKSTOP_SECONDS):
                await relay.serve(
                    ticket,
                    adapt,
                    never_disconnects,
                    captured.send,
                    accounted=False,
                    deadline=deadline.loop_time(),
                )
        except TimeoutError:
            raise gateway_timeout("within the Action's time budget") from None
        if ticket.refusal is not None:  # the relay's own (404, 504...), raised as before
            raise ticket.refusal
        if captured.overflow:
            raise bad_gateway("the answer was too large for an Action")
        return captured

    async def json_form(self, path: str, form: aiohttp.MultipartWriter, deadline: Deadline) -> Any:
        """POST a multipart form (its parts may stream) and read the JSON answer."""
        response = await self.open(
            "POST", path, deadline, data=form, content_type=form.content_type
        )
        return await self._own("POST", path, None, await _read_json(response))


async def _read_json(response: aiohttp.ClientResponse) -> Any:
    try:
        raw = await response.read()
    except TimeoutError:
        raise gateway_timeout("within the Action's time budget") from None
    except aiohttp.ClientError as exc:
        raise bad_gateway(type(exc).__name__) from None
    finally:
        response.release()
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_gateway("the answer was not JSON") from None


def _refusal(response: aiohttp.ClientResponse, body: bytes) -> Passthrough:
    headers = {"content-type": response.headers.get("content-type", "application/json")}
    if response.status == 429:
        headers["retry-after"] = retry_after(response.headers)
    if not body:
        message = f"The OpenAI API answered {response.status}."
        error = {"message": message, "type": "upstream_error", "param": None, "code": None}
        body = json.dumps({"error": error}).encode()
        headers["content-type"] = "application/json"
    return Passthrough(response.status, body, headers)
