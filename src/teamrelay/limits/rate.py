"""Requests and tokens per minute, per key, with the `limits` library.

State is in memory (`LoopMemoryStorage`), or in Redis when RELAY_REDIS_URL is set so every
relay process counts against the same limits. Requests use a moving window: exact (never more
than `rpm` in any 60 seconds; Redis applies each hit atomically in a script), but it keeps one
entry per request, so above `MOVING_WINDOW_MAX` requests a minute a sliding window counter
takes over (O(1) space; at a minute's boundary it may let one extra request through).
Tokens use a fixed window: a moving one would keep an entry per token, and a counter can be
reconciled, the estimate charged at admission corrected by the real usage when the answer
ends, before the next request is admitted (in memory; Redis gets it one round trip later).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from limits import RateLimitItem, RateLimitItemPerMinute, strategies
from limits.aio import storage as aio_storage
from limits.aio import strategies as aio_strategies

from teamrelay.errors import RelayError
from teamrelay.limits.memory import LoopMemoryStorage

T = TypeVar("T")
_NAMESPACE = "teamrelay"
MOVING_WINDOW_MAX = 10_000
_KEYS_CACHED = 10_000


class Counter(NamedTuple):
    """One key's counter under one limit, its storage key built once (as a strategy builds it)."""

    item: RateLimitItem
    key: str
    expiry: int


class Plan(NamedTuple):
    """A key's counters under its rpm and tpm, looked up once a request."""

    tokens: Counter | None
    requests: Counter | None


@dataclass(slots=True)
class TokenCharge:
    """Tokens charged to a key's current minute, to reconcile with what was used."""

    counter: Counter
    charged: int


def _reset_text(seconds: float) -> str:
    """OpenAI's style for `x-ratelimit-reset-*`: `1s`, `6m0s`, `20ms`."""
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def _refusal(what: str, limit: int, remaining: int, reset_at: float, extra: str) -> RelayError:
    wait = max(0.0, reset_at - time.time())
    headers = (
        (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        (f"x-ratelimit-limit-{what}".encode(), str(limit).encode()),
        (f"x-ratelimit-remaining-{what}".encode(), str(max(0, remaining)).encode()),
        (f"x-ratelimit-reset-{what}".encode(), _reset_text(wait).encode()),
    )
    return RelayError(
        429,
        f"Rate limit reached for this relay key: {limit} {what} per minute{extra}. "
        f"Please try again in {_reset_text(wait)}.",
        code="rate_limit_exceeded",
        type=what,
        headers=headers,
    )


async def _done(value: T | Awaitable[T]) -> T:
    """The same `limits` calls serve both backends: in memory they answer at once (the
    synchronous API: no lock round trips), with Redis they are awaited (the asyncio API)."""
    return await value if inspect.isawaitable(value) else value


class RateLimits:
    """The `limits` storages, called as its strategies call them.

    A strategy's `hit` is one storage call on a key it builds from the identifiers each time;
    building it was 40 % of an admission's two hits (13.4 -> 8.5 µs measured), so each key's
    storage keys are built once here, the same way, and the storage is called directly.
    """

    def __init__(self, redis_url: str | None) -> None:
        self.storage: Any
        # The hits the hot path makes: answered at once in memory, awaitables with Redis.
        self._add: Any
        self._enter: Any
        self._slide: Any
        if redis_url:
            self.storage = aio_storage.RedisStorage(
                f"async+{redis_url}", implementation="redispy", key_prefix="TEAMRELAY"
            )
            kinds: Any = aio_strategies
            self._add, self._enter, self._slide = (
                self.storage.incr,
                self.storage.acquire_entry,
                self.storage.acquire_sliding_window_entry,
            )
        else:
            memory = self.storage = LoopMemoryStorage()
            kinds = strategies
            self._add, self._enter, self._slide = memory.add, memory.enter, memory.slide
        # Whether to await a storage call is known here, so the hot path skips `_done`.
        self._in_memory = not redis_url
        # Redis corrections are awaited, so they go in batches off the request path.
        self._batched = bool(redis_url)
        self._requests = kinds.MovingWindowRateLimiter(self.storage)
        self._many_requests = kinds.SlidingWindowCounterRateLimiter(self.storage)
        self._tokens = kinds.FixedWindowRateLimiter(self.storage)
        self._plans: dict[tuple[str, int | None, int | None], Plan] = {}
        self._corrections: dict[str, tuple[Counter, int]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def counter(self, what: str, amount: int, key_id: str) -> Counter:
        """`what` ("tokens" or "requests") per minute, at most `amount`, for `key_id`."""
        item = RateLimitItemPerMinute(amount, namespace=_NAMESPACE)
        return Counter(item, item.key_for(what, key_id), item.get_expiry())

    def plan(self, key_id: str, rpm: int | None, tpm: int | None) -> Plan:
        plan = self._plans.get((key_id, rpm, tpm))
        if plan is None:
            if len(self._plans) >= _KEYS_CACHED:
                self._plans.clear()
            plan = self._plans[key_id, rpm, tpm] = Plan(
                None if tpm is None else self.counter("tokens", tpm, key_id),
                None if rpm is None else self.counter("requests", rpm, key_id),
            )
        return plan

    async def admit(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens: int
    ) -> TokenCharge | None:
        """Counts one request of `tokens` estimated tokens, or raises the 429 that refuses it.

        Tokens go first: their counter can be given back if the request limit then refuses.
        """
        charge = None
        tokens_used, requests = self.plan(key_id, rpm, tpm)
        if tokens_used is not None:
            tpm = tokens_used.item.amount
            cost = min(tokens, tpm)  # a request larger than the limit still gets through alone
            # FixedWindowRateLimiter.hit
            counted = self._add(tokens_used.key, tokens_used.expiry, cost)
            if (counted if self._in_memory else await counted) > tpm:
                await self._give_back(tokens_used, cost)
                stats = await _done(
                    self._tokens.get_window_stats(tokens_used.item, "tokens", key_id)
                )
                raise _refusal("tokens", tpm, stats.remaining, stats.reset_time, "")
            charge = TokenCharge(tokens_used, cost)
        if requests is not None:
            rpm = requests.item.amount
            if rpm <= MOVING_WINDOW_MAX:  # MovingWindowRateLimiter.hit
                hit = self._enter(requests.key, rpm, requests.expiry, 1)
            else:  # SlidingWindowCounterRateLimiter.hit
                hit = self._slide(requests.key, rpm, requests.expiry, 1)
            if not (hit if self._in_memory else await hit):
                if charge is not None:
                    await self._give_back(charge.counter, charge.charged)
                limiter = self._requests if rpm <= MOVING_WINDOW_MAX else self._many_requests
                stats = await _done(limiter.get_window_stats(requests.item, "requests", key_id))
                raise _refusal("requests", rpm, stats.remaining, stats.reset_time, "")
        return charge

    async def hit(self, item: RateLimitItem, what: str, identifier: str) -> bool:
        """One hit of a limit that is not a key's (e.g. OAuth registrations per address), in
        the same storage, so instances sharing Redis share it; False when it is spent."""
        return bool(await _done(self._requests.hit(item, what, identifier)))

    async def _give_back(self, counter: Counter, amount: int) -> None:
        """Never below zero, so a refund cannot become credit in the next minute."""
        held = await _done(self.storage.get(counter.key))
        if held > 0 and amount > 0:
            await _done(self.storage.incr(counter.key, counter.expiry, amount=-min(amount, held)))

    def reconcile(self, charge: TokenCharge, used: int) -> None:
        """Corrects the minute's count to the real usage, at once: the next request sees it.

        In memory that is one dictionary lookup. With Redis a flush starts now; the
        corrections that come while it is awaited are summed per counter and go in the next,
        so a busy key costs one round trip per flush, not per request.
        """
        difference = used - charge.charged
        if difference == 0:
            return
        counter = charge.counter
        if not self._batched:
            self.storage.correct(counter.key, counter.expiry, difference)
            return
        corrections = self._corrections
        held = corrections.get(counter.key)
        if held is not None:
            corrections[counter.key] = (counter, held[1] + difference)
            return
        corrections[counter.key] = (counter, difference)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while self._corrections:  # those that came while the last flush was awaited go next
            await self._flush()

    async def _flush(self) -> None:
        corrections, self._corrections = self._corrections, {}
        for counter, difference in corrections.values():
            with contextlib.suppress(Exception):  # a lost correction loosens one minute only
                if difference > 0:
                    await _done(self.storage.incr(counter.key, counter.expiry, amount=difference))
                elif difference < 0:
                    await self._give_back(counter, -difference)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush()
        if isinstance(self.storage, aio_storage.RedisStorage):
            client = getattr(self.storage.bridge, "storage", None)
            if client is not None:
                await client.aclose()
