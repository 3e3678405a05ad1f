"""Against an upstream that compresses as OpenAI's edge does, usage is counted, caps hold, and
a member's new objects are theirs at once; the client still gets the upstream's exact bytes."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx2
import openai
import pytest
import zstandard

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream
from servers import ADMIN, RunningRelay, relay_in_thread
from teamkeys import create_keys

CODINGS = ("gzip", "deflate", "br", "zstd")
CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "one two three four"}]}
# 13 words in, 20 out: the 33-token answer of the account.
WORDS_13 = " ".join(f"w{i}" for i in range(13))


def _decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "deflate":
        return zlib.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _usage_of(body: bytes, streamed: bool) -> dict[str, Any]:
    if not streamed:
        usage: dict[str, Any] = json.loads(body)["usage"]
        return usage
    for event in body.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data.startswith(b"{") and b'"usage":{' in data:
            found: dict[str, Any] = json.loads(data)["usage"]
            return found
    raise AssertionError("no usage event")


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/ledger.db"


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("coding", CODINGS)
def test_the_client_gets_the_upstreams_bytes_and_the_ledger_its_usage(
    upstream: FakeUpstream, ledger_url: str, coding: str, streamed: bool
) -> None:
    secrets = create_keys(ledger_url, alice={})
    upstream.compress_streams = True
    body: dict[str, Any] = dict(CHAT)
    if streamed:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {secrets['alice']}", "Accept-Encoding": coding}
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=ledger_url) as relay:
        with httpx2.stream(
            "POST", relay.base_url + "/chat/completions", json=body, headers=headers
        ) as answer:
            raw = b"".join(answer.iter_raw())
        assert answer.status_code == 200
        assert answer.headers["content-encoding"] == coding
    received = upstream.wait_done(upstream.log[-1])
    assert received.header("accept-encoding") == coding
    assert raw == bytes(received.sent)
    usage = _usage_of(_decode(coding, raw), streamed)
    [row] = asyncio.run(ledger_rows(ledger_url))
    assert (row["input_tokens"], row["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert row["model"] == "gpt-4.1"


@pytest.mark.parametrize("coding", CODINGS)
def test_a_daily_token_cap_holds_with_compressed_answers(
    upstream: FakeUpstream, ledger_url: str, coding: str
) -> None:
    """A raw client: the SDK picks its own codings (and cannot decode zstd)."""
    secrets = create_keys(ledger_url, alice={"daily_tokens": 200})
    headers = {"Authorization": f"Bearer {secrets['alice']}", "Accept-Encoding": coding}
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": WORDS_13}],
        "max_completion_tokens": 25,
    }
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=ledger_url) as relay:
        codes = [
            httpx2.post(
                relay.base_url + "/chat/completions", json=body, headers=headers
            ).status_code
            for _ in range(10)
        ]
    passed = codes.count(200)
    assert codes == [200] * passed + [429] * (10 - passed)
    assert passed
    assert upstream.log[-1].response_header("content-encoding") == coding
    rows = asyncio.run(ledger_rows(ledger_url))
    counted = [r for r in rows if r["status"] == 200]
    assert len(counted) == passed
    assert [r["input_tokens"] + r["output_tokens"] for r in counted] == [33] * passed
    assert passed <= 7
    report = subprocess.run(
        [str(Path(sys.executable).parent / "teamrelay"), "usage", "--by", "key", "--json"],
        env={"RELAY_DATABASE_URL": ledger_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    total = json.loads(report.stdout)["total"]
    assert total["input_tokens"] + total["output_tokens"] == 33 * passed


@pytest.fixture
def team(upstream: FakeUpstream, ledger_url: str) -> Iterator[tuple[RunningRelay, dict[str, str]]]:
    secrets = create_keys(ledger_url, alice={}, bob={})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=ledger_url) as relay:
        yield relay, secrets


def test_a_member_uses_what_it_just_made_and_another_member_cannot(
    upstream: FakeUpstream, team: tuple[RunningRelay, dict[str, str]]
) -> None:
    relay, secrets = team
    alice = openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0)
    bob = openai.OpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0)
    with alice, bob:
        file = alice.files.create(file=("notes.txt", b"private notes\n"), purpose="assistants")
        assert upstream.log[-1].response_header("content-encoding") in ("gzip", "br")
        line = json.dumps({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions"})
        batch_input = alice.files.create(file=("in.jsonl", line.encode() + b"\n"), purpose="batch")
        store = alice.vector_stores.create(name="alice", file_ids=[file.id])
        response = alice.responses.create(model="gpt-4.1", input="hello")
        batch = alice.batches.create(
            input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert alice.files.retrieve(file.id).id == file.id
        assert file.id in {f.id for f in alice.files.list()}
        assert alice.vector_stores.retrieve(store.id).id == store.id
        assert alice.responses.retrieve(response.id).id == response.id
        assert alice.batches.retrieve(batch.id).id == batch.id
        for fetch, object_id in (
            (bob.files.retrieve, file.id),
            (bob.vector_stores.retrieve, store.id),
            (bob.responses.retrieve, response.id),
            (bob.batches.retrieve, batch.id),
        ):
            with pytest.raises(openai.NotFoundError):
                fetch(object_id)
        assert file.id not in {f.id for f in bob.files.list()}


def test_an_answer_that_cannot_be_read_spends_its_reservation_and_says_so(
    upstream: FakeUpstream, ledger_url: str
) -> None:
    secrets = create_keys(ledger_url, alice={"daily_tokens": 200})
    upstream.faults("/v1/chat/completions", headers={"Content-Encoding": "xz"})
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=ledger_url) as relay:
        headers = {"Authorization": f"Bearer {secrets['alice']}", "Accept-Encoding": "gzip"}
        body = {**CHAT, "max_completion_tokens": 36}  # 40 or more reserved a call
        statuses = [
            httpx2.post(relay.base_url + "/chat/completions", json=body, headers=headers)
            for _ in range(8)
        ]
        metrics = httpx2.get(relay.url + "/metrics", headers=ADMIN).text
    codes = [r.status_code for r in statuses]
    passed = codes.count(200)
    assert 0 < passed <= 5  # settled as zero, all eight would pass
    assert codes == [200] * passed + [429] * (8 - passed)
    rows = [r for r in asyncio.run(ledger_rows(ledger_url)) if r["status"] == 200]
    assert len(rows) == passed
    assert all(r["usage_unknown"] and r["input_tokens"] is None for r in rows)
    counted = f'teamrelay_usage_unknown_total{{operation="createChatCompletion"}} {passed}.0'
    assert counted in metrics
