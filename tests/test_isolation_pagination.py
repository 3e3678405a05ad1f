"""Filtered lists page correctly: each key sees each of its objects exactly once."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai

from fakeupstream import FakeUpstream
from servers import relay_in_thread
from teamkeys import create_keys

NAMES = ("alice", "bob", "carol")


def test_every_owned_object_appears_exactly_once_across_pages(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = create_keys(url, **{name: {} for name in NAMES})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        clients = {
            name: openai.OpenAI(base_url=relay.base_url, api_key=secret, max_retries=0)
            for name, secret in secrets.items()
        }
        try:
            owned: dict[str, list[str]] = {name: [] for name in NAMES}
            for index in range(250):
                name = NAMES[index % 7 % 3]  # uneven runs of each key in the upstream's order
                created = clients[name].files.create(
                    file=(f"{index}.txt", b"x"), purpose="assistants"
                )
                owned[name].append(created.id)
            assert len(upstream.store.files) == 250
            for name, client in clients.items():
                for limit in (1, 7, 100):
                    seen = [f.id for f in client.files.list(limit=limit)]  # the SDK pages
                    assert sorted(seen) == sorted(owned[name]), (name, limit)
                    assert len(seen) == len(set(seen))
                ascending = [f.id for f in client.files.list(limit=9, order="asc")]
                assert ascending == owned[name]

            with httpx2.Client(base_url=relay.base_url) as http:
                headers = {"Authorization": f"Bearer {secrets['carol']}"}
                pages = []
                after: str | None = None
                while True:
                    params = {"limit": "40", "order": "asc"} | ({"after": after} if after else {})
                    page = http.get("/files", params=params, headers=headers).json()
                    pages.append(page)
                    if not page["has_more"]:
                        break
                    after = page["last_id"]
                ids = [item["id"] for page in pages for item in page["data"]]
                assert ids == owned["carol"]
                assert all(len(page["data"]) == 40 for page in pages[:-1])
                assert pages[-1]["last_id"] == owned["carol"][-1]
                assert pages[0]["first_id"] == owned["carol"][0]
                before = http.get(
                    "/files",
                    params={"limit": "5", "order": "asc", "before": owned["carol"][20]},
                    headers=headers,
                ).json()
                assert [item["id"] for item in before["data"]] == owned["carol"][15:20]
                assert before["has_more"]
                bad = http.get("/files", params={"limit": "0"}, headers=headers)
                assert bad.status_code == 400
        finally:
            for client in clients.values():
                client.close()
