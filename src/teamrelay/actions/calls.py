"""The wrappers' calls to the OpenAI API: the relay's pooled session, a deadline, honest errors.

Every call runs against the Action's deadline (RELAY_ACTIONS_ANSWER_BUDGET, under the 45 s
round trip), so no wrapper answers late. Upstream refusals come back as they came, except
that a 429 always carries `Retry-After` (ChatGPT backs off on 429s; see limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.types import Message, Receive, Scope, Send

from teamrelay.accounting import Ticket
from teamrelay.actions.limits import DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER
from teamrelay.admission import RequestHead
from teamrelay.catalog import Operation
from teamrelay.errors import RelayError, bad_gateway, gateway_timeout
from teamrelay.forward import Call
from teamrelay.gateway import new_request_id
from teamrelay.keys.store import KeyRecord

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

_ERROR_BODY_LIMIT = 16 * 1024
_HELD_CHUNKS = 4
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
            self.headers = _text(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > MAX_RELAYED_ANSWER:
                self.overflow = True
            elif chunk:
                self.chunks.append(chunk)

    @classmethod
    def of(cls, status: int, headers: dict[str, str], body: bytes) -> Captured:
        captured = cls()
        captured.status, captured.headers, captured.chunks = status, headers, [body]
        return captured

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


class Streamed:
    """An answer of the relay's path passed on as it arrives (a file's content): its head,
    then its chunks, with at most a few held while the reader is slower than the upstream."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.started = asyncio.Event()
        self._put, self._chunks = anyio.create_memory_object_stream[bytes](_HELD_CHUNKS)
        self.task: asyncio.Future[Ticket] | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.started.is_set():  # a refusal after the answer began: it ends short
                self._put.close()
                return
            self.status = message["status"]
            self.headers = _text(message.get("headers", []))
            self.started.set()
        elif message["type"] == "http.response.body" and (chunk := message.get("body", b"")):
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._put.send(chunk)

    def finish(self) -> None:
        self._put.close()

    @property
    def content_length(self) -> int | None:
        length = self.headers.get("content-length", "")
        return int(length) if length.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes, then the rest is left unread."""
        parts, size = [], 0
        async for chunk in self._chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Ends the exchange: what is left unread is not fetched."""
        self._chunks.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()


def _text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}


def _sent_once(data: bytes) -> Receive:
    """A request body already read, as the ASGI receive of the relay's path."""
    messages = [{"type": "http.request", "body": data, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else await never_disconnects()

    return receive


class _FormWriter:
    """What `MultipartWriter.write` needs of a writer: each piece into a bounded channel."""

    def __init__(self, channel: MemoryObjectSendStream[bytes]) -> None:
        self._channel = channel

    async def write(self, chunk: bytes) -> None:
        if chunk:
            await self._channel.send(bytes(chunk))


# The key an Action request acts for, set by the wrappers' auth dependency: the calls below
# run as that key without every wrapper passing it along.
CALLER: ContextVar[KeyRecord | None] = ContextVar("actions_caller", default=None)


class OpenAICalls:
    """The wrappers' upstream calls, each one request of the relay's own path: the request
    the wrapper means, as `/v1` would receive it, through `Relay.serve` and the same
    `http_call` (the router on the clean path, admission with the model allowlist and the
    form and JSON readers, isolation of every id, objects recorded, the one upstream client).
    The wrapper route keeps the key's rate limits, budget and ledger row for the whole
    Action (`accounted=False` here: one Action is one charge and one row, see routes.py)."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self._catalog = relay.router.catalog
        self._policy = relay.router.policy

    def allowed(self, operation_id: str) -> bool:
        operation = self._catalog.by_id.get(operation_id)
        return operation is not None and not self._policy.decide(operation).blocked

    def check(self, operation_id: str) -> None:
        if not self.allowed(operation_id):
            raise RelayError(
                403, f"{operation_id} is blocked on this relay.", code="blocked_operation"
            )

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
        return _json_of(answer)

    async def relayed(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        query: Mapping[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Captured:
        """One JSON call as the caller (`CALLER`), its answer whole."""
        captured = Captured()
        if data is None:
            await self._serve(method, path, deadline, captured.send, query=query)
        else:
            head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
            await self._serve(
                method, path, deadline, captured.send, query=query, head=head, body=_sent_once(data)
            )
        if captured.overflow:
            raise bad_gateway("the answer was too large for an Action")
        return captured

    async def json_form(self, path: str, form: aiohttp.MultipartWriter, deadline: Deadline) -> Any:
        """POST a multipart form whose parts stream up as they come (a chat file is never held
        whole); a part that fails to arrive ends the upload unsent, with its own error."""
        put, chunks = anyio.create_memory_object_stream[bytes](_HELD_CHUNKS)
        failed: list[BaseException] = []

        async def produce() -> None:
            try:
                await form.write(_FormWriter(put))  # type: ignore[arg-type]
            except BaseException as exc:
                failed.append(exc)
                raise
            finally:
                put.close()

        async def receive() -> Message:
            try:
                return {"type": "http.request", "body": await chunks.receive(), "more_body": True}
            except anyio.EndOfStream:
                if failed:
                    return {"type": "http.disconnect"}
                return {"type": "http.request", "body": b"", "more_body": False}

        head = [(b"content-type", form.content_type.encode()), (b"transfer-encoding", b"chunked")]
        producer = asyncio.ensure_future(produce())
        captured = Captured()
        try:
            await self._serve("POST", path, deadline, captured.send, head=head, body=receive)
        finally:
            producer.cancel()
            chunks.close()
            with contextlib.suppress(BaseException):
                await producer
        if failed and not isinstance(failed[0], asyncio.CancelledError):
            raise failed[0]
        return _json_of(captured)

    async def open(
        self, method: str, path: str, deadline: Deadline, *, query: Mapping[str, Any] | None = None
    ) -> Streamed:
        """A successful answer as it arrives, not yet read; the caller releases it."""
        streamed = Streamed()

        async def run() -> Ticket:
            try:
                return await self._serve(method, path, deadline, streamed.send, query=query)
            finally:
                streamed.finish()

        task = streamed.task = asyncio.ensure_future(run())
        started = asyncio.ensure_future(streamed.started.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if not streamed.started.is_set():
            task.result()  # the relay's refusal, or its time running out
            raise bad_gateway("the upstream sent no answer")
        if streamed.status >= 400:
            body = await streamed.read(_ERROR_BODY_LIMIT)
            streamed.release()
            refusal = Captured.of(streamed.status, streamed.headers, body).refusal()
            with contextlib.suppress(BaseException):
                await task  # its refusal, if the relay's own, is raised as before
            raise refusal
        return streamed

    async def _serve(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        send: Send,
        *,
        query: Mapping[str, Any] | None = None,
        head: list[tuple[bytes, bytes]] | None = None,
        body: Receive = never_disconnects,
    ) -> Ticket:
        relay = self._relay
        if "?" in path:  # a query belongs in `query`: never resolve a path with one
            raise RelayError(400, "A path with a query.", code="invalid_path")
        pairs = {k: v for k, v in (query or {}).items() if v is not None}
        headers = head or []
        scope: Scope = {
            "type": "http",
            "headers": headers,
            "query_string": urlencode(pairs, doseq=True).encode(),
        }
        ticket = Ticket.open(method, "/v1" + path, new_request_id())
        ticket.key = CALLER.get()

        async def adapt() -> tuple[Call, Operation, str]:
            return await relay.http_call(scope, body, RequestHead.parse(headers), ticket)

        try:
            async with asyncio.timeout(max(deadline.remaining(), 0.0) + BACKSTOP_SECONDS):
                await relay.serve(
                    ticket, adapt, body, send, accounted=False, deadline=deadline.loop_time()
                )
        except TimeoutError:
            raise gateway_timeout("within the Action's time budget") from None
        if ticket.refusal is not None:  # the relay's own (404, 504...), raised as before
            raise ticket.refusal
        return ticket


def _json_of(answer: Captured) -> Any:
    if answer.status >= 400:
        raise answer.refusal()
    try:
        return json.loads(answer.body)
    except ValueError:
        raise bad_gateway("the answer was not JSON") from None
