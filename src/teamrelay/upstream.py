"""The upstream clients, owned by the app lifespan.

`pool` carries every HTTP call to OpenAI (see `connections`): the `/v1` pass-through and the
Actions wrappers' calls, which run the same path. `session` is aiohttp, for the WebSockets
(the realtime bridge). Neither decodes bodies
(compressed answers pass through with their Content-Encoding), adds headers the client did not
send or keeps cookies. Both take the one egress route `egress.upstream_proxy` decides and trust
the same CAs (`RELAY_UPSTREAM_CA_FILE`, else the system's, which `SSL_CERT_FILE` can replace).
"""

from __future__ import annotations

import errno
import ssl

import aiohttp

from teamrelay.config import Settings
from teamrelay.connections import ConnectionPool
from teamrelay.egress import upstream_proxy

_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.openai_base_url
        self.read_timeout = settings.read_timeout
        self.idle_timeout = settings.idle_timeout
        self._connect_timeout = settings.connect_timeout
        self._send_timeout = settings.send_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.connect_timeout,
            sock_connect=settings.connect_timeout,
            # aiohttp starts this clock once the request body is written, so it bounds the
            # wait for the response head.
            sock_read=settings.read_timeout,
        )
        self._limit = settings.upstream_connections
        self.proxy = upstream_proxy(self.base_url, settings.upstream_proxy)
        self._ca_file = settings.upstream_ca_file
        self._session: aiohttp.ClientSession | None = None
        self._pool: ConnectionPool | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream client used outside the app lifespan")
        return self._session

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("upstream client used outside the app lifespan")
        return self._pool

    async def start(self) -> None:
        tls = ssl.create_default_context(cafile=self._ca_file)
        self._pool = ConnectionPool(
            self.base_url,
            limit=self._limit,
            connect_timeout=self._connect_timeout,
            read_timeout=self.read_timeout,
            send_timeout=self._send_timeout,
            ssl_context=tls,
            proxy=self.proxy,
        )
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300, ssl=tls)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=_NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            # The proxy decided once for the upstream, not the environment per request.
            trust_env=False,
            proxy=self.proxy.url if self.proxy is not None else None,
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def session_failure(exc: aiohttp.ClientError) -> str:
    """The phase a failure of the aiohttp session names to the client, in the pass-through's
    words (`connections.UpstreamError.reason`); aiohttp's messages can hold proxy URLs."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the egress proxy refused the tunnel ({exc.status})"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return "the egress proxy could not be reached"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return type(exc).__name__
