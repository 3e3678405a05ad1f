"""An HTTP forward proxy on loopback, in its own thread and loop, as companies put in front of
the internet: CONNECT tunnels (for https) and absolute-form requests (for http), with Basic
proxy authentication when it is given credentials. It records the head of every request made
to it and pipes bytes blindly after that.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit


@dataclass
class ProxyRequest:
    method: str
    target: str
    authorization: str | None  # the Proxy-Authorization header, as sent


class EgressProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._credentials = credentials
        self.requests: list[ProxyRequest] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def _authorized(self, value: str | None) -> bool:
        if self._credentials is None:
            return True
        expected = base64.b64encode(":".join(self._credentials).encode()).decode()
        return value == f"Basic {expected}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        lowered = {name.lower(): value for name, value in headers.items()}
        authorization = lowered.get("proxy-authorization")
        self.requests.append(ProxyRequest(method, target, authorization))
        if not self._authorized(authorization):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'proxy-authenticate: Basic realm="egress"\r\ncontent-length: 0\r\n\r\n'
            )
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            first = b""
        else:
            parts = urlsplit(target)
            host, port, first = parts.hostname or "", str(parts.port or 80), head
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def egress_proxy(credentials: tuple[str, str] | None = None) -> Iterator[EgressProxy]:
    with EgressProxy(credentials) as proxy:
        yield proxy
