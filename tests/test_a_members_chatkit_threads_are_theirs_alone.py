"""ChatKit through the relay: each member's sessions, users and threads are theirs alone.

Alice's backend makes ChatKit sessions for her end user Ada; ChatKit's widget then makes
Ada's threads at OpenAI with the session's secret, never through the relay. Bob cannot make
a session for Ada (its secret would read her threads), nor read, list, page past or delete
her threads, nor cancel her session; the admin key still sees every thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, relay_in_thread
from teamkeys import create_keys

WORKFLOW = {"id": "wf_support"}


@pytest.fixture
def team(upstream: FakeUpstream, tmp_path: Path) -> Iterator[dict[str, openai.OpenAI]]:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = create_keys(url, alice={}, bob={}, dave={"rpm": 3})
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as alice,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0) as bob,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["dave"], max_retries=0) as dave,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as admin,
    ):
        yield {"alice": alice, "bob": bob, "dave": dave, "admin": admin}


def test_chatkit_threads_belong_to_the_member_who_made_their_users_sessions(
    upstream: FakeUpstream, team: dict[str, openai.OpenAI]
) -> None:
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    session = alice.beta.chatkit.sessions.create(user="ada", workflow=WORKFLOW)
    bob.beta.chatkit.sessions.create(user="bea", workflow=WORKFLOW)
    sessions_made = len(upstream.requests_to("/v1/chatkit/sessions"))
    with pytest.raises(openai.PermissionDeniedError):
        bob.beta.chatkit.sessions.create(user="ada", workflow=WORKFLOW)
    assert len(upstream.requests_to("/v1/chatkit/sessions")) == sessions_made
    with pytest.raises(openai.NotFoundError):
        bob.beta.chatkit.sessions.cancel(session.id)

    adas = [upstream.add_chatkit_thread("ada", f"question {n}") for n in range(3)]
    beas = [upstream.add_chatkit_thread("bea") for _ in range(2)]
    strangers = upstream.add_chatkit_thread("carl")  # made before the relay: nobody's

    upstream.clear_log()
    assert [t.id for t in alice.beta.chatkit.threads.list(limit=2)] == adas[::-1]
    assert len(upstream.requests_to("/v1/chatkit/threads")) == 2  # one a page
    assert [t.id for t in alice.beta.chatkit.threads.list(user="ada")] == adas[::-1]
    assert list(alice.beta.chatkit.threads.list(user="bea")) == []
    assert [t.id for t in bob.beta.chatkit.threads.list()] == beas[::-1]
    with pytest.raises(openai.NotFoundError):  # another key's thread is no cursor
        alice.beta.chatkit.threads.list(after=beas[0])

    later = upstream.add_chatkit_thread("ada", "a thread the relay has not listed")
    assert alice.beta.chatkit.threads.retrieve(later).user == "ada"  # found from its user
    items = list(alice.beta.chatkit.threads.list_items(adas[0]))
    assert [item.thread_id for item in items] == [adas[0]]

    upstream.clear_log()
    for attempt in (
        lambda: bob.beta.chatkit.threads.retrieve(adas[0]),
        lambda: bob.beta.chatkit.threads.list_items(adas[1]),
        lambda: bob.beta.chatkit.threads.delete(adas[2]),
        lambda: bob.beta.chatkit.threads.retrieve(later),
        lambda: alice.beta.chatkit.threads.retrieve(strangers),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert not [entry for entry in upstream.log if entry.method != "GET"]
    assert len(upstream.store.chatkit_threads) == 7

    assert alice.beta.chatkit.threads.delete(adas[2]).deleted
    assert len(list(admin.beta.chatkit.threads.list())) == 6  # the admin key sees them all


def test_a_member_with_several_users_names_the_one_to_list(
    upstream: FakeUpstream, team: dict[str, openai.OpenAI]
) -> None:
    alice = team["alice"]
    alice.beta.chatkit.sessions.create(user="ada", workflow=WORKFLOW)
    alice.beta.chatkit.sessions.create(user="abe", workflow=WORKFLOW)
    abes = upstream.add_chatkit_thread("abe")
    with pytest.raises(openai.BadRequestError):
        alice.beta.chatkit.threads.list()
    assert [t.id for t in alice.beta.chatkit.threads.list(user="abe")] == [abes]


def test_asking_the_upstream_who_a_thread_is_for_counts_against_the_rpm(
    upstream: FakeUpstream, team: dict[str, openai.OpenAI]
) -> None:
    dave = team["dave"]  # 3 requests a minute
    dave.beta.chatkit.sessions.create(user="dan", workflow=WORKFLOW)
    thread = upstream.add_chatkit_thread("dan")
    assert dave.beta.chatkit.threads.retrieve(thread).id == thread  # 2 upstream calls
    with pytest.raises(openai.RateLimitError):
        dave.beta.chatkit.threads.retrieve(thread)
