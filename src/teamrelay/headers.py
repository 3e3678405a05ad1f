"""Which headers cross the relay, in each direction.

Header names arrive lower-cased from ASGI servers (the ASGI spec requires it) and as sent from
the upstream, so every set here is lower-case bytes, and only upstream names are lower-cased first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from teamrelay.tap.decoding import READABLE

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Credentials and routing the relay owns: the client's are never sent on.
_REQUEST_DROPPED = HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"x-relay-key",
    b"x-relay-request-id",
    b"openai-beta",
    b"openai-organization",
    b"openai-project",
    b"cookie",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-real-ip",
    # The relay answers a client's 100-continue itself (the ASGI server does, on the first read).
    b"expect",
    # Sent on with only the codings the tap can decode (`readable_codings`).
    b"accept-encoding",
}

_REQUEST_DROPPED_WITH_LENGTH = _REQUEST_DROPPED | {b"content-length"}

REQUEST_ID = b"x-relay-request-id"


def merge_beta(configured: Sequence[str], sent: Iterable[str]) -> str:
    """OpenAI-Beta values from config and client, de-duplicated, config first."""
    seen: dict[str, None] = dict.fromkeys(configured)
    for header in sent:
        for value in header.split(","):
            value = value.strip()
            if value:
                seen.setdefault(value, None)
    return ",".join(seen)


class UpstreamHeaders:
    """Builds the header list sent upstream; the fixed part is computed once per process."""

    def __init__(
        self,
        api_key: str,
        *,
        organization: str | None,
        project: str | None,
        beta: Sequence[str],
    ) -> None:
        fixed = [(b"authorization", _value("OPENAI_API_KEY", f"Bearer {api_key}"))]
        if organization:
            fixed.append((b"openai-organization", _value("OPENAI_ORGANIZATION", organization)))
        if project:
            fixed.append((b"openai-project", _value("OPENAI_PROJECT", project)))
        self._fixed = tuple(fixed)
        self._beta = tuple(beta)

    def build(
        self, client_headers: Sequence[tuple[bytes, bytes]], *, keep_length: bool
    ) -> list[tuple[bytes, bytes]]:
        """`client_headers` as ASGI gives them (lower-case names). `keep_length` is false when
        the body is sent as bytes, whose length the client that sends them sets."""
        dropped = _REQUEST_DROPPED if keep_length else _REQUEST_DROPPED_WITH_LENGTH
        out = []
        beta = []
        named: frozenset[bytes] | None = None
        for header in client_headers:
            name = header[0]
            if name not in dropped:
                out.append(header)
            elif name == b"accept-encoding":
                codings = readable_codings(header[1])
                if codings:
                    out.append((name, codings))
            elif name == b"openai-beta":
                beta.append(header[1].decode("latin-1"))
            elif name == b"connection":
                options = connection_options(header[1])
                if options:
                    named = options if named is None else named | options
        if named:
            out = [header for header in out if header[0] not in named]
        out += self._fixed
        if beta or self._beta:
            merged = merge_beta(self._beta, beta)
            out.append((b"openai-beta", _value("OpenAI-Beta", merged)))
        return out


@lru_cache(maxsize=256)
def connection_options(value: bytes) -> frozenset[bytes]:
    """The header names a `Connection` header lists beyond the hop-by-hop ones everyone drops:
    hop-by-hop too (RFC 9110 §7.6.1), so they go no further than the relay."""
    names = {item.strip().lower() for item in value.split(b",")}
    return frozenset(names - HOP_BY_HOP - {b"close", b""})


@lru_cache(maxsize=256)
def readable_codings(accept_encoding: bytes) -> bytes:
    """The client's `Accept-Encoding` less the codings the tap cannot decode (and `*`, which
    would let the upstream pick one), so every answer stays readable for usage and ids."""
    kept = [
        item.strip()
        for item in accept_encoding.split(b",")
        if item.partition(b";")[0].strip().lower().decode("latin-1") in _ACCEPTED
    ]
    return b", ".join(kept)


_ACCEPTED = READABLE | {"identity"}


def _value(name: str, value: str) -> bytes:
    """A header value from configuration or a merge: a line break would split the request."""
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{name} holds a line break or NUL")
    return value.encode("latin-1")


def text_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """For aiohttp, which takes header names and values as text."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def response_headers(
    upstream: Iterable[tuple[bytes, bytes]], request_id: bytes
) -> list[tuple[bytes, bytes]]:
    out = [(name, value) for name, value in upstream if name.lower() not in HOP_BY_HOP]
    out.append((REQUEST_ID, request_id))
    return out
