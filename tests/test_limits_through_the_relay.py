"""Rate limits and budgets end to end: bursts and parallel requests through real relays.

Several relay processes share limits through Redis (rates) and the database (budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis
from sqlalchemy import insert

from dbfixtures import services_unavailable
from fakeupstream import FakeUpstream
from servers import RunningRelay, relay_in_thread, relay_process
from teamkeys import create_keys_async
from teamrelay.ledger.db import create_engine
from teamrelay.ledger.models import KeyRow, LedgerRow
from teamrelay.tap import estimate_request_tokens

REDIS_URL = "redis://127.0.0.1:6379/0"
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":20}'
ESTIMATE = estimate_request_tokens(CHAT)


@pytest.fixture
def redis_url() -> str:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        services_unavailable(f"Redis at 127.0.0.1:6379 unreachable ({exc})")
    return REDIS_URL


async def _fire(
    relays: list[RunningRelay], secret: str, count: int, method: str = "GET"
) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` requests released together, spread over `relays`."""
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    path, body = ("/models", None) if method == "GET" else ("/chat/completions", CHAT)
    async with aiohttp.ClientSession(headers=headers) as session:
        start = asyncio.Event()

        async def one(index: int) -> tuple[int, dict[str, str], bytes]:
            await start.wait()
            url = relays[index % len(relays)].base_url + path
            async with session.request(method, url, data=body) as response:
                headers = {name.lower(): value for name, value in response.headers.items()}
                return response.status, headers, await response.read()

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 30)


def _statuses(results: list[tuple[int, dict[str, str], bytes]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, _, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def test_a_burst_of_100_at_60_rpm_lets_exactly_60_through(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, alice={"rpm": 60})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        results = await _fire([relay], secrets["alice"], 100)
    assert _statuses(results) == {200: 60, 429: 40}
    refused = [(headers, body) for status, headers, body in results if status == 429]
    for headers, body in refused:
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-limit-requests"] == "60"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert sum(r.path == "/v1/models" for r in upstream.log) == 60


def test_the_sdk_sees_a_rate_limit_error_it_can_retry(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"rpm": 1}))
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as sdk,
    ):
        sdk.models.list()
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.models.list()
    assert refused.value.response.headers["retry-after"]
    assert refused.value.code == "rate_limit_exceeded"


@pytest.mark.services
async def test_two_relay_processes_sharing_redis_let_60_of_100_through(
    upstream: FakeUpstream, tmp_path: Path, redis_url: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, alice={"rpm": 60})
    env = {"RELAY_DATABASE_URL": url, "RELAY_REDIS_URL": redis_url}
    with (
        relay_process(upstream.base_url, **env) as first,
        relay_process(upstream.base_url, **env) as second,
    ):
        results = await _fire([first, second], secrets["alice"], 100)
    assert _statuses(results) == {200: 60, 429: 40}


async def test_twenty_parallel_requests_with_budget_for_five_admit_five(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, alice={"daily_tokens": 5 * ESTIMATE})
    upstream.faults("/v1/chat/completions", delay=1.0)  # none settles before all have asked
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        results = await _fire([relay], secrets["alice"], 20, method="POST")
    assert _statuses(results) == {200: 5, 429: 15}
    error = next(json.loads(body)["error"] for status, _, body in results if status == 429)
    assert error["code"] == "insufficient_quota"
    assert f"daily budget of {5 * ESTIMATE:,} tokens" in error["message"]
    assert sum(r.path == "/v1/chat/completions" for r in upstream.log) == 5


@pytest.mark.services
async def test_two_relay_processes_sharing_the_database_admit_five_of_twenty(
    upstream: FakeUpstream, db_url: str
) -> None:
    secrets = await create_keys_async(db_url, alice={"daily_tokens": 5 * ESTIMATE})
    upstream.faults("/v1/chat/completions", delay=1.0)
    with (
        relay_process(upstream.base_url, RELAY_DATABASE_URL=db_url) as first,
        relay_process(upstream.base_url, RELAY_DATABASE_URL=db_url) as second,
    ):
        results = await _fire([first, second], secrets["alice"], 20, method="POST")
    assert _statuses(results) == {200: 5, 429: 15}


async def _key_id(url: str, name: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(KeyRow.__table__.select().where(KeyRow.name == name))
            return str(rows.one().id)
    finally:
        await engine.dispose()


async def _spent_earlier(url: str, key_id: str, tokens: int) -> None:
    engine = create_engine(url)
    row = {
        "ts": datetime.now(UTC) - timedelta(seconds=1),
        "relay_request_id": "req_before",
        "key_id": key_id,
        "key_name": "alice",
        "method": "POST",
        "operation": "createChatCompletion",
        "path": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "duration_ms": 1.0,
        "bytes_in": 1,
        "bytes_out": 1,
        "streamed": False,
        "aborted": False,
        "input_tokens": tokens,
        "output_tokens": 0,
    }
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(LedgerRow), [row])
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _sdk(relay: RunningRelay, secret: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=relay.base_url, api_key=secret, max_retries=0) as sdk:
        yield sdk


def _chat(sdk: openai.OpenAI) -> None:
    sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=20
    )


@pytest.mark.services
async def test_a_spent_budget_is_refused_everywhere_until_the_window_resets(
    upstream: FakeUpstream, db_url: str
) -> None:
    cap = 10 * ESTIMATE
    secrets = await create_keys_async(
        db_url, alice={"daily_tokens": cap}, bob={"daily_tokens": 2 * ESTIMATE}
    )
    await _spent_earlier(db_url, await _key_id(db_url, "alice"), cap - ESTIMATE // 2)
    tomorrow = str(24 * 3600)
    with (
        relay_process(upstream.base_url, RELAY_DATABASE_URL=db_url) as first,
        relay_process(upstream.base_url, RELAY_DATABASE_URL=db_url) as second,
    ):
        for relay in (first, second):  # the ledger shows Alice spent: refused by both
            with _sdk(relay, secrets["alice"]) as sdk, pytest.raises(openai.RateLimitError) as no:
                _chat(sdk)
            assert no.value.code == "insufficient_quota"
            assert "daily budget" in no.value.message
            resets = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d 00:00 UTC")
            assert resets in no.value.message

        with _sdk(first, secrets["bob"]) as sdk:  # Bob spends his through the first relay
            answered, refusal = 0, None
            while refusal is None and answered < 40:
                try:
                    _chat(sdk)
                    answered += 1
                    await asyncio.sleep(0.2)  # settled: the next is judged on real usage
                except openai.RateLimitError as refused:
                    refusal = refused.code
            assert refusal == "insufficient_quota"
            assert answered >= 1
        with _sdk(second, secrets["bob"]) as sdk, pytest.raises(openai.RateLimitError):
            _chat(sdk)

    with relay_process(
        upstream.base_url, RELAY_DATABASE_URL=db_url, RELAY_TEST_CLOCK_OFFSET=tomorrow
    ) as next_day:
        for name in ("alice", "bob"):
            with _sdk(next_day, secrets[name]) as sdk:
                _chat(sdk)


async def test_twenty_tiny_sdk_calls_in_a_burst_fit_5000_tokens_per_minute(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, alice={"tpm": 5000})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        async with openai.AsyncOpenAI(
            base_url=relay.base_url, api_key=secrets["alice"], max_retries=0
        ) as sdk:
            messages: list[Any] = [{"role": "user", "content": "hi"}]
            answers = await asyncio.gather(
                *(
                    sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
                    for _ in range(20)
                )
            )
            used = sum(a.usage.total_tokens for a in answers if a.usage is not None)
            assert used < 1000
            # Each reserves about 1,000 and uses about 33, settled as its answer ends: the
            # next call sees the refund, so five times the minute's tokens get reserved.
            for _ in range(25):
                await sdk.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, max_tokens=1000
                )
