"""Honest ledger rows for the GPT Actions: each row carries the status and error code the
client got and the key that called, also when the key was refused, and a model call's usage
is counted once however often its answer is fetched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream
from servers import RunningRelay, relay_in_thread
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine, upgrade

MODEL = "gpt-4.1"
KEYS: dict[str, tuple[set[str], dict[str, Any]]] = {
    "alice": ({"api", "actions"}, {}),
    "bob": ({"api", "actions"}, {"rpm": 1}),
    "carol": ({"api"}, {}),  # no Actions
    "dave": ({"actions"}, {}),  # Actions only, as a member's OAuth token may be
}


async def _create_keys(url: str) -> dict[str, str]:
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = KeyStore(engine, cache_ttl=0)
        secrets = {}
        for name, (scopes, limits) in KEYS.items():
            _, secrets[name] = await store.create(name, scopes=scopes, limits=limits)
        return secrets
    finally:
        await engine.dispose()


class Team:
    def __init__(self, relay: RunningRelay, url: str, secrets: dict[str, str]) -> None:
        self.relay, self.url, self.secrets = relay, url, secrets

    def call(self, who: str, method: str, path: str, **options: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.secrets[who]}"}
        options.setdefault("timeout", 30)
        return httpx2.request(method, self.relay.url + path, headers=headers, **options)

    def rows(self, match: Callable[[dict[str, Any]], bool], count: int = 1) -> list[dict[str, Any]]:
        """The ledger rows `match` accepts, once there are `count` (rows are written behind)."""
        deadline = time.monotonic() + 10
        while True:
            found = [r for r in asyncio.run(ledger_rows(self.url)) if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="module")
def team(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    data: Path = tmp_path_factory.mktemp("ledger")
    url = f"sqlite+aiosqlite:///{data}/team.db"
    secrets = asyncio.run(_create_keys(url))
    with relay_in_thread(fake_upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        yield Team(relay, url, secrets)


def _one(team: Team, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    rows = team.rows(match)
    assert len(rows) == 1, rows
    return rows[0]


def test_an_invalid_action_call_is_a_400_row_with_its_key(team: Team) -> None:
    answer = team.call("alice", "POST", "/actions/ask", json={"instructions": "no input"})
    assert answer.status_code == 400
    row = _one(team, lambda r: r["operation"] == "actions.askModel" and r["status"] != 200)
    assert (row["status"], row["error_type"], row["key_name"]) == (
        400,
        answer.json()["error"]["type"],
        "alice",
    )


def test_a_key_without_the_scope_is_a_403_row_with_its_key(team: Team) -> None:
    refused = team.call("carol", "GET", "/actions/models")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    row = _one(team, lambda r: r["operation"] == "actions.listModels" and r["status"] == 403)
    assert (row["error_type"], row["key_name"]) == ("insufficient_scope", "carol")

    assert team.call("dave", "GET", "/v1/models").status_code == 403
    row = _one(team, lambda r: r["path"] == "/v1/models" and r["status"] == 403)
    assert (row["error_type"], row["key_name"]) == ("insufficient_scope", "dave")


def test_a_rate_limited_action_is_a_429_row_with_its_key(team: Team) -> None:
    assert team.call("bob", "GET", "/actions/models").status_code == 200
    refused = team.call("bob", "GET", "/actions/models")
    assert refused.status_code == 429
    row = _one(team, lambda r: r["key_name"] == "bob" and r["status"] != 200)
    assert (row["status"], row["error_type"]) == (429, "rate_limit_exceeded")


def test_an_action_whose_client_left_is_a_499_row_with_its_key(
    team: Team, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/responses", method="POST", delay=1.0, times=1)
    with pytest.raises(httpx2.TimeoutException):
        team.call(
            "alice", "POST", "/actions/ask", json={"input": "left", "model": MODEL}, timeout=0.3
        )
    row = _one(team, lambda r: r["operation"] == "actions.askModel" and r["status"] == 499)
    assert (row["error_type"], row["key_name"], row["aborted"]) == (
        "client_disconnected",
        "alice",
        True,
    )


def test_fetching_a_finished_answer_twice_counts_its_usage_once(team: Team) -> None:
    asked = team.call("alice", "POST", "/actions/ask", json={"input": "count me", "model": MODEL})
    assert asked.status_code == 200, asked.text
    response_id = asked.json()["response_id"]
    for _ in range(2):
        fetched = team.call("alice", "GET", f"/actions/answers/{response_id}")
        assert fetched.json()["status"] == "completed"
    usage = fetched.json()["usage"]

    rows = team.rows(
        lambda r: (
            r["key_name"] == "alice"
            and r["status"] == 200
            and (
                r["operation"] == "actions.askModel"
                or (r["operation"] == "actions.getAnswer" and response_id in r["path"])
            )
        ),
        count=3,
    )
    assert len(rows) == 3
    assert sum(r["input_tokens"] or 0 for r in rows) == usage["input_tokens"]
    assert sum(r["output_tokens"] or 0 for r in rows) == usage["output_tokens"]


def test_a_response_fetched_again_over_v1_counts_its_usage_once(team: Team) -> None:
    with openai.OpenAI(
        base_url=team.relay.base_url, api_key=team.secrets["alice"], max_retries=0
    ) as sdk:
        made = sdk.responses.create(model=MODEL, input="count me once", store=True)
        for _ in range(3):
            assert sdk.responses.retrieve(made.id).usage == made.usage
        queued = sdk.responses.create(model=MODEL, input="later, please", background=True)
        fetches = 1
        while (later := sdk.responses.retrieve(queued.id)).status != "completed":
            fetches += 1
            time.sleep(0.05)
        sdk.responses.retrieve(queued.id)
    fetched_over_actions = team.call("alice", "GET", f"/actions/answers/{queued.id}")
    assert fetched_over_actions.json()["usage"]["output_tokens"] == later.usage.output_tokens

    def tokens(response_id: str, count: int) -> int:
        rows = team.rows(lambda r: r["key_name"] == "alice" and response_id in r["path"], count)
        return sum(r["output_tokens"] or 0 for r in rows)

    assert made.usage is not None
    assert later.usage is not None
    created = team.rows(
        lambda r: (
            r["operation"] == "createResponse" and r["output_tokens"] == made.usage.output_tokens
        )
    )
    assert created
    assert tokens(made.id, 3) == 0  # the three fetches: counted at create
    # Counted by the first fetch that showed it, not by the next one nor by getAnswer.
    assert tokens(queued.id, fetches + 2) == later.usage.output_tokens
