"""An https server on loopback standing in for ChatGPT's file host, with a test CA (trustme).

Loaded as a pytest plugin (see conftest): its `links` fixture is available to every test.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

CAP = 1024 * 1024


class LinkServer:
    """An https server on 127.0.0.1 standing in for ChatGPT's file host (test CA, trustme)."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._context)
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def link(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def __enter__(self) -> LinkServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_get("/f/{name}", self._file)
        app.router.add_get("/chunked/{name}", self._chunked)
        app.router.add_get("/go", self._redirect)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        loop.run_until_complete(web.SockSite(runner, sock, ssl_context=self._context).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        return web.Response(body=self.files[request.match_info["name"]])

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = self.files[request.match_info["name"]]
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        raise web.HTTPFound(request.query["to"])


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinkServer]:
    with LinkServer(tmp_path_factory.mktemp("links")) as server:
        yield server


def files_env(links: LinkServer, **extra: str) -> dict[str, str]:
    return {
        "RELAY_ACTIONS_FILE_HOSTS": "localhost,127.0.0.1,10.0.0.1,169.254.169.254",
        "RELAY_ACTIONS_ALLOW_LOOPBACK": "true",
        "RELAY_ACTIONS_CA_FILE": str(links.ca_file),
        "RELAY_ACTIONS_MAX_FILE_BYTES": str(CAP),
        **extra,
    }
