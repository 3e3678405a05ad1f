"""The operator's ledger: every request a row, real token counts, nothing lost on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream, chat_prompt, input_tokens, reply_words, responses_prompt
from servers import RELAY_KEY, relay_process
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
KINDS = ("plain", "streamed", "usage", "responses", "failed", "upload", "abandoned")
MODEL = "gpt-4.1"  # not a reasoning model: the fake's usage is words in, words out


def _chat(n: int, **extra: Any) -> dict[str, Any]:
    words = " ".join(f"w{n}-{i}" for i in range(1 + n % 7))
    return {"model": MODEL, "messages": [{"role": "user", "content": words}], **extra}


def _expected_chat(body: dict[str, Any]) -> tuple[int, int]:
    texts = chat_prompt(body)
    return input_tokens(texts), len(reply_words(texts))


def _drive(base_url: str, upstream: FakeUpstream) -> tuple[Counter[str], int, int]:
    """1,000 mixed requests; returns the count per kind and the expected token totals."""
    kinds: Counter[str] = Counter()
    expected_in = expected_out = 0
    with httpx2.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        for n in range(1000):
            kind = ("plain", "streamed", "usage", "responses", "failed", "upload", "abandoned")[
                n % 7
            ]
            kinds[kind] += 1
            if kind in ("plain", "streamed", "usage"):
                extra: dict[str, Any] = {}
                if kind != "plain":
                    extra["stream"] = True
                if kind == "usage":
                    extra["stream_options"] = {"include_usage": True}
                body = _chat(n, **extra)
                answer = http.post("/chat/completions", json=body)
                assert answer.status_code == 200
                tokens_in, tokens_out = _expected_chat(body)
                expected_in, expected_out = expected_in + tokens_in, expected_out + tokens_out
                if kind == "streamed":
                    assert b'"usage"' not in answer.content
            elif kind == "responses":
                body = {"model": MODEL, "input": f"tell me about {n}", "stream": True}
                assert http.post("/responses", json=body).status_code == 200
                texts = responses_prompt(body)
                expected_in += input_tokens(texts)
                expected_out += len(reply_words(texts))
            elif kind == "failed":
                assert http.get(f"/files/file-missing-{n}").status_code == 404
            elif kind == "upload":
                files = {"file": ("a.txt", b"x" * 100)}
                assert http.post("/files", files=files, data={"purpose": "assistants"}).is_success
            else:
                upstream.faults("/v1/responses", sse_events=30, sse_interval=0.02, times=1)
                body = {"model": MODEL, "input": "a long story", "stream": True}
                with http.stream("POST", "/responses", json=body) as stream:
                    next(stream.iter_lines())
    return kinds, expected_in, expected_out


async def test_a_thousand_mixed_requests_leave_a_thousand_exact_rows_after_sigterm(
    upstream: FakeUpstream, db_url: str
) -> None:
    with relay_process(upstream.base_url, RELAY_DATABASE_URL=db_url) as relay:
        kinds, expected_in, expected_out = _drive(relay.base_url, upstream)
    # relay_process ended it with SIGTERM: what was queued must have been flushed.
    rows = await ledger_rows(db_url)
    assert len(rows) == 1000
    answered = [r for r in rows if r["status"] == 200 and not r["aborted"]]
    with_usage = [
        r for r in answered if r["operation"] in ("createChatCompletion", "createResponse")
    ]
    assert sum(r["input_tokens"] for r in with_usage) == expected_in
    assert sum(r["output_tokens"] for r in with_usage) == expected_out
    aborted = [r for r in rows if r["aborted"]]
    assert len(aborted) == kinds["abandoned"]
    assert all(r["error_type"] == "client_disconnected" for r in aborted)
    assert sum(1 for r in rows if r["status"] == 404) == kinds["failed"]
    assert all(r["key_name"] and r["relay_request_id"] for r in rows)
    assert all(r["streamed"] for r in rows if r["operation"] == "createResponse")
    dump = json.dumps(rows, default=str)
    assert RELAY_KEY not in dump

    report = subprocess.run(  # noqa: ASYNC221 - the relay is stopped; nothing else runs
        [str(Path(sys.executable).parent / "teamrelay"), "usage", "--by", "key", "--json"],
        env={"RELAY_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    total = json.loads(report.stdout)["total"]
    assert total["requests"] == 1000
    assert total["input_tokens"] == sum(r["input_tokens"] or 0 for r in rows)
    assert total["output_tokens"] == sum(r["output_tokens"] or 0 for r in rows)
    assert RELAY_KEY not in report.stdout + report.stderr


@pytest.mark.services
async def test_a_revoked_key_is_refused_by_every_instance_within_5_seconds(
    upstream: FakeUpstream, postgres_url: str
) -> None:
    engine = create_engine(postgres_url)
    store = KeyStore(engine)
    try:
        record, secret = await store.create("carol", scopes={"api"})
        headers = {"Authorization": f"Bearer {secret}"}
        with (
            relay_process(upstream.base_url, RELAY_DATABASE_URL=postgres_url) as first,
            relay_process(upstream.base_url, RELAY_DATABASE_URL=postgres_url) as second,
        ):
            urls = [first.base_url + "/models", second.base_url + "/models"]
            assert [httpx2.get(u, headers=headers).status_code for u in urls] == [200, 200]
            await store.revoke(record.id)
            revoked_at = time.monotonic()
            refused: dict[str, float] = {}
            while len(refused) < 2 and time.monotonic() - revoked_at < 10:
                for url in urls:
                    if url not in refused and httpx2.get(url, headers=headers).status_code == 401:
                        refused[url] = time.monotonic() - revoked_at
                await asyncio.sleep(0.1)
        assert len(refused) == 2
        assert max(refused.values()) <= 5
    finally:
        await engine.dispose()
