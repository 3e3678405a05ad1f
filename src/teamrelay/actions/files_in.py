"""Files from the chat (`openaiFileIdRefs`) into OpenAI files, streamed, without SSRF.

ChatGPT sends each file as a download link valid for five minutes (limits.py, FILES). The
relay fetches it itself, so every link is treated as hostile: https only, a host allowlist,
redirects followed by hand and re-checked, and the address checked after DNS resolution by
the resolver the connection itself uses (no second lookup, so DNS rebinding cannot swap in
another address between the check and the connect). Bytes stream from the link into the
upload; the size cap is enforced as they pass.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.payload import AsyncIterablePayload
from yarl import URL

from teamrelay.actions.calls import Deadline
from teamrelay.actions.limits import MAX_FILES_IN
from teamrelay.errors import RelayError

_MAX_REDIRECTS = 3
_CONNECT_SECONDS = 5.0
_READ_SECONDS = 10.0
_CHUNK = 256 * 1024
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\\"]+")


class Refused(RelayError):
    """A link the relay will not fetch; always a 4xx, sent before any byte is read."""


def _refuse(message: str, code: str, status: int = 400) -> Refused:
    return Refused(status, message, code=code, param="openaiFileIdRefs")


@dataclass(frozen=True, slots=True)
class FileRef:
    """One chat file, from either runtime shape: an object or a bare link."""

    url: str
    name: str
    mime_type: str

    @classmethod
    def parse(cls, raw: object, index: int) -> FileRef:
        if isinstance(raw, str):
            return cls(raw, _name_from_url(raw, index), "application/octet-stream")
        if isinstance(raw, dict):
            link = raw.get("download_link") or raw.get("url")
            if isinstance(link, str) and link:
                name = raw.get("name") if isinstance(raw.get("name"), str) else None
                mime = raw.get("mime_type") if isinstance(raw.get("mime_type"), str) else None
                return cls(
                    link,
                    _clean_name(name or _name_from_url(link, index)),
                    mime or "application/octet-stream",
                )
        raise _refuse(
            f"openaiFileIdRefs[{index}] is neither a link nor an object with 'download_link'.",
            "invalid_file_ref",
        )


def parse_refs(raw: Sequence[object]) -> list[FileRef]:
    if not raw:
        raise _refuse("openaiFileIdRefs is empty: attach a file to the chat first.", "no_files")
    if len(raw) > MAX_FILES_IN:
        raise _refuse(f"At most {MAX_FILES_IN} files per call.", "too_many_files")
    return [FileRef.parse(item, index) for index, item in enumerate(raw)]


def _clean_name(name: str) -> str:
    cleaned = _UNSAFE_NAME.sub("_", name).strip(" .") or "file"
    return cleaned[:200]


def _name_from_url(link: str, index: int) -> str:
    try:
        tail = URL(link).name
    except ValueError:
        tail = ""
    return _clean_name(tail or f"chat-file-{index + 1}")


# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64's well-known prefix
# (RFC 6052), IPv4-compatible (RFC 4291, deprecated) and IPv4-translated (RFC 2765). A
# gateway on the path turns them into that IPv4 address, so it is the one to check.
_LOW_32_BITS = tuple(ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))
# NAT64 for local use (RFC 8215): the IPv4 address may sit anywhere; never global.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address stands for (6to4, Teredo, NAT64, ...)."""
    found: list[ipaddress.IPv4Address] = []
    if any(address in network for network in _LOW_32_BITS):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address, loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _forbidden(address.ipv4_mapped, loopback)
        if loopback and address.is_loopback:
            return False
        if address in _NAT64_LOCAL:
            return True
        if any(_forbidden(v4, loopback=False) for v4 in _embedded_ipv4(address)):
            return True
    if loopback and address.is_loopback:
        return False
    return not address.is_global or address.is_multicast


class HostRules:
    """Where links may point: allowlisted names (`*.suffix` for subdomains), public addresses."""

    def __init__(self, hosts: Sequence[str], *, allow_loopback: bool) -> None:
        self.exact = frozenset(h.lower().rstrip(".") for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower().rstrip(".") for h in hosts if h.startswith("*."))
        self.allow_loopback = allow_loopback

    def check_url(self, link: str) -> URL:
        try:
            url = URL(link)
        except ValueError:
            raise _refuse("The file link is not a valid URL.", "invalid_file_link") from None
        if url.scheme != "https":
            raise _refuse("File links must use https.", "file_link_not_https")
        host = (url.host or "").lower().rstrip(".")
        if not host or url.user is not None or url.password is not None:
            raise _refuse("The file link has no usable host.", "invalid_file_link")
        if host not in self.exact and not any(host.endswith(s) for s in self.suffixes):
            raise _refuse(
                f"The file link's host {host[:100]!r} is not on this relay's allowlist "
                "(RELAY_ACTIONS_FILE_HOSTS).",
                "file_host_not_allowed",
                403,
            )
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return url
        self.check_address(literal)
        return url

    def check_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if _forbidden(address, self.allow_loopback):
            raise _refuse(
                "The file link points to a private, loopback or reserved address.",
                "file_address_not_allowed",
                403,
            )


class VettedResolver(AbstractResolver):
    """Resolves, then refuses the whole answer if any address is not public.

    aiohttp connects to exactly the addresses returned here, so the check pins them.
    """

    def __init__(self, rules: HostRules) -> None:
        self._rules = rules
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            self._rules.check_address(ipaddress.ip_address(answer["host"]))
        return answers

    async def close(self) -> None:
        await self._inner.close()


def _unwrap_refusal(exc: BaseException) -> Refused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True, slots=True)
class Fetcher:
    rules: HostRules
    max_bytes: int
    ca_file: Path | None = None

    def session(self) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        connector = aiohttp.TCPConnector(
            resolver=VettedResolver(self.rules), use_dns_cache=False, ssl=context, limit=4
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def open(
        self, session: aiohttp.ClientSession, ref: FileRef, deadline: Deadline
    ) -> aiohttp.ClientResponse:
        """The link's response head, after every redirect and check; the caller releases it."""
        url = self.rules.check_url(ref.url)
        for _ in range(_MAX_REDIRECTS + 1):
            left = deadline.remaining()
            if left <= 0.1:
                raise RelayError(504, "The file link did not answer in time.", code="timeout")
            timeout = aiohttp.ClientTimeout(
                total=left, sock_connect=_CONNECT_SECONDS, sock_read=_READ_SECONDS
            )
            try:
                response = await session.get(url, allow_redirects=False, timeout=timeout)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                refusal = _unwrap_refusal(exc)
                if refusal is not None:
                    raise refusal from None
                raise _refuse(
                    f"The file link could not be fetched ({type(exc).__name__}).",
                    "file_link_unreachable",
                    502 if not isinstance(exc, TimeoutError) else 504,
                ) from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("location", "")
                response.release()
                url = self.rules.check_url(str(url.join(URL(location))))
                continue
            if response.status != 200:
                response.release()
                raise _refuse(
                    f"The file link answered {response.status} (links expire after five minutes).",
                    "file_link_failed",
                    400,
                )
            length = response.content_length
            if length is not None and length > self.max_bytes:
                response.release()
                raise self.too_big()
            return response
        raise _refuse("The file link redirected too many times.", "too_many_redirects")

    def too_big(self) -> Refused:
        return _refuse(
            f"The file is larger than this relay's limit of {self.max_bytes} bytes.",
            "file_too_large",
            413,
        )


class LinkBody:
    """A link's body as upload chunks, cut at the size cap; remembers why it stopped.

    aiohttp reports a failing request body as its own connection error, so the reason
    (too big, link broke) is kept here for the caller to raise instead.
    """

    def __init__(self, response: aiohttp.ClientResponse, fetcher: Fetcher) -> None:
        self._response = response
        self._fetcher = fetcher
        self.failure: RelayError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        seen = 0
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                seen += len(chunk)
                if seen > self._fetcher.max_bytes:
                    self.failure = self._fetcher.too_big()
                    raise self.failure
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failure = RelayError(
                502, f"The file link broke off ({type(exc).__name__}).", code="file_link_failed"
            )
            raise self.failure from None

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


def upload_form(purpose: str, ref: FileRef, body: AsyncIterator[bytes]) -> aiohttp.MultipartWriter:
    """A `POST /files` form whose file part streams (chunked: its size is not known ahead)."""
    form = aiohttp.MultipartWriter("form-data")
    field = form.append(purpose)
    field.set_content_disposition("form-data", name="purpose")
    part = form.append_payload(AsyncIterablePayload(body, content_type=ref.mime_type))
    part.set_content_disposition("form-data", name="file", filename=ref.name)
    return form


def describe(ref: FileRef, uploaded: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": ref.name,
        "file_id": uploaded.get("id"),
        "bytes": uploaded.get("bytes"),
        "purpose": uploaded.get("purpose"),
        "status": uploaded.get("status"),
    }
