"""The egress proxy the relay's connections to the upstream go through, decided once at start-up.

Many companies reach the OpenAI API only through an HTTP proxy. The upstream is one origin, so
the standard variables (`HTTPS_PROXY`/`HTTP_PROXY` by the upstream's scheme, `NO_PROXY`, as curl
and `urllib` read them) are read once here, and `RELAY_UPSTREAM_PROXY` overrides them. The same
answer serves the pass-through (`connections`, a CONNECT tunnel for https) and the aiohttp
session (wrappers, WebSockets), so both take one route. Connections elsewhere (Actions file
downloads) never use it.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from teamrelay.config import ConfigError


@dataclass(frozen=True, slots=True)
class Proxy:
    """An http:// proxy; `url` and `authorization` hold its credentials and are never shown."""

    host: str
    port: int
    url: str = field(repr=False)
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """Where it is, for logs and error messages: no credentials."""
        return f"{self.host}:{self.port}"


def upstream_proxy(base_url: str, explicit: str | None) -> Proxy | None:
    """The proxy for `base_url`, or None for a direct connection."""
    if explicit:
        return parse_proxy(explicit, "RELAY_UPSTREAM_PROXY")
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(parts.scheme)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # With its port, so that a NO_PROXY entry naming one (`host:443`) can match it.
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not url or urllib.request.proxy_bypass(authority):
        return None
    return parse_proxy(url, f"{parts.scheme.upper()}_PROXY")


def parse_proxy(url: str, variable: str) -> Proxy:
    """`url` as curl reads it (a bare `host:port` is http); anything but http:// stops start-up."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        raise ConfigError(f"configuration error: {variable} is not a valid URL") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"configuration error: {variable} must be an http:// proxy URL")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(pair.encode("utf-8"))
    return Proxy(parts.hostname, port, url, authorization)
