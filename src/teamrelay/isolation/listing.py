"""A list endpoint as one key sees it: its own ids from the ownership table, their objects
from the upstream, paged as OpenAI pages.

Which ids a page holds comes from the database (`Owners.listed`): the key's ids in the
collection in the order they were recorded, after `after` and before `before`, `limit` of
them, `has_more` if more are recorded. So a list costs what the key owns, never a walk of
the organisation's collection. The objects are then fetched as the upstream offers them: one
page of its own list (its largest) from the key's id just before this page, since any id is
a cursor, which usually holds them all, and a retrieve for each id that page missed. An id
the upstream answers 404 for (deleted, expired) is dropped from the table and the answer.
Filters (`purpose`, `model`, ...) go to the upstream's list, read from its top (the one place
a filter is sure to be honoured; if that page ends the list, an id it lacks does not pass),
and are compared with the fields of a retrieved object. Every upstream call after the first
counts against the key's requests per minute (`Charge`). 10 files among 10,000: one call.

`has_more` says more ids are recorded past the page; if the upstream lost all of them, or
none passes a filter, the next page is empty.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import Send

from teamrelay.connections import UpstreamError
from teamrelay.errors import RelayError, bad_gateway
from teamrelay.forward import Call, Exchange
from teamrelay.headers import REQUEST_ID
from teamrelay.isolation.owners import Owners
from teamrelay.upstream import Upstream

MAX_LIMIT: Final = 10_000
_RETRIEVES_AT_ONCE: Final = 8
# Retrieves one list request makes at most: past them the page ends early (has_more), so a
# page of ids the upstream's list pages missed never takes longer than an Action may wait.
RETRIEVES_A_REQUEST = 100
_PAGING: Final = frozenset({"limit", "after", "before", "order"})
# Query parameters of list operations that shape the answer without selecting objects.
_NOT_FILTERS: Final = _PAGING | {"include", "include[]", "order_by"}

Learn = Callable[[dict[str, Any]], None]
Charge = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Paging:
    """A list operation's defaults in the pinned spec, and the most one upstream page holds."""

    default_limit: int = 20
    largest_page: int = 100
    descending: bool = True


DEFAULT_PAGING: Final = Paging()
PAGING: Final = {
    "/files": Paging(default_limit=10_000, largest_page=10_000),
    "/chat/completions": Paging(descending=False),
}


class _Passed(Exception):
    """An upstream answer that is the client's answer as it came (an error, a 429)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


def _limit(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise RelayError(
            400, f"Invalid 'limit': use 1 to {MAX_LIMIT}.", param="limit", code="invalid_value"
        )
    return int(value)


def _descending(value: str | None, paging: Paging) -> bool:
    if value is None:
        return paging.descending
    if value not in ("asc", "desc"):
        raise RelayError(400, f"Invalid 'order': {value!r}; use 'asc' or 'desc'.", param="order")
    return value == "desc"


def _options(query: list[tuple[str, str]]) -> dict[str, str]:
    """The paging parameters, each given at most once (two `after`s are not a cursor)."""
    options: dict[str, str] = {}
    for name, value in query:
        if name in _PAGING:
            if name in options:
                raise RelayError(400, f"'{name}' is given twice.", param=name)
            options[name] = value
    return options


def matches(item: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
    """Whether a retrieved object passes the list's filters, as the upstream's list would:
    `purpose=batch` against its `purpose`, `metadata[k]=v` against its metadata."""
    for name, value in filters:
        if name.startswith("metadata[") and name.endswith("]"):
            metadata = item.get("metadata")
            actual = metadata.get(name[9:-1]) if isinstance(metadata, dict) else None
        else:
            actual = item.get(name)
        if actual != value:
            return False
    return True


async def get(
    upstream: Upstream,
    target: str,
    headers: list[tuple[bytes, bytes]],
    exchange: Exchange | None = None,
) -> tuple[int, bytes]:
    """One GET through the relay's upstream client: its status and whole body. The first
    upstream request id goes on `exchange`, for the ledger and the client."""
    try:
        response = await upstream.pool.request("GET", target, headers, None)
        try:
            body = await response.read(upstream.read_timeout)
        finally:
            response.release()
    except UpstreamError as exc:
        raise bad_gateway(type(exc).__name__) from None
    if exchange is not None and exchange.upstream_request_id is None:
        exchange.upstream_request_id = response.header(b"x-request-id")
    return response.status, body


EMPTY_LIST: Final = (
    b'{"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}'
)


@dataclass(slots=True)
class _Found:
    items: dict[str, dict[str, Any]]
    gone: list[str]
    settled: int  # how many of the ids, from the first, are decided


class _Fetcher:
    """The upstream calls of one list request, counted. `walk` is the query of the
    upstream's list (the client's filters and order), `filters` what selects objects."""

    def __init__(
        self,
        upstream: Upstream,
        path: str,
        headers: list[tuple[bytes, bytes]],
        exchange: Exchange,
        charge: Charge,
        *,
        walk: list[tuple[str, str]],
        filters: list[tuple[str, str]],
        paging: Paging,
        retrievable: bool,
    ) -> None:
        self.upstream = upstream
        self.path = path
        self.headers = headers
        self.exchange = exchange
        self.charge = charge
        self.walk = walk
        self.filters = filters
        self.paging = paging
        self.retrievable = retrievable
        self.calls = 0
        self._retrieves_left = RETRIEVES_A_REQUEST
        # The list's first page (all of it, for a collection without retrieves), once read,
        # and whether it was the whole list.
        self._top: dict[str, dict[str, Any]] | None = None
        self._top_is_all = False

    async def _get(self, target: str) -> tuple[int, bytes]:
        return await get(self.upstream, target, self.headers, self.exchange)

    async def _spend(self, calls: int) -> None:
        """The request itself paid for one upstream call; the rest count as requests too."""
        extra = calls if self.calls else calls - 1
        self.calls += calls
        if extra > 0:
            await self.charge(extra)

    async def _page(self, after: str | None) -> tuple[list[dict[str, Any]], bool] | None:
        """One page of the upstream's list and whether it is the last, or None if the
        upstream refused it (an unknown cursor)."""
        await self._spend(1)
        params = [*self.walk, ("limit", str(self.paging.largest_page))]
        params += [("after", after)] if after else []
        status, body = await self._get(f"{self.path}?{urlencode(params)}")
        if status != 200:
            return None
        try:
            page = json.loads(body)
        except ValueError:
            page = None
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise RelayError(
                502, "The upstream answered a list in an unknown shape.", code="upstream_error"
            )
        listed = [item for item in page["data"] if isinstance(item, dict)]
        listed = [item for item in listed if isinstance(item.get("id"), str)]
        return listed, not page.get("has_more") or not listed

    async def _read_top(self) -> None:
        self._top = {}
        after = None
        while (walked := await self._page(after)) is not None:
            listed, last = walked
            self._top.update((item["id"], item) for item in listed)
            if last:
                self._top_is_all = True
                return
            if self.retrievable:
                return
            after = listed[-1]["id"]

    async def objects(self, ids: list[str], walk_from: str | None, *, progress: bool) -> _Found:
        """The current objects of `ids` that pass the filters, and the ids the upstream lost.

        A filter is sure to be honoured only from the top of the list, so a filtered list
        reads the upstream's first page (once a request); without a filter the page from
        `walk_from` (the key's id just before `ids`) is read. A page that ends the list holds
        every object that passes. The ids still missing are retrieved one by one, up to
        `RETRIEVES_A_REQUEST`; past them only the first ids are settled, once the answer
        holds an object (`progress`, or one among them): an empty page would end the SDK's
        paging.
        """
        pool = self._top or {}
        whole = self._top_is_all
        several = len(ids) > 1 or self.filters or not self.retrievable
        if not whole and not set(ids) <= pool.keys() and several:
            if self._top is None and (walk_from is None or self.filters or not self.retrievable):
                await self._read_top()
                pool, whole = self._top or {}, self._top_is_all
            elif walk_from is not None and not self.filters:
                walked = await self._page(walk_from)
                pool = {**pool, **{item["id"]: item for item in walked[0]}} if walked else pool
        items = {object_id: pool[object_id] for object_id in ids if object_id in pool}
        missing = [object_id for object_id in ids if object_id not in items]
        if not missing or (whole and self.filters) or not self.retrievable:
            return _Found(items, [], len(ids))
        now = missing[: max(self._retrieves_left, 0)]
        gone = await self._settle(now, items)
        settled = len(ids)
        if len(now) < len(missing):
            settled = ids.index(missing[len(now)])
            if not (progress or any(object_id in items for object_id in ids[:settled])):
                gone += await self._settle(missing[len(now) :], items)
                settled = len(ids)
        return _Found(items, gone, settled)

    async def _settle(self, missing: list[str], items: dict[str, dict[str, Any]]) -> list[str]:
        """Retrieves `missing` into `items` where they pass; returns those that are gone."""
        if not missing:
            return []
        self._retrieves_left -= len(missing)
        gone = []
        for object_id, item in (await self._retrieve(missing)).items():
            if item is None:
                gone.append(object_id)
            elif matches(item, self.filters):
                items[object_id] = item
        return gone

    async def _retrieve(self, object_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Each object by id; None for one the upstream does not know (404)."""
        await self._spend(len(object_ids))
        slots = asyncio.Semaphore(_RETRIEVES_AT_ONCE)

        async def one(object_id: str) -> dict[str, Any] | None:
            async with slots:
                status, body = await self._get(f"{self.path}/{quote(object_id, safe='')}")
            if status == 404:
                return None
            if status != 200:
                raise _Passed(status, body)
            try:
                item = json.loads(body)
            except ValueError:
                item = None
            if not isinstance(item, dict) or item.get("id") != object_id:
                raise RelayError(
                    502,
                    "The upstream answered a retrieve in an unknown shape.",
                    code="upstream_error",
                )
            return item

        found = await asyncio.gather(*(one(object_id) for object_id in object_ids))
        return dict(zip(object_ids, found, strict=True))


async def list_owned(
    upstream: Upstream,
    call: Call,
    key_id: str,
    collection: str,
    owners: Owners,
    send: Send,
    *,
    retrievable: bool,
    charge: Charge,
    learn: Learn | None = None,
) -> Exchange:
    path, _, query_string = call.target.partition("?")
    query = parse_qsl(query_string, keep_blank_values=True)
    options = _options(query)
    paging = PAGING.get(collection, DEFAULT_PAGING)
    want = _limit(options.get("limit"), paging.default_limit)
    descending = _descending(options.get("order"), paging)
    filters = [(name, value) for name, value in query if name not in _NOT_FILTERS]
    walk = [(name, value) for name, value in query if name not in ("limit", "after", "before")]
    after, before = options.get("after"), options.get("before")
    backward = before is not None and after is None  # the page just before `before`
    start, stop = (before, after) if backward else (after, before)
    headers = [(name, value) for name, value in call.headers if name != b"accept-encoding"]
    exchange = Exchange()
    fetcher = _Fetcher(
        upstream,
        path,
        headers,
        exchange,
        charge,
        walk=walk,
        filters=filters,
        paging=paging,
        retrievable=retrievable,
    )
    kept: list[dict[str, Any]] = []
    has_more = False
    position = start
    try:
        while True:
            need = want - len(kept)
            try:
                ids = await owners.listed(
                    key_id,
                    collection,
                    descending=descending != backward,
                    count=need + 1,
                    after=position,
                    before=stop,
                )
            except LookupError as unknown:
                raise _unknown_cursor(str(unknown.args[0])) from None
            page, rest = ids[:need], ids[need:]
            if not page:
                break
            # The upstream walks in the list's order, from the key's id just before the page.
            walk_from = (rest[0] if rest else None) if backward else position
            found = await fetcher.objects(page, walk_from, progress=bool(kept))
            await owners.forget(key_id, found.gone)
            settled = page[: found.settled]
            kept.extend(found.items[object_id] for object_id in settled if object_id in found.items)
            if len(settled) < len(page):
                has_more = True  # the rest next time, from the last object answered
                break
            if len(kept) == want or not rest:
                has_more = bool(rest) and len(kept) == want
                break
            position = page[-1]
    except _Passed as passed:
        exchange.status = passed.status
        await send_answer(send, exchange, call.request_id, passed.body)
        return exchange
    if backward:
        kept.reverse()
    if learn is not None:
        for item in kept:
            learn(item)
    listing = {
        "object": "list",
        "data": kept,
        "first_id": kept[0]["id"] if kept else None,
        "last_id": kept[-1]["id"] if kept else None,
        "has_more": has_more,
    }
    exchange.status = 200
    await send_answer(send, exchange, call.request_id, json.dumps(listing).encode())
    return exchange


def _unknown_cursor(cursor: str) -> RelayError:
    return RelayError(404, f"No object found with id '{cursor}'.", type="invalid_request_error")


async def send_answer(send: Send, exchange: Exchange, request_id: bytes, body: bytes) -> None:
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
