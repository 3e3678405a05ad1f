"""Forwarded headers, honoured only from the relay's trusted proxies (`RELAY_TRUSTED_PROXIES`).

Behind a TLS-terminating proxy the relay sees plain HTTP from the proxy's address; the proxy
says which scheme, host and client it was reached by. Believed from anyone, those headers let a
client pick the OAuth issuer, the schema's server and its own address for rate limits, so they
count only when the peer is listed (addresses or CIDRs; none by default), and are removed from
every other request so nothing downstream can read them.

uvicorn's `ProxyHeadersMiddleware` applies `X-Forwarded-Proto` and `X-Forwarded-For` (the
client is the rightmost address of the chain that is not a trusted proxy). This adds what it
does not read: `X-Forwarded-Host` (the first, if it is a plain host[:port]), and RFC 7239
`Forwarded`, whose `for`, `proto` and `host` replace the `X-Forwarded-*` ones when it can be
read (an unreadable one is dropped). An https request's answer carries HSTS.

The relay's own routes (OAuth, admin, Actions, MCP) run behind this; `/v1` does not need it: the
upstream never sees these headers (`headers.py` drops them) and no browser reads its answers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

FORWARDED_HEADERS: Final = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"}
)
HSTS: Final = (b"strict-transport-security", b"max-age=31536000")
_HOST: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR: Final = re.compile(
    r"[ \t]*("
    + _TOKEN
    + r")=(?:("
    + _TOKEN
    + r')|"((?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*)")[ \t]*'
)


def trusted_networks(
    entries: Sequence[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses and CIDRs; raises ValueError naming an entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 section 4's elements, parameter names lower-cased; None when it does not
    follow the grammar or an element repeats a parameter."""
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    at = 0
    while True:
        found = _PAIR.match(value, at)
        if found is None:
            return None
        name = found.group(1).lower()
        if name in element:
            return None
        token, quoted = found.group(2), found.group(3)
        element[name] = token if token is not None else re.sub(r"\\(.)", r"\1", quoted)
        at = found.end()
        if at == len(value):
            elements.append(element)
            return elements
        if value[at] == ",":
            elements.append(element)
            element = {}
        elif value[at] != ";":
            return None
        at += 1


def _from_forwarded(elements: list[dict[str, str]]) -> list[tuple[bytes, bytes]]:
    """`Forwarded` as the `X-Forwarded-*` headers uvicorn's middleware and this one read."""
    headers: list[tuple[bytes, bytes]] = []
    chain = [element["for"] for element in elements if "for" in element]
    if chain:
        headers.append((b"x-forwarded-for", ", ".join(chain).encode("latin-1")))
    first = elements[0]  # added by the proxy the client reached: its scheme and host
    if "proto" in first:
        headers.append((b"x-forwarded-proto", first["proto"].lower().encode("latin-1")))
    if "host" in first:
        headers.append((b"x-forwarded-host", first["host"].encode("latin-1")))
    return headers


def _forwarded_view(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A trusted proxy's headers with `Forwarded` translated and `X-Forwarded-Host` applied."""
    forwarded = [value for name, value in headers if name == b"forwarded"]
    kept = [(name, value) for name, value in headers if name != b"forwarded"]
    if forwarded:
        elements = parse_forwarded(b", ".join(forwarded).decode("latin-1"))
        if elements is not None:
            kept = [(n, v) for n, v in kept if n not in FORWARDED_HEADERS]
            kept += _from_forwarded(elements)
    hosts = [value for name, value in kept if name == b"x-forwarded-host"]
    if hosts:
        host = hosts[0].decode("latin-1").split(",")[0].strip()
        if _HOST.fullmatch(host):
            kept = [(n, v) for n, v in kept if n != b"host"] + [(b"host", host.encode())]
    return kept


class TrustedProxies:
    """ASGI middleware: forwarded headers from trusted peers applied, from others removed."""

    def __init__(self, app: ASGIApp, trusted: Sequence[str]) -> None:
        self.app = app
        self.networks = trusted_networks(trusted)
        self.forwarded = ProxyHeadersMiddleware(self._inner, trusted_hosts=list(trusted))  # type: ignore[arg-type]

    def trusts(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.trusts(scope):
            scope["headers"] = _forwarded_view(list(scope["headers"]))
            await self.forwarded(scope, receive, send)  # type: ignore[arg-type]
            return
        if any(name in FORWARDED_HEADERS for name, _ in scope["headers"]):
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in FORWARDED_HEADERS]
        await self._inner(scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), HSTS]
            await send(message)

        await self.app(scope, receive, with_hsts)
