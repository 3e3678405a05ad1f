"""The limits step of the hot path: rate limits and budgets for one request, then settling.

A key whose `limits` mapping is empty costs one truth test here. A key with only rate limits
costs a few in-memory (or one Redis) operations, never a database round trip; only keys with
budgets reserve in the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from limits.errors import StorageError
from redis.exceptions import RedisError

from teamrelay.body import RequestBody
from teamrelay.catalog import Operation
from teamrelay.errors import RelayError
from teamrelay.keys.store import KeyRecord
from teamrelay.ledger.prices import Prices
from teamrelay.limits.billed import (
    declared_length,
    form_fields,
    is_unpriced,
    priced,
    unpriced_model,
)
from teamrelay.limits.budget import Budgets, Reservation
from teamrelay.limits.estimate import (
    DEFAULT_OUTPUT_TOKENS,
    MODEL_SESSIONS,
    Actual,
    Estimate,
    Used,
    actual_of,
    estimate,
)
from teamrelay.limits.policy import NO_LIMITS, KeyLimits, parse_limits
from teamrelay.limits.rate import RateLimits, TokenCharge

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000


@dataclass(slots=True)
class Admitted:
    """What a request holds while it runs; released by `Limits.settle`."""

    guess: Estimate
    priced: bool
    charge: TokenCharge | None = None
    reservation: Reservation | None = None


class Limits:
    def __init__(
        self,
        rates: RateLimits,
        budgets: Budgets,
        prices: Prices,
        text_output: int = DEFAULT_OUTPUT_TOKENS,
        *,
        allow_unpriced: bool = False,
    ) -> None:
        self.rates = rates
        self.budgets = budgets
        self.prices = prices
        self.text_output = text_output  # RELAY_DEFAULT_OUTPUT_TOKENS
        self.allow_unpriced = allow_unpriced  # RELAY_UNPRICED=allow
        self._parsed: dict[str, tuple[object, KeyLimits]] = {}

    def of(self, key: KeyRecord) -> KeyLimits:
        """The key's parsed limits, re-parsed only when its record was reloaded."""
        if not key.limits:
            return NO_LIMITS
        cached = self._parsed.get(key.id)
        if cached is not None and cached[0] is key.limits:
            return cached[1]
        try:
            parsed = parse_limits(key.limits)
        except ValueError as exc:
            log.error("key %s has unusable limits, enforcing none: %s", key.id, exc)
            parsed = NO_LIMITS
        if len(self._parsed) >= _CACHE_LIMIT:
            self._parsed.clear()
        self._parsed[key.id] = (key.limits, parsed)
        return parsed

    async def admit(
        self,
        key: KeyRecord,
        operation: Operation,
        body: bytes | RequestBody | None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> Admitted | None:
        """None when nothing needs settling; raises the 429 that refuses the request, or the
        403 for a model without a price on a key with a dollar cap. `headers` are the upstream
        call's (an upload's Content-Length prices its audio minutes)."""
        limits = self.of(key)
        if not (limits.rated or limits.caps):
            return None
        guess = estimate(
            operation, body, self.prices, priced=limits.priced, text_output=self.text_output
        )
        if limits.priced and operation.runs_model:
            guess = await self._priced(operation, body, guess, headers)
        admitted = Admitted(guess, limits.priced)
        if limits.rated:
            try:
                admitted.charge = await self.rates.admit(
                    key.id, limits.rpm, limits.tpm, guess.tokens
                )
            except (StorageError, RedisError, OSError) as exc:
                log.warning("rate limit storage unavailable, not limiting: %s", exc)
        if limits.caps and (operation.runs_model or operation.operation_id in MODEL_SESSIONS):
            try:
                admitted.reservation = await self.budgets.reserve(key.id, limits.caps, guess)
            except RelayError:
                if admitted.charge is not None:
                    self.rates.reconcile(admitted.charge, 0)
                raise
        return admitted

    async def count_requests(self, key: KeyRecord, count: int) -> None:
        """Upstream calls one request makes beyond its own (a filtered list's fetches) count
        against the key's requests per minute; raises the 429 once they pass it."""
        limits = self.of(key)
        if limits.rpm is None:
            return
        try:
            for _ in range(count):
                await self.rates.admit(key.id, limits.rpm, None, 0)
        except (StorageError, RedisError, OSError) as exc:
            log.warning("rate limit storage unavailable, not limiting: %s", exc)

    async def _priced(
        self,
        operation: Operation,
        body: bytes | RequestBody | None,
        guess: Estimate,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> Estimate:
        form, length = None, None
        if isinstance(body, RequestBody):
            form, length = await form_fields(body), declared_length(headers)
        guess = priced(operation, body, guess, self.prices, form=form, length=length)
        if guess.model and not self.allow_unpriced and is_unpriced(guess.model, self.prices):
            raise unpriced_model(guess.model)
        return guess

    def settle(self, admitted: Admitted, used: Used) -> None:
        actual = actual_of(used, admitted.guess, self.prices, priced=admitted.priced)
        if admitted.charge is not None:
            self.rates.reconcile(admitted.charge, actual.tokens)
        if admitted.reservation is not None:
            self.budgets.settle(admitted.reservation, actual)

    def release(self, admitted: Admitted) -> None:
        """A request refused after admission (its upstream never answered): it used nothing."""
        if admitted.charge is not None:
            self.rates.reconcile(admitted.charge, 0)
        if admitted.reservation is not None:
            self.budgets.settle(admitted.reservation, Actual(tokens=0, usd=0.0))
