"""Files back into the chat: inline base64 while the answer stays small, otherwise a signed,
short-lived, single-purpose relay link that streams the upstream bytes."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream, tiny_png
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay
from teamrelay.actions import files_out
from teamrelay.actions.files_out import BlobCache, LinkSigner
from teamrelay.actions.limits import MAX_PAYLOAD_CHARS

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}


@pytest.fixture
def direct(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    """The SDK straight at the fake, to put files there the way another client would."""
    with openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY) as sdk:
        yield sdk


def test_generated_image_comes_back_inline(relay: RunningRelay, upstream: FakeUpstream) -> None:
    answer = httpx2.post(
        relay.url + "/actions/images", json={"prompt": "a red kite", "n": 2}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.text) < MAX_PAYLOAD_CHARS
    files = answer.json()["openaiFileResponse"]
    assert [f["mime_type"] for f in files] == ["image/png", "image/png"]
    for index, item in enumerate(files):
        assert base64.b64decode(item["content"]) == tiny_png(f"a red kite:{index}")


def test_small_file_comes_back_inline(
    relay: RunningRelay, upstream: FakeUpstream, direct: openai.OpenAI
) -> None:
    data = os.urandom(20_000)
    made = direct.files.create(file=("chart.png", data), purpose="assistants")
    answer = httpx2.get(relay.url + f"/actions/files/{made.id}/content", headers=AUTH)
    assert answer.status_code == 200, answer.text
    (item,) = answer.json()["openaiFileResponse"]
    assert item["name"] == "chart.png"
    assert item["mime_type"] == "image/png"
    assert base64.b64decode(item["content"]) == data


def test_big_file_comes_back_as_a_signed_link(
    relay: RunningRelay, upstream: FakeUpstream, direct: openai.OpenAI
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    made = direct.files.create(file=("Q3 report.pdf", data), purpose="assistants")
    answer = httpx2.get(relay.url + f"/actions/files/{made.id}/content", headers=AUTH)
    assert answer.status_code == 200
    assert len(answer.text) < 2000
    (link,) = answer.json()["openaiFileResponse"]
    assert link.startswith(relay.url + "/actions/download/")
    started = time.monotonic()
    fetched = httpx2.get(link, timeout=10)
    assert time.monotonic() - started < 10
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-type"] == "application/pdf"
    assert fetched.headers["content-length"] == str(len(data))
    disposition = fetched.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''Q3%20report.pdf" in disposition


def test_signed_link_stops_working_when_altered_or_expired(
    relay: RunningRelay,
    upstream: FakeUpstream,
    direct: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = direct.files.create(file=("big.bin", b"z" * 200_000), purpose="assistants")
    answer = httpx2.get(relay.url + f"/actions/files/{made.id}/content", headers=AUTH)
    (link,) = answer.json()["openaiFileResponse"]
    payload, _, mac = link.rpartition("/")[2].partition(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    base = link.rpartition("/")[0]
    assert httpx2.get(f"{base}/{forged_payload}.{mac}").status_code == 403
    assert httpx2.get(f"{base}/{payload}.{mac[:-2]}xx").status_code == 403
    assert httpx2.get(f"{base}/{payload}").status_code == 403
    assert httpx2.get(link).status_code == 200
    later = time.time() + 301
    monkeypatch.setattr(files_out, "now", lambda: later)
    expired = httpx2.get(link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "link_expired"
    assert upstream.wait_done(upstream.requests_to(f"/v1/files/{made.id}/content")[-1]).done


def test_a_link_is_single_purpose() -> None:
    signer = LinkSigner(b"k" * 32, ttl=60)
    token = signer.sign("other-purpose", "file-1", "a.txt", "text/plain")
    with pytest.raises(Exception, match="not valid"):
        signer.verify(token)
    other = LinkSigner(b"j" * 32, ttl=60)
    with pytest.raises(Exception, match="not valid"):
        other.verify(signer.sign(files_out.PURPOSE_FILE, "file-1", "a.txt", "text/plain"))


def test_generated_blobs_expire_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = BlobCache(ttl=60, max_bytes=10)
    first = cache.put(b"12345678")
    second = cache.put(b"abcdefgh")
    assert cache.get(first) is None
    assert cache.get(second) == b"abcdefgh"
    later = time.time() + 61
    monkeypatch.setattr(files_out, "now", lambda: later)
    assert cache.get(second) is None


def test_signing_key_is_derived_never_the_upstream_key() -> None:
    derived = files_out.derive_key(None, UPSTREAM_KEY)
    assert UPSTREAM_KEY.encode() not in derived
    assert derived != files_out.derive_key("operator-key", UPSTREAM_KEY)
