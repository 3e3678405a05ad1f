"""FakeUpstream: an OpenAI-shaped aiohttp server on loopback, in its own thread and loop."""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.hdrs import ACCEPT_ENCODING

from . import (
    api_batches,
    api_chatkit,
    api_echo,
    api_files,
    api_media,
    api_models,
    api_realtime,
    api_responses,
    api_text,
    api_vector_stores,
)
from .encoding import choose, compress, compressible
from .errors import ApiError
from .faults import Fault, FaultBook
from .intake import read_body
from .records import Log, Received
from .store import STORE, Store
from .wire import EXCHANGE, Dropped, Exchange, Streamer, error_reply

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UPSTREAM: web.AppKey[FakeUpstream] = web.AppKey("upstream")
RATE_LIMIT_REQUESTS = 10000
RATE_LIMIT_TOKENS = 30000000


def _key_hint(key: str) -> str:
    """How OpenAI shows a wrong key: both ends kept, the middle starred out."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _auth_error(authorization: str | None, api_key: str) -> ApiError | None:
    if authorization is None or not authorization.startswith("Bearer "):
        return ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
            "You can obtain an API key from https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    given = authorization.removeprefix("Bearer ")
    if secrets.compare_digest(given.encode(), api_key.encode()):
        return None
    return ApiError(
        401,
        f"Incorrect API key provided: {_key_hint(given)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def _fault_reply(fault: Fault) -> web.Response:
    assert fault.status is not None
    headers = {}
    if fault.retry_after is not None:
        seconds = fault.retry_after
        headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    error = ApiError(
        fault.status,
        fault.message,
        type=fault.error_type,
        code=fault.error_code,
    )
    return error_reply(error, headers)


class FakeUpstream:
    """Runs in its own thread with its own event loop on 127.0.0.1:<free port>.

    Like OpenAI's edge it compresses JSON answers for clients that accept an encoding;
    `compress=False` answers uncompressed, `compress_streams=True` compresses SSE too.
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-test-upstream-0000",
        compress: bool = True,
        compress_streams: bool = False,
    ) -> None:
        self.api_key = api_key
        self.compress = self._compress = compress
        self.compress_streams = self._compress_streams = compress_streams
        self.port = 0
        self.url = ""
        self.base_url = ""
        self.log = Log()
        self._faults = FaultBook()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._store: Store | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None

    # lifecycle

    def start(self) -> FakeUpstream:
        self._tempdir = tempfile.TemporaryDirectory(prefix="fakeupstream-")
        self._store = Store(Path(self._tempdir.name))
        self._thread = threading.Thread(target=self._serve, name="fakeupstream", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake upstream did not start within 10s")
        if self._startup_error is not None:
            raise RuntimeError("fake upstream failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._loop = self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            self._startup_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=0)
        app[UPSTREAM] = self
        assert self._store is not None
        app[STORE] = self._store
        for module in (
            api_models,
            api_text,
            api_responses,
            api_files,
            api_batches,
            api_chatkit,
            api_vector_stores,
            api_media,
            api_realtime,
            api_echo,
        ):
            app.add_routes(module.routes)
        app.on_response_prepare.append(self._on_prepare)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        await web.SockSite(self._runner, sock).start()

    async def _close(self) -> None:
        if self._store is not None:
            await self._store.cancel_tasks()
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        assert self._loop is not None, "fake upstream is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # what tests use

    @property
    def store(self) -> Store:
        """The live objects; read them only between requests (the server thread owns them)."""
        assert self._store is not None, "fake upstream is not running"
        return self._store

    def add_org_files(self, count: int, *, purpose: str = "assistants") -> list[str]:
        """Files the organisation made without the relay (see `Store.add_org_files`)."""

        async def add() -> list[str]:
            return self.store.add_org_files(count, purpose=purpose)

        return self._call(add())

    def add_chatkit_thread(self, user: str, text: str = "hello") -> str:
        """A thread ChatKit's widget made for `user` (see `Store.add_chatkit_thread`)."""

        async def add() -> str:
            return str(self.store.add_chatkit_thread(user, text)["id"])

        return self._call(add())

    def faults(self, path: str | Fault, **options: Any) -> Fault:
        """Plan a fault: `faults("/v1/chat/completions", status=429, retry_after=2, times=1)`.

        Options are the fields of `Fault`; see there.
        """
        fault = path if isinstance(path, Fault) else Fault(path=path, **options)
        return self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def clear_log(self) -> None:
        self.log.wipe()

    def reset(self) -> None:
        """Forget every object, logged request and fault; compress as configured."""
        self.clear_faults()
        self.compress, self.compress_streams = self._compress, self._compress_streams
        if self._store is not None and self._loop is not None:
            self._call(self._store.clear())
        self.clear_log()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checked whenever the log changes."""
        self.log.wait_for(predicate, timeout)

    def wait_done(self, received: Received, timeout: float = 5.0) -> Received:
        """Wait until the server finished, dropped, or saw the client leave, for `received`."""
        self.log.wait_for(lambda: received.done, timeout)
        return received

    async def wait_for_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """`wait_for` for async tests, which must not block their own event loop."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.005)

    async def wait_done_async(self, received: Received, timeout: float = 5.0) -> Received:
        await self.wait_for_async(lambda: received.done, timeout)
        return received

    def requests_to(self, path: str, method: str | None = None) -> list[Received]:
        return [
            entry
            for entry in list(self.log)
            if entry.path == path and (method is None or entry.method == method)
        ]

    # the request path

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        received = Received(
            method=request.method,
            path=path,
            query=query,
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.raw_headers
            ],
            request_id="req_" + secrets.token_hex(16),
        )
        self.log.add(received)
        exchange = Exchange(received, received.request_id)
        coding = choose(request.headers.get(ACCEPT_ENCODING))
        exchange.coding = coding if self.compress else None
        exchange.stream_coding = coding if self.compress_streams else None
        request[EXCHANGE] = exchange
        try:
            response = await self._answer(request, handler, exchange)
            await self._send(request, response, exchange)
            received.finished_at = time.monotonic()
        except Dropped as dropped:
            response = dropped.response
        except asyncio.CancelledError:
            if not received.done:
                received.disconnected_at = time.monotonic()
            raise
        except ConnectionError:
            if not received.done:
                received.disconnected_at = time.monotonic()
            if exchange.response is None:
                raise
            response = exchange.response
        finally:
            exchange.body.discard()
            self.log.touch()
        return response

    async def _answer(
        self, request: web.Request, handler: Handler, exchange: Exchange
    ) -> web.StreamResponse:
        received = exchange.received
        assert self._store is not None
        try:
            exchange.body, received.body = await read_body(request, self._store.spool)
        except ApiError as error:
            return error_reply(error)
        finally:
            received.body_completed_at = time.monotonic()
        received.body_sha256 = exchange.body.sha256
        received.body_len = exchange.body.size
        if received.path.startswith("/v1"):
            denied = _auth_error(request.headers.get("Authorization"), self.api_key)
            if denied is not None:
                return error_reply(denied)
        fault = self._faults.take(received.method, received.path)
        exchange.fault = received.fault = fault
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.hang:
                await asyncio.Event().wait()
            if fault.status is not None:
                return _fault_reply(fault)
        try:
            return await handler(request)
        except ApiError as error:
            return error_reply(error)

    async def _send(
        self, request: web.Request, response: web.StreamResponse, exchange: Exchange
    ) -> None:
        """Finish a plain response here, so faults apply and `finished_at` means sent."""
        if response.prepared:
            return
        fault = exchange.fault
        if not isinstance(response, web.Response):
            await response.prepare(request)
            await response.write_eof()
            return
        body = response.body
        dropping = fault is not None and fault.drop_after_bytes is not None
        coding = exchange.coding
        compressing = coding and compressible(response.content_type)
        if compressing and isinstance(body, bytes) and not dropping:
            wire = compress(coding, body)
            response.body = wire
            response.headers["Content-Encoding"] = coding
            response.headers["Vary"] = "Accept-Encoding"
            exchange.received.sent += wire
        if dropping and isinstance(body, bytes):
            streamer = await Streamer.open(
                request,
                content_type=response.content_type,
                status=response.status,
                headers={k: v for k, v in response.headers.items() if k != "Content-Type"},
                content_length=len(body),
            )
            await streamer.write(body)
            return
        await response.prepare(request)
        await response.write_eof()

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        exchange = request.get(EXCHANGE)
        if exchange is None:
            return
        received = exchange.received
        elapsed_ms = int((time.monotonic() - received.started_at) * 1000)
        headers = response.headers
        headers["x-request-id"] = exchange.request_id
        headers["openai-processing-ms"] = str(elapsed_ms)
        headers["openai-version"] = "2020-10-01"
        headers["openai-organization"] = "user-fakeupstream"
        headers["x-ratelimit-limit-requests"] = str(RATE_LIMIT_REQUESTS)
        headers["x-ratelimit-remaining-requests"] = str(max(0, RATE_LIMIT_REQUESTS - len(self.log)))
        headers["x-ratelimit-reset-requests"] = "6ms"
        headers["x-ratelimit-limit-tokens"] = str(RATE_LIMIT_TOKENS)
        headers["x-ratelimit-remaining-tokens"] = str(RATE_LIMIT_TOKENS - 1000)
        headers["x-ratelimit-reset-tokens"] = "2ms"
        if exchange.fault is not None:
            headers.update(exchange.fault.headers)
        received.status = response.status
        received.response_headers = list(headers.items())
