"""On the Responses WebSocket each `response.create` frame is one request: another member's
ids are refused, the model allowlist and rate limits apply, and each response has its ledger
row with the usage it reported. A refused frame gets an `error` event and never goes upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream
from servers import relay_in_thread
from teamkeys import create_keys_async

ENDS = ("response.completed", "response.incomplete", "response.failed", "error")


async def _turn(connection: Any, **fields: Any) -> Any:
    """Sends one response.create and returns the event that ends it."""
    await connection.response.create(**fields)
    async for event in connection:
        if event.type in ENDS:
            return event
    raise AssertionError("the socket closed first")


@contextlib.asynccontextmanager
async def _team(
    upstream: FakeUpstream, data: Path, alice: dict[str, Any] | None = None, **env: str
) -> AsyncIterator[tuple[openai.AsyncOpenAI, openai.AsyncOpenAI, str]]:
    url = f"sqlite+aiosqlite:///{data}/ws.db"
    secrets = await create_keys_async(url, alice=alice or {}, bob={})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url, **env) as relay:
        async with (
            openai.AsyncOpenAI(
                base_url=relay.base_url, api_key=secrets["alice"], max_retries=0
            ) as a,
            openai.AsyncOpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0) as b,
        ):
            yield a, b, url


async def test_another_members_ids_in_a_frame_are_refused(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with _team(upstream, tmp_path) as (alice, bob, _):
        file = await alice.files.create(
            file=("notes.txt", b"alice's notes\n"), purpose="assistants"
        )
        store = await alice.vector_stores.create(name="alice", file_ids=[file.id])
        async with alice.responses.connect() as connection:
            first = await _turn(connection, model="gpt-4.1", input="hello there")
        assert first.type == "response.completed"
        theirs = first.response.id
        created = len(upstream.store.responses)
        async with bob.responses.connect() as connection:
            refusals = [
                await _turn(connection, model="gpt-4.1", input="hi", previous_response_id=theirs),
                await _turn(
                    connection,
                    model="gpt-4.1",
                    input="find it",
                    tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
                ),
                await _turn(
                    connection,
                    model="gpt-4.1",
                    input=[
                        {"role": "user", "content": [{"type": "input_file", "file_id": file.id}]}
                    ],
                ),
            ]
            own = await _turn(connection, model="gpt-4.1", input="a turn of my own")
        assert [(e.type, e.status) for e in refusals] == [("error", 404)] * 3
        assert own.type == "response.completed"
        assert len(upstream.store.responses) == created + 1  # only Bob's own turn went up
        async with alice.responses.connect() as connection:
            again = await _turn(
                connection, model="gpt-4.1", input="go on", previous_response_id=theirs
            )
        assert again.type == "response.completed"


async def test_the_model_allowlist_applies_to_each_frame(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with (
        _team(upstream, tmp_path, RELAY_MODEL_ALLOWLIST="gpt-4.1") as (alice, _, _url),
        alice.responses.connect() as connection,
    ):
        refused = await _turn(connection, model="gpt-4o", input="hello")
        allowed = await _turn(connection, model="gpt-4.1", input="hello")
    assert (refused.type, refused.status) == ("error", 403)
    assert allowed.type == "response.completed"


async def test_rate_limits_count_each_frame_and_each_response_has_its_row(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with _team(upstream, tmp_path, alice={"rpm": 4}) as (alice, _, url):
        async with alice.responses.connect() as connection:
            ends = [await _turn(connection, model="gpt-4.1", input=f"turn {n}") for n in range(8)]
        kinds = [e.type for e in ends]
        assert kinds == ["response.completed"] * 3 + ["error"] * 5  # the handshake is one
        assert {e.status for e in ends[3:]} == {429}
    rows = await ledger_rows(url)
    turns = [r for r in rows if r["operation"] == "createResponse"]
    assert len(turns) == 3
    for row, end in zip(turns, ends, strict=False):
        assert (row["key_name"], row["status"]) == ("alice", 200)
        assert row["input_tokens"] == end.response.usage.input_tokens
        assert row["output_tokens"] == end.response.usage.output_tokens


@pytest.mark.parametrize("frame", ["not json", "[1, 2]"])
async def test_a_frame_the_relay_cannot_read_is_refused(
    upstream: FakeUpstream, tmp_path: Path, frame: str
) -> None:
    async with (
        _team(upstream, tmp_path) as (alice, _, _url),
        alice.responses.connect() as connection,
    ):
        await connection.send_raw(frame)
        event = await connection.recv()
    assert (event.type, event.status) == ("error", 400)
