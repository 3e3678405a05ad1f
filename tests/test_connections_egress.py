"""The `/v1` client's way out: an egress proxy (CONNECT for https, absolute form for http) and
Happy Eyeballs over every address a name resolves to."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop

from egressproxy import egress_proxy
from servers import relay_env
from teamrelay.app import create_app
from teamrelay.config import ConfigError, Settings
from teamrelay.connections import ConnectFailed, ConnectionPool
from teamrelay.egress import Proxy, parse_proxy, upstream_proxy
from test_connections import OK, WAIT, RawServer, answer_each, fetch


@asynccontextmanager
async def proxied_pool(
    url: str, proxy: Proxy | None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(
        url, limit=4, connect_timeout=WAIT, read_timeout=WAIT, ssl_context=tls, proxy=proxy
    )
    try:
        yield pool
    finally:
        pool.close()
        await asyncio.sleep(0.01)


def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "api.example.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


# The egress proxy


async def test_an_https_upstream_is_reached_through_one_connect_tunnel_kept_alive() -> None:
    server_tls, client_tls = tls_pair()
    with egress_proxy() as proxy:
        async with (
            RawServer(answer_each(OK), tls=server_tls) as server,
            proxied_pool(server.url(), parse_proxy(proxy.url(), "HTTPS_PROXY"), client_tls) as pool,
        ):
            for _ in range(3):
                response, body = await fetch(pool, "POST", "/chat/completions", b"{}")
                assert (response.status, body) == (200, b"ok")
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("CONNECT", f"127.0.0.1:{server.port}")
    ]
    assert server.connections == 1
    assert [r.request_line for r in server.received] == [b"POST /v1/chat/completions HTTP/1.1"] * 3
    assert all(r.header(b"proxy-authorization") is None for r in server.received)


async def test_a_proxy_that_requires_auth_takes_the_credentials_in_its_url() -> None:
    server_tls, client_tls = tls_pair()
    user, password = "relay@corp", "p:ss/w%rd"
    with egress_proxy(credentials=(user, password)) as proxy:
        async with RawServer(answer_each(OK), tls=server_tls) as server:
            good = parse_proxy(proxy.url(user, password), "HTTPS_PROXY")
            async with proxied_pool(server.url(), good, client_tls) as pool:
                response, body = await fetch(pool)
                assert (response.status, body) == (200, b"ok")
            bad = parse_proxy(proxy.url(user, "wrong-secret"), "HTTPS_PROXY")
            async with proxied_pool(server.url(), bad, client_tls) as pool:
                with pytest.raises(ConnectFailed) as caught:
                    await fetch(pool)
    assert caught.value.reason == "the egress proxy refused the tunnel (407)"
    assert "wrong-secret" not in str(caught.value)
    assert "wrong-secret" not in repr(bad)
    assert server.connections == 1


async def test_an_http_upstream_through_the_proxy_gets_absolute_targets_and_the_credentials() -> (
    None
):
    with egress_proxy(credentials=("u", "s")) as proxy:
        async with (
            RawServer(answer_each(OK)) as server,
            proxied_pool(server.url(), parse_proxy(proxy.url("u", "s"), "HTTP_PROXY")) as pool,
        ):
            response, body = await fetch(pool, "GET", "/models?limit=2")
            assert (response.status, body) == (200, b"ok")
    [request] = proxy.requests
    assert (request.method, request.target) == (
        "GET",
        f"http://127.0.0.1:{server.port}/v1/models?limit=2",
    )
    assert request.authorization == "Basic dTpz"


async def test_a_proxy_that_cannot_be_reached_names_the_proxy_not_its_credentials() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = parse_proxy(f"http://me:hunter2@127.0.0.1:{port}", "HTTPS_PROXY")
    async with proxied_pool("https://api.example.test/v1", proxy) as pool:
        with pytest.raises(ConnectFailed) as caught:
            await fetch(pool)
    assert caught.value.reason == "connection refused"
    assert f"egress proxy 127.0.0.1:{port}" in str(caught.value)
    assert "hunter2" not in str(caught.value)


# Which proxy: the standard variables, NO_PROXY, the explicit setting


def test_https_proxy_is_used_for_an_https_upstream_and_http_proxy_for_an_http_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://u:p@secure.corp:3128")
    monkeypatch.setenv("http_proxy", "plain.corp:8080")
    secure = upstream_proxy("https://api.openai.com/v1", None)
    plain = upstream_proxy("http://10.0.0.5:8000/v1", None)
    assert secure is not None
    assert (secure.address, secure.authorization) == ("secure.corp:3128", b"Basic dTpw")
    assert plain is not None
    assert (plain.address, plain.authorization) == ("plain.corp:8080", None)


@pytest.mark.parametrize(
    "no_proxy", ["localhost,api.openai.com", "localhost, .openai.com", "openai.com:443", "*"]
)
def test_no_proxy_sends_the_upstream_direct(monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert upstream_proxy("https://api.openai.com/v1", None) is None
    assert upstream_proxy("https://openai.example/v1", None) is not None or no_proxy == "*"


def test_relay_upstream_proxy_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env.corp:3128")
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    proxy = upstream_proxy("https://api.openai.com/v1", "http://explicit.corp:8080")
    assert proxy is not None
    assert proxy.address == "explicit.corp:8080"
    assert upstream_proxy("https://api.openai.com/v1", None) is None


@pytest.mark.parametrize("url", ["socks5://proxy.corp:1080", "https://proxy.corp", "http://:80"])
def test_a_proxy_the_relay_cannot_use_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", url)
    with pytest.raises(ConfigError, match="HTTPS_PROXY must be an http:// proxy URL"):
        upstream_proxy("https://api.openai.com/v1", None)


# Happy Eyeballs


@contextmanager
def blackhole(family: socket.AddressFamily, host: str, port: int) -> Iterator[None]:
    """A listener that accepts nothing and whose queue is full: the kernel drops new SYNs, so a
    connection to it hangs as to an address whose route is broken."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, port))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((host, port))
        fillers.append(filler)
    try:
        yield
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def _dual_stack_first_request(monkeypatch: pytest.MonkeyPatch) -> tuple[int, float]:
    """The status of a first request to a name resolving to a blackholed IPv6 address and a
    working IPv4 one, and how long it took."""
    loop = asyncio.get_running_loop()
    async with RawServer(answer_each(OK)) as server:
        port = server.port
        ipv6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))
        ipv4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))

        real = loop.getaddrinfo

        async def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
            if host != "dual.example.test":  # uvloop's sock_connect resolves addresses too
                return await real(host, *args, **kwargs)
            return [ipv6, ipv4]

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        with blackhole(socket.AF_INET6, "::1", port):
            started = time.monotonic()
            async with proxied_pool(f"http://dual.example.test:{port}/v1", None) as pool:
                response, body = await fetch(pool)
            took = time.monotonic() - started
    assert body == b"ok"
    return response.status, took


async def test_a_name_whose_ipv6_address_blackholes_answers_over_ipv4_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, took = await _dual_stack_first_request(monkeypatch)
    assert (status, took < 1.0) == (200, True)


class _Uvloop(uvloop.Loop):  # type: ignore[misc]
    """uvloop's loop, which the relay serves on, with room for the test's resolver."""


def test_happy_eyeballs_works_on_uvloop_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with asyncio.Runner(loop_factory=_Uvloop) as runner:
        status, took = runner.run(_dual_stack_first_request(monkeypatch))
    assert (status, took < 1.0) == (200, True)


async def test_a_name_that_does_not_resolve_says_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    async with proxied_pool("https://api.openai.invalid/v1", None) as pool:
        with pytest.raises(ConnectFailed) as caught:
            await fetch(pool)
    assert caught.value.reason == "DNS lookup failed"
    assert "api.openai.invalid" in str(caught.value)


def test_a_bad_proxy_stops_the_relay_at_start_up_with_one_line(tmp_path: Path) -> None:
    env = relay_env("https://api.openai.com/v1", str(tmp_path))
    settings = Settings(_env_file=None, RELAY_UPSTREAM_PROXY="socks5://proxy:1080", **env)  # type: ignore[call-arg]
    with pytest.raises(SystemExit, match="RELAY_UPSTREAM_PROXY must be an http:// proxy URL"):
        create_app(settings)
