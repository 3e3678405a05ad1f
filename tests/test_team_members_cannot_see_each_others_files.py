"""Two team members on one relay: Bob can neither reach Alice's objects nor use their ids.

Every refusal is the upstream's own 404 shape, given before anything is sent upstream: the
fake upstream's log shows none of Bob's refused calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay, relay_in_thread
from teamkeys import create_keys

BATCH_LINE = (
    b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}}\n'
)


@dataclass
class Team:
    relay: RunningRelay
    alice: openai.OpenAI
    bob: openai.OpenAI
    admin: openai.OpenAI


@contextlib.contextmanager
def team_relay(upstream: FakeUpstream, data: Path, **env: str) -> Iterator[Team]:
    url = f"sqlite+aiosqlite:///{data}/team.db"
    secrets = create_keys(url, alice={}, bob={})
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url, **env) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as alice,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0) as bob,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as admin,
    ):
        yield Team(relay, alice, bob, admin)


@pytest.fixture
def team(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Team]:
    with team_relay(upstream, tmp_path) as running:
        yield running


@dataclass
class AliceObjects:
    file: str
    batch_input: str
    vector_store: str
    batch: str
    batch_output: str
    uploaded: str


def alice_creates_her_objects(alice: openai.OpenAI) -> AliceObjects:
    notes = alice.files.create(file=("notes.txt", b"Alice's private notes\n"), purpose="assistants")
    batch_input = alice.files.create(file=("in.jsonl", BATCH_LINE), purpose="batch")
    store = alice.vector_stores.create(name="alice", file_ids=[notes.id])
    batch = alice.batches.create(
        input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 10
    while batch.status != "completed":
        assert time.monotonic() < deadline, "the fake's batch did not complete"
        time.sleep(0.05)
        batch = alice.batches.retrieve(batch.id)
    assert batch.output_file_id is not None
    upload = alice.uploads.upload_file_chunked(
        file=b"uploaded in parts",
        mime_type="text/plain",
        purpose="assistants",
        filename="u.txt",
        bytes=17,
    )
    assert upload.file is not None
    return AliceObjects(
        notes.id, batch_input.id, store.id, batch.id, batch.output_file_id, upload.file.id
    )


def refused_without_reaching_upstream(
    upstream: FakeUpstream, calls: list[Callable[[], Any]]
) -> None:
    before = len(upstream.log)
    for call in calls:
        with pytest.raises(openai.NotFoundError) as refused:
            call()
        error = refused.value.body
        assert isinstance(error, dict)
        assert error["type"] == "invalid_request_error"
        assert "found with id" in error["message"]
    assert upstream.log[before:] == []


def test_bob_cannot_get_download_delete_or_list_alices_objects(
    team: Team, upstream: FakeUpstream
) -> None:
    mine = alice_creates_her_objects(team.alice)
    bob = team.bob
    refused_without_reaching_upstream(
        upstream,
        [
            lambda: bob.files.retrieve(mine.file),
            lambda: bob.files.content(mine.file),
            lambda: bob.files.delete(mine.file),
            lambda: bob.files.content(mine.batch_output),
            lambda: bob.files.retrieve(mine.uploaded),
            lambda: bob.vector_stores.retrieve(mine.vector_store),
            lambda: bob.vector_stores.update(mine.vector_store, name="mine now"),
            lambda: bob.vector_stores.delete(mine.vector_store),
            lambda: bob.vector_stores.files.list(mine.vector_store),
            lambda: bob.vector_stores.files.retrieve(mine.file, vector_store_id=mine.vector_store),
            lambda: bob.batches.retrieve(mine.batch),
            lambda: bob.batches.cancel(mine.batch),
        ],
    )
    alices = {mine.file, mine.batch_input, mine.batch_output, mine.uploaded}
    assert not alices & {f.id for f in bob.files.list()}
    assert not [s for s in bob.vector_stores.list() if s.id == mine.vector_store]
    assert not [b for b in bob.batches.list() if b.id == mine.batch]

    # Alice keeps everything, her batch's output and her upload's file included.
    assert alices <= {f.id for f in team.alice.files.list()}
    assert team.alice.files.content(mine.batch_output).read().startswith(b'{"id"')
    assert team.alice.files.content(mine.uploaded).read() == b"uploaded in parts"
    assert [s.id for s in team.alice.vector_stores.list()] == [mine.vector_store]
    assert [b.id for b in team.alice.batches.list()] == [mine.batch]
    assert [f.id for f in team.alice.vector_stores.files.list(mine.vector_store)] == [mine.file]
    # An admin key sees every object.
    assert alices <= {f.id for f in team.admin.files.list()}
    assert team.admin.vector_stores.retrieve(mine.vector_store).name == "alice"


def test_bob_cannot_use_alices_ids_inside_his_own_requests(
    team: Team, upstream: FakeUpstream
) -> None:
    mine = alice_creates_her_objects(team.alice)
    bob = team.bob
    his_store = bob.vector_stores.create(name="bob")
    his_file = bob.files.create(file=("bob.txt", b"Bob's notes\n"), purpose="assistants")
    alices_file_part = {"type": "input_file", "file_id": mine.file}
    refused_without_reaching_upstream(
        upstream,
        [
            lambda: bob.vector_stores.files.create(his_store.id, file_id=mine.file),
            lambda: bob.vector_stores.create(name="b2", file_ids=[his_file.id, mine.file]),
            lambda: bob.vector_stores.file_batches.create(his_store.id, file_ids=[mine.file]),
            lambda: bob.batches.create(
                input_file_id=mine.batch_input,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            ),
            lambda: bob.responses.create(
                model="gpt-4o-mini",
                input=[{"role": "user", "content": [alices_file_part]}],  # type: ignore[list-item]
            ),
            lambda: bob.responses.create(
                model="gpt-4o-mini",
                input="what did Alice write?",
                tools=[{"type": "file_search", "vector_store_ids": [mine.vector_store]}],
            ),
        ],
    )
    # His own ids work in the same places.
    assert bob.vector_stores.files.create(his_store.id, file_id=his_file.id).id == his_file.id
    answer = bob.responses.create(model="gpt-4o-mini", input="hello")
    follow_up = bob.responses.create(
        model="gpt-4o-mini", input="again", previous_response_id=answer.id
    )
    assert follow_up.id != answer.id
    refused_without_reaching_upstream(
        upstream,
        [
            lambda: team.alice.responses.retrieve(answer.id),
            lambda: team.alice.responses.create(
                model="gpt-4o-mini", input="hi", previous_response_id=answer.id
            ),
        ],
    )


def test_objects_from_before_the_relay_are_for_admin_keys_only(
    team: Team, upstream: FakeUpstream
) -> None:
    old = upstream.store.add_file_bytes(b"legacy", filename="old.txt", purpose="assistants")
    refused_without_reaching_upstream(upstream, [lambda: team.bob.files.retrieve(old["id"])])
    assert old["id"] not in {f.id for f in team.bob.files.list()}
    assert team.admin.files.retrieve(old["id"]).filename == "old.txt"


def test_shared_isolation_lets_every_key_see_every_object(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with team_relay(upstream, tmp_path, RELAY_ISOLATION="shared") as team:
        notes = team.alice.files.create(file=("a.txt", b"shared\n"), purpose="assistants")
        assert team.bob.files.retrieve(notes.id).id == notes.id
        assert notes.id in {f.id for f in team.bob.files.list()}


def test_with_ledger_metrics_and_request_lines_off_answers_pass_and_files_stay_private(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    quiet = {
        "RELAY_LEDGER_ENABLED": "false",
        "RELAY_METRICS_ENABLED": "false",
        "RELAY_REQUEST_LOG_ENABLED": "false",
    }
    with team_relay(upstream, tmp_path, **quiet) as team:
        messages: Any = [{"role": "user", "content": "hello there"}]
        answer = team.alice.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert answer.choices[0].message.content
        assert answer.usage is not None
        streamed = team.alice.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        notes = team.alice.files.create(file=("a.txt", b"Alice's notes\n"), purpose="assistants")
        reply = team.alice.responses.create(model="gpt-4o-mini", input="hello", stream=True)
        [created] = [e.response.id for e in reply if e.type == "response.created"]
        assert team.alice.files.retrieve(notes.id).id == notes.id
        assert notes.id in {f.id for f in team.alice.files.list()}
        assert team.alice.responses.retrieve(created).id == created
        refused_without_reaching_upstream(
            upstream,
            [
                lambda: team.bob.files.retrieve(notes.id),
                lambda: team.bob.files.content(notes.id),
                lambda: team.bob.responses.retrieve(created),
            ],
        )
        assert notes.id not in {f.id for f in team.bob.files.list()}
        assert httpx2.get(team.relay.url + "/metrics").status_code == 404
