"""The relay's upstream is a real nginx with TLS from a private CA (`RELAY_UPSTREAM_CA_FILE`)
that closes idle connections after 1 s and every connection after 3 requests, as load balancers
in front of an API do. A thousand mixed SDK calls (JSON, SSE streams, uploads, reads), with
pauses past the idle limit, all succeed, and no POST reaches the API twice."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from fakeupstream import FakeUpstream
from nginxupstream import nginx_upstream
from servers import RELAY_KEY, relay_in_thread

CALLS = 1000
CONCURRENCY = 8


@pytest.fixture
def nginx(upstream: FakeUpstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with nginx_upstream(upstream.base_url, tmp_path) as running:
        yield running


async def _call(sdk: openai.AsyncOpenAI, kind: int, index: int) -> str:
    """One SDK call; returns the method it made."""
    if kind == 0:
        chat = await sdk.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": f"hello {index}"}]
        )
        assert chat.choices[0].message.content
        return "POST"
    if kind == 1:
        stream = await sdk.chat.completions.create(
            model="gpt-5-mini",
            messages=[{"role": "user", "content": f"stream {index}"}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        assert chunks
        return "POST"
    if kind == 2:
        made = await sdk.files.create(
            file=(f"notes-{index}.jsonl", b'{"a": 1}\n' * 200), purpose="assistants"
        )
        assert made.id
        return "POST"
    models = await sdk.models.list()
    assert models.data is not None
    return "GET"


async def test_a_thousand_mixed_calls_through_a_strict_nginx_all_succeed_none_resent(
    nginx: tuple[str, Path], upstream: FakeUpstream
) -> None:
    base_url, ca_file = nginx
    rng = random.Random(17)
    kinds = [rng.randrange(4) for _ in range(CALLS)]
    sent = {"POST": 0, "GET": 0}
    with relay_in_thread(base_url, RELAY_UPSTREAM_CA_FILE=str(ca_file)) as relay:
        async with openai.AsyncOpenAI(
            base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0, timeout=20
        ) as sdk:
            semaphore = asyncio.Semaphore(CONCURRENCY)

            async def one(kind: int, index: int) -> str:
                async with semaphore:
                    return await _call(sdk, kind, index)

            for start in range(0, CALLS, 100):
                batch = kinds[start : start + 100]
                methods = await asyncio.gather(
                    *(one(kind, start + i) for i, kind in enumerate(batch))
                )
                for method in methods:
                    sent[method] += 1
                if start // 100 % 3 == 1:
                    # Every pooled connection is past nginx's 1 s idle limit, its FIN read (a
                    # loaded machine may take a while to read it).
                    await asyncio.sleep(1.5)
    posts = [r for r in upstream.log if r.method == "POST"]
    assert sent["POST"] + sent["GET"] == CALLS
    assert len(posts) == sent["POST"]
