"""A member's list costs what the member owns, not what the organisation holds.

Alice has 10 files among the organisation's 10,000. Her list comes from the relay's
ownership table, the objects from the upstream: the SDK's auto-pagination sees exactly her
files in at most 2 upstream calls, while the admin key still sees all 10,000. Files deleted
behind the relay's back leave her list and the table; what a list costs the upstream counts
against the member's requests per minute.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, relay_in_thread
from teamkeys import create_keys
from teamrelay.isolation import listing

ORG_FILES = 10_000
ALICE_FILES = 10
BOB_FILES = 5


def upstream_calls(upstream: FakeUpstream, prefix: str) -> int:
    return sum(1 for entry in list(upstream.log) if entry.path.startswith(prefix))


def owner_rows(database: Path, object_id: str) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM relay_objects WHERE object_id = ?", (object_id,)
        ).fetchone()
    return int(count)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "team.db"


@pytest.fixture
def secrets(database: Path) -> dict[str, str]:
    return create_keys(f"sqlite+aiosqlite:///{database}", alice={}, bob={}, carol={"rpm": 6})


@pytest.fixture
def relay_url(upstream: FakeUpstream, database: Path) -> Iterator[str]:
    with relay_in_thread(
        upstream.base_url, RELAY_DATABASE_URL=f"sqlite+aiosqlite:///{database}"
    ) as relay:
        yield relay.base_url


def client(relay_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay_url, api_key=secret, max_retries=0)


def test_ten_files_among_ten_thousand_list_in_at_most_two_upstream_calls(
    upstream: FakeUpstream, relay_url: str, secrets: dict[str, str], database: Path
) -> None:
    with (
        client(relay_url, secrets["alice"]) as alice,
        client(relay_url, secrets["bob"]) as bob,
        client(relay_url, RELAY_KEY) as admin,
    ):
        mine: list[str] = []
        for index in range(ALICE_FILES):  # her oldest file is the organisation's oldest
            purpose = "batch" if index in (0, 7) else "assistants"
            mine.append(alice.files.create(file=(f"{index}.jsonl", b"{}\n"), purpose=purpose).id)
            if index < BOB_FILES:
                bob.files.create(file=(f"b{index}.txt", b"b"), purpose="assistants")
            others = ORG_FILES - ALICE_FILES - BOB_FILES
            upstream.add_org_files(
                others * (index + 1) // ALICE_FILES - others * index // ALICE_FILES
            )
        assert len(upstream.store.files) == ORG_FILES

        upstream.clear_log()
        listed = [f.id for f in alice.files.list()]  # the SDK follows has_more
        assert listed == mine[::-1]  # newest first, as OpenAI lists files
        assert upstream_calls(upstream, "/v1/files") <= 2

        upstream.clear_log()
        paged = list(alice.files.list(limit=3, order="asc"))
        assert [f.id for f in paged] == mine
        assert upstream_calls(upstream, "/v1/files") <= 4  # one a page: 3 + 3 + 3 + 1

        upstream.clear_log()
        batches = [f.id for f in alice.files.list(purpose="batch")]
        assert batches == [mine[7], mine[0]]
        assert upstream_calls(upstream, "/v1/files") <= 2
        upstream.clear_log()
        one_by_one = [f.id for f in alice.files.list(purpose="batch", limit=1)]
        assert one_by_one == [mine[7], mine[0]]  # past her other files, which do not pass
        assert upstream_calls(upstream, "/v1/files") <= 3  # one a page

        upstream.clear_log()
        assert len(list(admin.files.list())) == ORG_FILES
        assert upstream_calls(upstream, "/v1/files") == 1  # the admin's list passes through

        with openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY) as direct:
            direct.files.delete(mine[0])  # deleted behind the relay's back
            direct.files.delete(mine[5])
        assert owner_rows(database, mine[5]) == 1
        listed = [f.id for f in alice.files.list()]
        assert listed == [file_id for file_id in mine[::-1] if file_id not in (mine[0], mine[5])]
        assert owner_rows(database, mine[5]) == 0  # the upstream's 404 dropped its owner
        assert [f.id for f in alice.files.list(purpose="batch")] == [mine[7]]


def test_what_a_list_costs_the_upstream_counts_against_the_members_rpm(
    upstream: FakeUpstream, relay_url: str, secrets: dict[str, str]
) -> None:
    """Carol (6 requests a minute) has 3 vector stores among 300: the upstream's largest
    page of vector stores is 100, so her list fetches a page and retrieves the other two."""
    with (
        client(relay_url, secrets["carol"]) as carol,
        openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY) as direct,
    ):
        stores = []
        for index in range(3):
            stores.append(carol.vector_stores.create(name=f"carol-{index}").id)
            for other in range(150 if index < 2 else 0):
                direct.vector_stores.create(name=f"org-{index}-{other}")
        upstream.clear_log()
        assert [s.id for s in carol.vector_stores.list()] == stores[::-1]
        assert upstream_calls(upstream, "/v1/vector_stores") == 3
        with pytest.raises(openai.RateLimitError):  # 3 creates + 1 list + 2 more calls = 6
            carol.vector_stores.retrieve(stores[0])


def test_a_page_ends_early_rather_than_retrieve_without_end(
    upstream: FakeUpstream,
    relay_url: str,
    secrets: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past its retrieves a request answers the ids it settled, with has_more: the SDK's
    auto-pagination still sees every store once, in order, and no request runs long."""
    monkeypatch.setattr(listing, "RETRIEVES_A_REQUEST", 2)
    with (
        client(relay_url, secrets["alice"]) as alice,
        openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY) as direct,
    ):
        stores = []
        for index in range(6):
            stores.append(alice.vector_stores.create(name=f"alice-{index}").id)
            for other in range(110):
                direct.vector_stores.create(name=f"org-{index}-{other}")
        upstream.clear_log()
        pages = alice.vector_stores.list(limit=20)
        seen = [store.id for page in pages.iter_pages() for store in page.data]
        assert seen == stores[::-1]
        lists = upstream.requests_to("/v1/vector_stores")
        retrieves = upstream_calls(upstream, "/v1/vector_stores/")
        assert retrieves == 6  # 110 others between hers: no page of 100 holds one, so each
        assert len(lists) == 3  # 3 requests of 2 stores each, with a page of the list each
