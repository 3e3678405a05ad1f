"""A list endpoint as one key sees it: only its own objects, with working cursor pagination.

The upstream is walked page by page from the client's `after` (any upstream id is a valid
cursor, and a key's own ids are upstream ids), keeping the key's objects until one more than
`limit` are found or the upstream has no more. So `has_more` is exact, `last_id` is the last
object returned, and following `after=last_id` returns every owned object exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from starlette.types import Send

from teamrelay.connections import UpstreamError
from teamrelay.errors import RelayError, bad_gateway
from teamrelay.forward import Call, Exchange
from teamrelay.headers import REQUEST_ID
from teamrelay.upstream import Upstream

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 10_000
UPSTREAM_PAGE: Final = 100

Owners = Callable[[Iterable[str]], Awaitable[dict[str, str]]]
Learn = Callable[[dict[str, Any]], None]


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise RelayError(
            400, f"Invalid 'limit': use 1 to {MAX_LIMIT}.", param="limit", code="invalid_value"
        )
    return int(value)


async def list_owned(
    upstream: Upstream,
    call: Call,
    key_id: str,
    owners: Owners,
    send: Send,
    learn: Learn | None = None,
) -> Exchange:
    path, _, query_string = call.target.partition("?")
    query = parse_qsl(query_string, keep_blank_values=True)
    options = dict(query)
    if "before" in options:
        raise RelayError(
            400,
            "'before' is not supported on this relay's filtered lists; page with 'after'.",
            param="before",
            code="invalid_value",
        )
    want = _limit(options.get("limit"))
    kept = [(name, value) for name, value in query if name not in ("limit", "after")]
    headers = [(name, value) for name, value in call.headers if name != b"accept-encoding"]
    exchange = Exchange()
    owned: list[dict[str, Any]] = []
    cursor = options.get("after")
    while len(owned) <= want:
        params = [*kept, ("limit", str(UPSTREAM_PAGE))] + ([("after", cursor)] if cursor else [])
        page, answer = await _page(upstream, f"{path}?{urlencode(params)}", headers, exchange)
        if page is None:
            await _send(send, exchange, call.request_id, answer)
            return exchange
        items = [item for item in page["data"] if isinstance(item, dict)]
        ids = [item["id"] for item in items if isinstance(item.get("id"), str)]
        mine = await owners(ids)
        for item in items:
            if mine.get(item.get("id", "")) == key_id:
                owned.append(item)
                if learn is not None:
                    learn(item)
        if not page.get("has_more") or not ids:
            break
        cursor = ids[-1]
    data = owned[:want]
    listing = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(owned) > want,
    }
    exchange.status = 200
    await _send(send, exchange, call.request_id, json.dumps(listing).encode())
    return exchange


async def _page(
    upstream: Upstream, target: str, headers: list[tuple[bytes, bytes]], exchange: Exchange
) -> tuple[dict[str, Any] | None, bytes]:
    """A parsed list page, or None and the upstream's answer to pass on as it came."""
    try:
        response = await upstream.pool.request("GET", target, headers, None)
        try:
            body = await response.read(upstream.read_timeout)
        finally:
            response.release()
    except UpstreamError as exc:
        raise bad_gateway(type(exc).__name__) from None
    exchange.status = response.status
    exchange.upstream_request_id = response.header(b"x-request-id")
    if response.status != 200:
        return None, body
    try:
        page = json.loads(body)
    except ValueError:
        page = None
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise RelayError(
            502, "The upstream answered a list in an unknown shape.", code="upstream_error"
        )
    return page, body


async def _send(send: Send, exchange: Exchange, request_id: bytes, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID, request_id),
    ]
    if exchange.upstream_request_id:
        headers.append((b"x-request-id", exchange.upstream_request_id.encode("latin-1")))
    await send({"type": "http.response.start", "status": exchange.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    exchange.bytes_out = len(body)
