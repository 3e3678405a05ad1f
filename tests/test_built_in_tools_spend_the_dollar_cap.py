"""Built-in tools are billed per call: a member's web searches, file searches, code
interpreter containers, generated images and search-model answers spend its dollar cap and
cost what they bill in the ledger, read from compressed answers and streams alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream
from servers import relay_in_thread
from teamkeys import create_keys_async
from teamrelay.cli import app
from teamrelay.ledger.db import create_engine
from teamrelay.ledger.models import BudgetRow

MODEL = "gpt-4.1-nano"
TOKENS_AT_MOST = 0.0001  # what the few tokens of each call cost, at gpt-4.1-nano's rates


def _usage(url: str) -> dict[str, Any]:
    shown = CliRunner().invoke(
        app, ["usage", "--json", "--by", "operation"], env={"RELAY_DATABASE_URL": url}
    )
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    return {group["operation"]: group for group in document["groups"]}


def test_tool_calls_spend_the_dollar_cap_and_the_ledger_holds_their_cost(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 0.10}))
    container = {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "1g"}}
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as sdk,
    ):
        store = sdk.vector_stores.create(name="notes")
        sdk.responses.create(model=MODEL, input="news?", tools=[{"type": "web_search"}])  # $0.01
        upstream.compress_streams = True
        with sdk.responses.stream(model=MODEL, input="6 x 7?", tools=[container]) as stream:
            final = stream.get_final_response()  # one container: $0.03
        assert [item.type for item in final.output] == ["code_interpreter_call", "message"]
        sdk.responses.create(
            model=MODEL,
            input="what did I note?",
            tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
        )  # $0.0025
        sdk.chat.completions.create(
            model="gpt-4o-mini-search-preview",
            messages=[{"role": "user", "content": "weather?"}],
        )  # one search: $0.025
        drawn = sdk.responses.create(
            model=MODEL,
            input="a gull",
            tools=[{"type": "image_generation", "quality": "low", "size": "1024x1024"}],
        )  # $0.011
        assert drawn.output[0].type == "image_generation_call"
        # $0.0785 spent: a container ($0.03) would pass the cap, a web search ($0.01) not.
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.responses.create(model=MODEL, input="once more", tools=[container])
        sdk.responses.create(model=MODEL, input="news again?", tools=[{"type": "web_search"}])
    assert refused.value.code == "insufficient_quota"
    assert sum(record.path == "/v1/responses" for record in upstream.log) == 5
    usage = _usage(url)
    tools = 0.01 + 0.03 + 0.0025 + 0.011 + 0.01
    responses = usage["createResponse"]
    assert responses["requests"] == 6
    assert tools < responses["cost_usd"] < tools + 5 * TOKENS_AT_MOST
    chat = usage["createChatCompletion"]["cost_usd"]
    assert 0.025 < chat < 0.025 + TOKENS_AT_MOST
    assert asyncio.run(_spent(url)) == pytest.approx(responses["cost_usd"] + chat)
    rows = asyncio.run(ledger_rows(url))
    counted = [json.loads(row["tool_calls"]) for row in rows if row["tool_calls"]]
    assert sorted(counted, key=str) == sorted(
        [
            {"web_search": 1},
            {"containers": 1},
            {"file_search": 1},
            {"chat_search": 1},
            {"image_generation": 1},
            {"web_search": 1},
        ],
        key=str,
    )


async def _spent(url: str) -> float:
    """What the key's budget rows hold as spent (settled behind each request)."""
    engine = create_engine(url)
    async with engine.connect() as connection:
        spent = (await connection.execute(select(BudgetRow.spent))).scalars().all()
    await engine.dispose()
    return sum(spent)


async def test_a_response_over_the_websocket_pays_for_its_tool_calls(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, carol={"daily_usd": 1})
    tools = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}]
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        async with (
            openai.AsyncOpenAI(base_url=relay.base_url, api_key=secrets["carol"]) as sdk,
            sdk.responses.connect() as connection,
        ):
            await connection.response.create(model=MODEL, input="news?", tools=tools)  # type: ignore[arg-type]
            async for event in connection:
                if event.type == "response.completed":
                    break
    [row] = [row for row in await ledger_rows(url) if row["method"] == "WS"]
    assert json.loads(row["tool_calls"]) == {"file_search": 1, "web_search": 1}
    assert 0.0125 < row["cost_usd"] < 0.0125 + TOKENS_AT_MOST
