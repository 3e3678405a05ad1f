"""Chat files (`openaiFileIdRefs`) into OpenAI files: fetched over https from allowlisted hosts
only, streamed into the upload, and every unsafe link refused before a byte is fetched."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx2
import pytest

from fakeupstream import FakeUpstream
from linkserver import CAP, LinkServer, files_env
from servers import RELAY_KEY, RunningRelay, relay_in_thread

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}


@pytest.fixture(scope="module")
def gpt_relay(fake_upstream: FakeUpstream, links: LinkServer) -> Iterator[RunningRelay]:
    with relay_in_thread(fake_upstream.base_url, **files_env(links)) as running:
        yield running


@pytest.fixture(scope="module")
def strict_relay(fake_upstream: FakeUpstream, links: LinkServer) -> Iterator[RunningRelay]:
    """The same relay without the test-only loopback setting."""
    env = files_env(links, RELAY_ACTIONS_ALLOW_LOOPBACK="false")
    with relay_in_thread(fake_upstream.base_url, **env) as running:
        yield running


def upload(relay: RunningRelay, refs: list[Any], **body: Any) -> httpx2.Response:
    payload = {"openaiFileIdRefs": refs, **body}
    return httpx2.post(relay.url + "/actions/files/upload", json=payload, headers=AUTH, timeout=30)


def ref(link: str, name: str = "notes.txt", mime: str = "text/plain") -> dict[str, str]:
    return {"name": name, "id": "file-chat1", "mime_type": mime, "download_link": link}


def test_custom_gpt_uploads_a_chat_file_to_a_vector_store(
    gpt_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer
) -> None:
    links.files["a.txt"] = b"alpha beta\n\ngamma delta\n" * 1000
    links.files["b.bin"] = bytes(range(256)) * 300
    store = httpx2.post(
        gpt_relay.url + "/actions/vector_stores", json={"name": "chat"}, headers=AUTH
    ).json()
    answer = upload(
        gpt_relay,
        [ref(links.link("/f/a.txt"), "a.txt"), links.link("/chunked/b.bin")],
        vector_store_id=store["id"],
    )
    assert answer.status_code == 200, answer.text
    stored = answer.json()["files"]
    assert [entry["name"] for entry in stored] == ["a.txt", "b.bin"]
    for entry, name in zip(stored, ["a.txt", "b.bin"], strict=True):
        assert upstream.store.files[entry["file_id"]].path.read_bytes() == links.files[name]
        assert entry["bytes"] == len(links.files[name])
    assert set(upstream.store.vector_store_files[store["id"]]) == {e["file_id"] for e in stored}


def test_loopback_link_is_refused_without_the_test_only_setting(
    strict_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer
) -> None:
    links.files["c.txt"] = b"secret"
    links.hits.clear()
    answer = upload(strict_relay, [ref(links.link("/f/c.txt"))])
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "file_address_not_allowed"
    assert links.hits == []


@pytest.mark.parametrize(
    ("link", "code"),
    [
        ("http://localhost:1/f/a.txt", "file_link_not_https"),
        ("https://example.com/f/a.txt", "file_host_not_allowed"),
        ("https://127.0.0.1:1/f/a.txt", "file_address_not_allowed"),
        ("https://10.0.0.1/f/a.txt", "file_address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "file_address_not_allowed"),
        ("ftp://localhost/f/a.txt", "file_link_not_https"),
        ("https://user:pw@localhost/f/a.txt", "invalid_file_link"),
    ],
)
def test_unsafe_links_are_refused_before_any_fetch(
    strict_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer, link: str, code: str
) -> None:
    links.hits.clear()
    answer = upload(strict_relay, [ref(links.link("/f/a.txt")), ref(link)])
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"]["code"] == code
    assert links.hits == []
    assert upstream.store.files == {}


@pytest.mark.parametrize(
    "target",
    ["https://example.com/f/a.txt", "https://10.0.0.1/f/a.txt", "http://localhost:{port}/f/a"],
)
def test_redirects_are_checked_like_links(
    gpt_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer, target: str
) -> None:
    links.hits.clear()
    destination = target.format(port=links.port)
    answer = upload(gpt_relay, [links.link(f"/go?to={destination}")])
    assert 400 <= answer.status_code < 500
    assert links.hits == ["/go"]
    assert upstream.store.files == {}


def test_a_redirect_within_the_allowlist_is_followed(
    gpt_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer
) -> None:
    links.files["r.txt"] = b"redirected"
    answer = upload(gpt_relay, [links.link(f"/go?to={links.link('/f/r.txt')}")])
    assert answer.status_code == 200, answer.text
    file_id = answer.json()["files"][0]["file_id"]
    assert upstream.store.files[file_id].path.read_bytes() == b"redirected"


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "64:ff9b::a9fe:a9fe",  # NAT64 of the cloud metadata address
        "64:ff9b:1::a00:1",  # local-use NAT64
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused(
    gpt_relay: RunningRelay, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def private(self: Any, host: str, port: int = 0, family_: int = 0) -> list[Any]:
        return [
            {"hostname": host, "host": address, "port": port, "family": family}
            | {"proto": 0, "flags": 0}
        ]

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", private)
    answer = upload(gpt_relay, ["https://localhost/f/a.txt"])
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "file_address_not_allowed"
    assert upstream.store.files == {}


@pytest.mark.parametrize("route", ["/f/", "/chunked/"])
def test_files_over_the_size_cap_are_refused(
    gpt_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer, route: str
) -> None:
    links.files["big.bin"] = b"x" * (CAP + 1)
    answer = upload(gpt_relay, [links.link(route + "big.bin")])
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "file_too_large"
    assert upstream.store.files == {}


def test_at_most_ten_files_per_call(gpt_relay: RunningRelay, links: LinkServer) -> None:
    links.hits.clear()
    answer = upload(gpt_relay, [links.link("/f/a.txt")] * 11)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "openaiFileIdRefs"
    assert links.hits == []


def test_upload_needs_the_relay_key(gpt_relay: RunningRelay, links: LinkServer) -> None:
    answer = httpx2.post(
        gpt_relay.url + "/actions/files/upload",
        json={"openaiFileIdRefs": [links.link("/f/a.txt")]},
    )
    assert answer.status_code == 401


def test_chat_files_go_up_through_the_relays_own_path(
    fake_upstream: FakeUpstream, links: LinkServer
) -> None:
    """One path to OpenAI: an Action's upload is a `/v1/files` request of the relay's own
    (its client, its body limit), not a second HTTP stack's."""
    links.files["small.txt"] = b"s" * 2_000
    links.files["large.txt"] = b"l" * 6_000
    env = files_env(links, RELAY_MAX_BODY_BYTES="5000")
    with relay_in_thread(fake_upstream.base_url, **env) as relay:
        before = len(fake_upstream.requests_to("/v1/files"))
        small = upload(relay, [links.link("/f/small.txt")])
        assert small.status_code == 200, small.text
        [sent] = fake_upstream.requests_to("/v1/files")[before:]
        assert "aiohttp" not in (sent.header("user-agent") or "")
        stored = len(fake_upstream.store.files)
        large = upload(relay, [links.link("/f/large.txt")])
    assert large.status_code == 413, large.text
    assert large.json()["error"]["code"] == "request_too_large"
    assert len(fake_upstream.store.files) == stored  # cut off as it streamed: nothing made
