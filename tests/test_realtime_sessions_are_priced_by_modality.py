"""A member's Realtime session is priced as OpenAI bills it: the text tokens of its responses
at the text rates, their audio tokens at the audio rates, in the ledger row and in the
member's dollar budget alike."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream
from servers import relay_in_thread
from teamkeys import create_keys_async
from teamrelay.ledger.db import create_engine
from teamrelay.ledger.models import BudgetRow
from teamrelay.ledger.prices import load_prices

TEXT_IN, CACHED, TEXT_OUT, AUDIO_IN, AUDIO_OUT = 4.00, 0.40, 16.00, 32.00, 64.00  # gpt-realtime


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if event["type"] == kind:
            return event  # type: ignore[no-any-return]


async def _session(url: str, secret: str) -> list[dict[str, Any]]:
    """A text answer, then a spoken one; the usage of each `response.done`."""
    usages = []
    headers = {"Authorization": f"Bearer {secret}"}
    async with connect(url, additional_headers=headers, open_timeout=5) as ws:
        await _next(ws, "session.created")
        item = {"type": "message", "role": "user", "content": [{"type": "input_text"}]}
        item["content"][0]["text"] = "tell me about the tides and the moon please"
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        for modalities in (["text"], ["audio"]):
            response = {"output_modalities": modalities}
            await ws.send(json.dumps({"type": "response.create", "response": response}))
            usages.append((await _next(ws, "response.done"))["response"]["usage"])
    return usages


def _billed(usage: dict[str, Any]) -> float:
    inputs, outputs = usage["input_token_details"], usage["output_token_details"]
    cached = inputs["cached_tokens"]
    dollars = (
        cached * CACHED
        + (inputs["text_tokens"] - cached) * TEXT_IN
        + inputs["audio_tokens"] * AUDIO_IN
        + outputs["text_tokens"] * TEXT_OUT
        + outputs["audio_tokens"] * AUDIO_OUT
    )
    return dollars / 1e6


async def _spent(url: str) -> float:
    engine = create_engine(url)
    async with engine.connect() as connection:
        spent = (await connection.execute(select(BudgetRow.spent))).scalars().all()
    await engine.dispose()
    return sum(spent)


def test_text_and_audio_tokens_of_a_session_take_their_own_rates(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    prices = load_prices().lookup("gpt-realtime")
    assert prices is not None
    assert (prices.input, prices.cached_input, prices.output) == (TEXT_IN, CACHED, TEXT_OUT)
    assert (prices.audio_input, prices.audio_output) == (AUDIO_IN, AUDIO_OUT)
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 1}))
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        ws_url = relay.base_url.replace("http://", "ws://", 1) + "/realtime?model=gpt-realtime"
        usages = asyncio.run(_session(ws_url, secrets["alice"]))
    text, spoken = usages
    assert text["output_token_details"]["audio_tokens"] == 0
    assert spoken["output_token_details"]["audio_tokens"] > 0
    assert spoken["input_token_details"]["cached_tokens"] > 0
    billed = _billed(text) + _billed(spoken)
    [row] = [r for r in asyncio.run(ledger_rows(url)) if r["operation"] == "x-realtimeWebSocket"]
    assert row["cost_usd"] == pytest.approx(billed)
    assert asyncio.run(_spent(url)) == pytest.approx(billed)


def test_a_session_that_spent_the_cap_leaves_the_next_one_refused(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, bob={"daily_usd": 0.001}))
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        ws_url = relay.base_url.replace("http://", "ws://", 1) + "/realtime?model=gpt-realtime"
        spent = sum(_billed(usage) for usage in asyncio.run(_session(ws_url, secrets["bob"])))
        assert spent > 0.001
        deadline = time.monotonic() + 5
        while asyncio.run(_spent(url)) < spent * 0.999:  # settled behind the session's end
            assert time.monotonic() < deadline, "the session's spend never reached the budget"
            time.sleep(0.05)
        upstream.clear_log()
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_session(ws_url, secrets["bob"]))
    assert refused.value.response.status_code == 429
    assert upstream.requests_to("/v1/realtime") == []
