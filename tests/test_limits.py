"""Rate limits and the pieces budgets are made of: limits parsing, windows, estimates."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from dbfixtures import services_unavailable
from teamrelay.catalog import load_catalog
from teamrelay.errors import RelayError
from teamrelay.ledger.prices import load_prices
from teamrelay.limits import Cap, RateLimits, checked_limits, estimate, parse_limits, window_of
from teamrelay.limits.estimate import DEFAULT_OUTPUT_TOKENS, NOTHING

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_limits_parse_into_rates_caps_and_isolation() -> None:
    limits = parse_limits(
        {"rpm": 60, "tpm": 1000, "daily_usd": 5, "monthly_tokens": 10**6, "isolation": "shared"}
    )
    assert (limits.rpm, limits.tpm, limits.isolation) == (60, 1000, "shared")
    assert limits.caps == (Cap("day", "usd", 5.0), Cap("month", "tokens", 1e6))
    assert parse_limits({}).caps == ()
    assert not parse_limits({}).rated


@pytest.mark.parametrize(
    ("name", "value"),
    [("rpm", -1), ("rpm", 1.5), ("tpm", "lots"), ("daily_usd", "nan"), ("isolation", "x")],
)
def test_bad_limit_values_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        checked_limits({name: value})


def test_unknown_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown limit"):
        checked_limits({"requests_per_day": 5})


def test_windows_are_utc_days_and_months() -> None:
    moment = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    day, month = window_of("day", moment), window_of("month", moment)
    assert (day.label, day.end) == ("2026-12-31", datetime(2027, 1, 1, tzinfo=UTC))
    assert (month.label, month.start) == ("2026-12", datetime(2026, 12, 1, tzinfo=UTC))
    assert month.end == datetime(2027, 1, 1, tzinfo=UTC)


def test_estimate_reads_the_output_cap_and_prices_the_model() -> None:
    catalog, prices = load_catalog(), load_prices()
    chat = catalog.by_id["createChatCompletion"]
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":50}'
    guess = estimate(chat, body, prices)
    assert guess.input_tokens == -(-len(body) // 4)
    assert guess.output_tokens == 50
    assert guess.usd > 0
    assert guess.model == "gpt-4o-mini"
    uncapped = estimate(chat, b'{"model":"gpt-4o-mini","messages":[]}', prices)
    assert uncapped.output_tokens == DEFAULT_OUTPUT_TOKENS
    assert estimate(catalog.by_id["listFiles"], None, prices) is NOTHING


async def _burst(rates: RateLimits, key_id: str, count: int, rpm: int) -> list[RelayError | None]:
    async def one() -> RelayError | None:
        try:
            await rates.admit(key_id, rpm, None, 0)
        except RelayError as error:
            return error
        return None

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_a_burst_of_100_lets_exactly_60_through_at_60_rpm() -> None:
    rates = RateLimits(None)
    try:
        results = await _burst(rates, "k1", 100, 60)
    finally:
        await rates.close()
    refusals = [r for r in results if r is not None]
    assert len(refusals) == 40
    refusal = refusals[0]
    assert refusal.status == 429
    assert refusal.code == "rate_limit_exceeded"
    headers = dict(refusal.headers)
    assert 1 <= int(headers[b"retry-after"]) <= 60
    assert headers[b"x-ratelimit-limit-requests"] == b"60"
    assert headers[b"x-ratelimit-remaining-requests"] == b"0"


@pytest.mark.services
async def test_two_limiters_sharing_redis_count_together() -> None:
    first, second = RateLimits(REDIS_URL), RateLimits(REDIS_URL)
    key_id = "test-" + secrets.token_hex(6)
    try:
        try:
            await first.storage.check() or services_unavailable("Redis unreachable")
        except OSError as exc:
            services_unavailable(f"Redis at 127.0.0.1:6379 unreachable ({exc})")
        results = await asyncio.gather(
            _burst(first, key_id, 50, 60), _burst(second, key_id, 50, 60)
        )
    finally:
        await first.close()
        await second.close()
    assert sum(r is None for half in results for r in half) == 60


async def test_tokens_per_minute_refuse_and_reconcile_to_real_usage() -> None:
    rates = RateLimits(None)
    try:
        charge = await rates.admit("k2", None, 1000, 800)
        assert charge is not None
        assert charge.charged == 800
        with pytest.raises(RelayError) as refused:
            await rates.admit("k2", None, 1000, 300)
        assert refused.value.type == "tokens"
        assert dict(refused.value.headers)[b"x-ratelimit-remaining-tokens"] == b"200"
        rates.reconcile(charge, 100)  # it used far less than estimated
        await asyncio.sleep(0.2)  # corrections are applied together, shortly after
        assert await rates.admit("k2", None, 1000, 300) is not None
    finally:
        await rates.close()


async def test_the_next_request_sees_the_refund_of_the_last_at_once() -> None:
    rates = RateLimits(None)
    try:
        for _ in range(50):  # each estimated 300, each used 10: no waiting for a batch
            charge = await rates.admit("k7", None, 1000, 300)
            assert charge is not None
            rates.reconcile(charge, 10)
        item = rates.counter("tokens", 1000, "k7").item
        assert rates._tokens.get_window_stats(item, "tokens", "k7").remaining == 1000 - 50 * 10
    finally:
        await rates.close()


def test_uncapped_requests_reserve_the_output_their_operation_makes() -> None:
    catalog, prices = load_catalog(), load_prices()
    body = b'{"model":"m","input":"hi"}'
    for operation_id in ("createChatCompletion", "createResponse"):
        guess = estimate(catalog.by_id[operation_id], body, prices, text_output=300)
        assert guess.output_tokens == 300
    assert estimate(catalog.by_id["createEmbedding"], body, prices).output_tokens == 0
    assert estimate(catalog.by_id["createImage"], body, prices).output_tokens == 1024
    capped = b'{"model":"m","input":"hi","max_output_tokens":40}'
    assert estimate(catalog.by_id["createResponse"], capped, prices).output_tokens == 40


async def test_corrections_made_while_a_flush_runs_are_applied_after_it() -> None:
    rates = RateLimits(None)
    try:
        first = await rates.admit("k5", None, 1000, 500)
        second = await rates.admit("k6", None, 1000, 500)
        assert first is not None
        assert second is not None
        rates._batched = True  # as with Redis, whose corrections are awaited
        flush = rates._flush

        async def flush_then_correct() -> None:  # as if a Redis round trip let it in
            await flush()
            rates._flush = flush  # type: ignore[method-assign]
            rates.reconcile(second, 100)

        rates._flush = flush_then_correct  # type: ignore[method-assign]
        rates.reconcile(first, 100)
        await asyncio.sleep(0.3)
        for key_id in ("k5", "k6"):
            item = rates.counter("tokens", 1000, key_id).item
            assert rates._tokens.get_window_stats(item, "tokens", key_id).remaining == 900
    finally:
        await rates.close()


async def test_a_refused_request_gives_its_tokens_back() -> None:
    rates = RateLimits(None)
    try:
        await rates.admit("k3", 1, 1000, 100)
        with pytest.raises(RelayError):
            await rates.admit("k3", 1, 1000, 100)  # refused by rpm after tokens were counted
        stats = rates._tokens.get_window_stats(
            rates.counter("tokens", 1000, "k3").item, "tokens", "k3"
        )
        assert stats.remaining == 900
    finally:
        await rates.close()


async def test_large_request_limits_count_in_constant_space() -> None:
    rates = RateLimits(None)
    try:
        results = await _burst(rates, "k4", 120, 100_000)
        assert results == [None] * 120
        assert not rates.storage.entries  # no per-request entries
    finally:
        await rates.close()
