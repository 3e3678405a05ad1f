"""Every surface that reaches an OpenAI operation gets the same controls, from the same code.

A matrix: each surface (plain `/v1` HTTP, the `/v1/proxy` envelope, the Actions `callOpenAI`
operation, the MCP `callOpenAI` tool) against each control (another key's id in the path, in
the path with a query, in the query, in the body; lists filtered to the caller's objects;
objects created through the surface owned by their creator; an rpm cap; a daily token budget;
a ledger row with the real usage). A new surface is one more row in SURFACES. The surfaces an
envelope cannot express have their own tests: Responses WebSocket frames
(test_responses_websocket_frames_pass_the_same_controls), realtime calls
(test_realtime_calls_belong_to_the_member_who_placed_them), forms and encodings
(test_unreadable_bodies_are_refused_not_waved_through).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream, input_tokens, reply_words, responses_prompt
from servers import RunningRelay, relay_in_thread
from teamkeys import create_keys, create_keys_async
from teamrelay.mcpserver.actions import action_tools

Envelope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a surface answered: the HTTP status (None where the surface has none, as MCP
    tool results) and the JSON document, an OpenAI error shape when refused."""

    status: int | None
    document: Any

    @property
    def error(self) -> dict[str, Any] | None:
        document = self.document
        return document.get("error") if isinstance(document, dict) else None


Call = Callable[[RunningRelay, str, Envelope], Awaitable[Answer]]


async def _v1(relay: RunningRelay, secret: str, envelope: Envelope) -> Answer:
    """The envelope as the plain HTTP request it stands for."""
    async with httpx2.AsyncClient(timeout=20) as http:
        answer = await http.request(
            envelope["method"],
            relay.url + envelope["path"],
            params=envelope.get("query"),
            json=envelope.get("body"),
            headers={"Authorization": f"Bearer {secret}"},
        )
    return Answer(answer.status_code, answer.json())


async def _v1_proxy(relay: RunningRelay, secret: str, envelope: Envelope) -> Answer:
    async with httpx2.AsyncClient(timeout=20) as http:
        answer = await http.post(
            relay.base_url + "/proxy", json=envelope, headers={"Authorization": f"Bearer {secret}"}
        )
    return Answer(answer.status_code, answer.json())


async def _actions(relay: RunningRelay, secret: str, envelope: Envelope) -> Answer:
    async with httpx2.AsyncClient(timeout=20) as http:
        answer = await http.post(
            relay.url + "/actions/proxy",
            json=envelope,
            headers={"Authorization": f"Bearer {secret}"},
        )
    return Answer(answer.status_code, answer.json())


async def _mcp(relay: RunningRelay, secret: str, envelope: Envelope) -> Answer:
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        streamable_http_client(relay.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("callOpenAI", envelope)
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return Answer(None, json.loads(first.text))


SURFACES: dict[str, Call] = {
    "v1": _v1,
    "v1_proxy": _v1_proxy,
    "actions": _actions,
    "mcp": _mcp,
}


@dataclass
class Team:
    relay: RunningRelay
    db_url: str
    secrets: dict[str, str]
    alice: Objects


@dataclass
class Objects:
    file: str
    vector_store: str
    batch: str
    response: str


BATCH_LINE = (
    b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}\n'
)


def _alice_creates(sdk: openai.OpenAI) -> Objects:
    notes = sdk.files.create(file=("notes.txt", b"Alice's private notes\n"), purpose="assistants")
    batch_input = sdk.files.create(file=("in.jsonl", BATCH_LINE), purpose="batch")
    store = sdk.vector_stores.create(name="alice", file_ids=[notes.id])
    batch = sdk.batches.create(
        input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    response = sdk.responses.create(model="gpt-5-mini", input="Alice's secret plan", store=True)
    return Objects(notes.id, store.id, batch.id, response.id)


def _key_names() -> dict[str, dict[str, Any]]:
    names: dict[str, dict[str, Any]] = {"alice": {}}
    for surface in SURFACES:
        names[f"bob_{surface}"] = {}
        names[f"rpm_{surface}"] = {"rpm": 3}
        names[f"budget_{surface}"] = {"daily_tokens": 100}
        names[f"paging_{surface}"] = {}
    return names


@pytest.fixture(scope="module")
def team(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    fake_upstream.reset()
    data = tmp_path_factory.mktemp("surfaces")
    url = f"sqlite+aiosqlite:///{data}/team.db"
    secrets = create_keys(url, **_key_names())
    with relay_in_thread(fake_upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        with openai.OpenAI(
            base_url=relay.base_url, api_key=secrets["alice"], max_retries=0
        ) as alice:
            objects = _alice_creates(alice)
        yield Team(relay, url, secrets, objects)


def _refused_as_absent(answer: Answer) -> None:
    """The upstream's own 404 shape: another key's object looks like no object."""
    error = answer.error
    assert error is not None, answer
    assert answer.status in (None, 404), answer
    assert error["type"] == "invalid_request_error", error
    assert "found with id" in error["message"], error


def _upstream_saw(upstream: FakeUpstream, before: int, fragment: str) -> bool:
    return any(fragment in record.target for record in upstream.log[before:])


# Another key's id, wherever the request names it, is absent (404) before upstream.
FOREIGN: dict[str, Callable[[Objects], Envelope]] = {
    "path": lambda o: {"method": "GET", "path": f"/v1/files/{o.file}"},
    "path_with_query": lambda o: {
        "method": "GET",
        "path": f"/v1/responses/{o.response}/input_items",
        "query": {"limit": 5},
    },
    "path_response_with_query": lambda o: {
        "method": "GET",
        "path": f"/v1/responses/{o.response}",
        "query": {"include": ["message.output_text.logprobs"]},
    },
    "search_with_query": lambda o: {
        "method": "GET",
        "path": f"/v1/vector_stores/{o.vector_store}/files",
        "query": {"limit": 10},
    },
    "query": lambda o: {"method": "GET", "path": "/v1/batches", "query": {"after": o.batch}},
    "body": lambda o: {
        "method": "POST",
        "path": "/v1/responses",
        "body": {"model": "gpt-5-mini", "input": "go on", "previous_response_id": o.response},
    },
    "path_and_body": lambda o: {
        "method": "POST",
        "path": f"/v1/vector_stores/{o.vector_store}/files",
        "body": {"file_id": o.file},
    },
}


@pytest.mark.parametrize("where", FOREIGN)
@pytest.mark.parametrize("surface", SURFACES)
async def test_another_keys_id_is_absent(
    team: Team, fake_upstream: FakeUpstream, surface: str, where: str
) -> None:
    before = len(fake_upstream.log)
    envelope = FOREIGN[where](team.alice)
    answer = await SURFACES[surface](team.relay, team.secrets[f"bob_{surface}"], envelope)
    _refused_as_absent(answer)
    assert fake_upstream.log[before:] == []


@pytest.mark.parametrize("surface", SURFACES)
async def test_lists_show_only_the_callers_objects(team: Team, surface: str) -> None:
    bob = team.secrets[f"bob_{surface}"]
    call = SURFACES[surface]
    for path in ("/v1/files", "/v1/vector_stores", "/v1/batches"):
        answer = await call(team.relay, bob, {"method": "GET", "path": path})
        assert answer.error is None, answer
        ids = [item["id"] for item in answer.document["data"]]
        assert not set(ids) & set(vars(team.alice).values()), (path, ids)


@pytest.mark.parametrize("surface", SURFACES)
async def test_what_a_surface_creates_belongs_to_its_creator(team: Team, surface: str) -> None:
    bob = team.secrets[f"bob_{surface}"]
    call = SURFACES[surface]
    made = await call(
        team.relay, bob, {"method": "POST", "path": "/v1/vector_stores", "body": {"name": surface}}
    )
    assert made.error is None, made
    store_id = made.document["id"]
    listed = await call(team.relay, bob, {"method": "GET", "path": "/v1/vector_stores"})
    assert [item["id"] for item in listed.document["data"]] == [store_id]
    own = await call(team.relay, bob, {"method": "GET", "path": f"/v1/vector_stores/{store_id}"})
    assert own.error is None, own
    other = await call(
        team.relay,
        team.secrets["alice"],
        {"method": "GET", "path": f"/v1/vector_stores/{store_id}", "query": {"x": "1"}},
    )
    _refused_as_absent(other)


@pytest.mark.parametrize("surface", SURFACES)
async def test_an_rpm_3_key_is_refused_on_the_fourth_call_in_a_minute(
    team: Team, fake_upstream: FakeUpstream, surface: str
) -> None:
    secret = team.secrets[f"rpm_{surface}"]
    call = SURFACES[surface]
    envelope = {"method": "GET", "path": "/v1/models", "query": {"limit": 1}}
    answers = [await call(team.relay, secret, envelope) for _ in range(5)]
    assert [a.error is None for a in answers] == [True, True, True, False, False], answers
    for refused in answers[3:]:
        assert refused.status in (None, 429)
        assert refused.error is not None
        assert refused.error["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("surface", SURFACES)
async def test_a_key_past_its_daily_token_budget_is_refused(team: Team, surface: str) -> None:
    secret = team.secrets[f"budget_{surface}"]
    call = SURFACES[surface]
    envelope = {
        "method": "POST",
        "path": "/v1/responses",
        "body": {"model": "gpt-4.1", "input": "a lighthouse story", "max_output_tokens": 16},
    }
    answers = [await call(team.relay, secret, envelope) for _ in range(12)]
    admitted = [a for a in answers if a.error is None]
    refused = answers[len(admitted) :]
    assert refused, "the budget of 100 tokens never ran out"
    for answer in refused:
        assert answer.status in (None, 429), answer
        assert answer.error is not None, answer
        assert answer.error["code"] == "insufficient_quota", answer
    spent = [a.document["usage"]["total_tokens"] for a in admitted]
    # Reserved before, settled after: what the key spent stays within its budget.
    assert sum(spent) <= 100, spent


async def _rows_for(db_url: str, key_name: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in await ledger_rows(db_url) if r["key_name"] == key_name]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("surface", SURFACES)
async def test_every_call_leaves_a_ledger_row_with_the_real_usage(
    fake_upstream: FakeUpstream, tmp_path: Path, surface: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, carol={})
    body = {"model": "gpt-4.1", "input": "count these few words please"}
    with relay_in_thread(fake_upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        call = SURFACES[surface]
        answer = await call(
            relay, secrets["carol"], {"method": "POST", "path": "/v1/responses", "body": body}
        )
        assert answer.error is None, answer
        refused = await call(relay, secrets["carol"], {"method": "GET", "path": "/v1/files/x:y"})
        assert refused.error is not None
        rows = await _rows_for(url, "carol", 2)
    texts = responses_prompt(body)
    made = [r for r in rows if r["operation"] == "createResponse"]
    assert len(made) == 1, [(r["path"], r["operation"], r["status"]) for r in rows]
    assert made[0]["status"] == 200
    assert str(made[0]["model"]).startswith("gpt-4.1")
    assert made[0]["input_tokens"] == input_tokens(texts)
    assert made[0]["output_tokens"] == len(reply_words(texts))
    assert len(rows) == 2, rows
    assert any(r["status"] >= 400 for r in rows)


# The other Actions wrappers (and their MCP tools) call their operations on their own, with
# the same isolation guard; it fails closed on what it cannot resolve.
WrapperCall = Callable[[RunningRelay, str, str, dict[str, Any]], Awaitable[Answer]]


async def _wrapper_over_http(
    relay: RunningRelay, secret: str, tool: str, arguments: dict[str, Any]
) -> Answer:
    async with httpx2.AsyncClient(base_url=relay.url, timeout=20) as http:
        schema = (await http.get("/openapi.actions.json")).json()
        action = action_tools(schema)[tool]
        path, query, body = action.request(arguments)
        answer = await http.request(
            action.method,
            path,
            params=query,
            json=body if action.has_body else None,
            headers={"Authorization": f"Bearer {secret}"},
        )
    return Answer(answer.status_code, answer.json())


async def _wrapper_over_mcp(
    relay: RunningRelay, secret: str, tool: str, arguments: dict[str, Any]
) -> Answer:
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        streamable_http_client(relay.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(tool, arguments)
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return Answer(None, json.loads(first.text))


WRAPPER_SURFACES: dict[str, WrapperCall] = {
    "actions": _wrapper_over_http,
    "mcp": _wrapper_over_mcp,
}

FOREIGN_TO_WRAPPERS: dict[str, Callable[[Objects], tuple[str, dict[str, Any]]]] = {
    "getFile": lambda o: ("getFile", {"file_id": o.file}),
    "getFile_unresolvable_id": lambda o: ("getFile", {"file_id": o.file + ":x"}),
    "readFileText": lambda o: ("readFileText", {"file_id": o.file}),
    "getBatch": lambda o: ("getBatch", {"batch_id": o.batch}),
    "cancelBatch": lambda o: ("cancelBatch", {"batch_id": o.batch}),
    "getAnswer": lambda o: ("getAnswer", {"response_id": o.response}),
    "askModel_previous_response": lambda o: (
        "askModel",
        {"input": "go on", "previous_response_id": o.response},
    ),
    "searchVectorStore": lambda o: (
        "searchVectorStore",
        {"vector_store_id": o.vector_store, "query": "notes"},
    ),
    "addFilesToVectorStore": lambda o: (
        "addFilesToVectorStore",
        {"vector_store_id": o.vector_store, "file_ids": [o.file]},
    ),
    "createVectorStore_with_file": lambda o: (
        "createVectorStore",
        {"name": "mine now", "file_ids": [o.file]},
    ),
}


@pytest.mark.parametrize("where", FOREIGN_TO_WRAPPERS)
@pytest.mark.parametrize("surface", WRAPPER_SURFACES)
async def test_wrappers_treat_another_keys_id_as_absent(
    team: Team, fake_upstream: FakeUpstream, surface: str, where: str
) -> None:
    tool, arguments = FOREIGN_TO_WRAPPERS[where](team.alice)
    before = len(fake_upstream.log)
    call = WRAPPER_SURFACES[surface]
    answer = await call(team.relay, team.secrets[f"bob_{surface}"], tool, arguments)
    error = answer.error
    assert error is not None, answer
    # An id no object can have is refused as malformed (400), another key's as absent (404).
    assert answer.status in ((None, 400) if where.endswith("unresolvable_id") else (None, 404))
    assert error["type"] == "invalid_request_error", error
    assert fake_upstream.log[before:] == []


@pytest.mark.parametrize(
    ("tool", "listed"),
    [("listFiles", "files"), ("listVectorStores", "vector_stores"), ("listBatches", "batches")],
)
@pytest.mark.parametrize("surface", WRAPPER_SURFACES)
async def test_wrapper_lists_show_only_the_callers_objects(
    team: Team, surface: str, tool: str, listed: str
) -> None:
    call = WRAPPER_SURFACES[surface]
    answer = await call(team.relay, team.secrets[f"bob_{surface}"], tool, {"limit": 5})
    assert answer.error is None, answer
    ids = {item["id"] for item in answer.document[listed]}
    assert not ids & set(vars(team.alice).values()), ids
    alices = await call(team.relay, team.secrets["alice"], tool, {"limit": 5})
    assert set(vars(team.alice).values()) & {item["id"] for item in alices.document[listed]}


@pytest.mark.parametrize("surface", WRAPPER_SURFACES)
async def test_wrapper_lists_page_past_other_keys_objects(team: Team, surface: str) -> None:
    """The caller's file is older than a page of Alice's: the list still finds it."""
    secret = team.secrets[f"paging_{surface}"]
    with openai.OpenAI(base_url=team.relay.base_url, api_key=secret, max_retries=0) as sdk:
        mine = sdk.files.create(file=("mine.txt", b"mine\n"), purpose="assistants")
    with openai.OpenAI(
        base_url=team.relay.base_url, api_key=team.secrets["alice"], max_retries=0
    ) as alice:
        for n in range(6):
            alice.files.create(file=(f"a{n}.txt", b"alice\n"), purpose="assistants")
    answer = await WRAPPER_SURFACES[surface](team.relay, secret, "listFiles", {"limit": 5})
    assert answer.error is None, answer
    assert [item["id"] for item in answer.document["files"]] == [mine.id]
    assert answer.document["has_more"] is False


@pytest.mark.parametrize("surface", ["actions", "mcp"])
async def test_a_call_past_the_actions_budget_is_a_504_on_its_row(
    upstream: FakeUpstream, tmp_path: Path, surface: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = await create_keys_async(url, carol={})
    upstream.faults("/v1/models", delay=3.0)
    env = {"RELAY_DATABASE_URL": url, "RELAY_ACTIONS_ANSWER_BUDGET": "1"}
    with relay_in_thread(upstream.base_url, **env) as relay:
        answer = await SURFACES[surface](
            relay, secrets["carol"], {"method": "GET", "path": "/v1/models"}
        )
        assert answer.status in (None, 504), answer
        assert answer.error is not None, answer
        rows = await _rows_for(url, "carol", 1)
    assert [(r["operation"], r["status"]) for r in rows] == [("listModels", 504)]
