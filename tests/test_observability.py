"""Operators see exact figures in /metrics and one clean log line per request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from dbfixtures import ledger_rows
from fakeupstream import FakeUpstream, chat_prompt, input_tokens, reply_words
from servers import ADMIN, RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread
from teamkeys import create_keys
from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.observability.logs import JsonFormatter, write_request_lines

PROMPT = "one two three four five"
MESSAGES: Any = [{"role": "user", "content": PROMPT}]


def entry(**changes: Any) -> LedgerEntry:
    base = LedgerEntry(
        ts=datetime(2026, 12, 1, 12, 30, 15, 250_000, tzinfo=UTC),
        relay_request_id="req_relay_1",
        key_id="k1",
        key_name="alice",
        method="POST",
        operation="createChatCompletion",
        path="/v1/chat/completions",
        model="gpt-4.1",
        status=200,
        duration_ms=20.04,
        ttfb_ms=12.34,
        bytes_in=100,
        bytes_out=1_000,
        streamed=False,
        aborted=False,
        input_tokens=12,
        output_tokens=30,
        cached_tokens=None,
        reasoning_tokens=None,
        upstream_request_id="req_up_1",
        error_type=None,
    )
    return dataclasses.replace(base, **changes)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def own_relay(fake_upstream: FakeUpstream) -> Iterator[RunningRelay]:
    """A relay of its own: metric registries are per process, counts start from this test."""
    with relay_in_thread(fake_upstream.base_url, RELAY_METRICS_TOKEN="metrics-secret") as relay:
        yield relay


def test_metrics_show_exact_request_counts_and_tokens(
    own_relay: RunningRelay, upstream: FakeUpstream
) -> None:
    scrape_headers = {"Authorization": "Bearer metrics-secret"}
    before = httpx2.get(own_relay.url + "/metrics", headers=scrape_headers).text
    messages = [{"role": "user", "content": PROMPT}]
    with openai.OpenAI(base_url=own_relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk:
        for _ in range(7):
            sdk.chat.completions.create(model="gpt-4.1", messages=messages)  # type: ignore[arg-type]
        for _ in range(3):
            list(sdk.chat.completions.create(model="gpt-4.1", messages=messages, stream=True))  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve("file-nope")
    assert httpx2.get(own_relay.url + "/metrics").status_code == 401
    after = httpx2.get(own_relay.url + "/metrics", headers=scrape_headers).text

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    chat = {"operation": "createChatCompletion", "status": "200"}
    assert delta("teamrelay_requests_total", **chat) == 10
    assert delta("teamrelay_requests_total", operation="retrieveFile", status="404") == 1
    prompt_tokens = input_tokens(chat_prompt({"messages": messages}))
    reply_tokens = len(reply_words([PROMPT]))
    assert delta("teamrelay_tokens_total", kind="input", model="gpt-4.1") == 10 * prompt_tokens
    assert delta("teamrelay_tokens_total", kind="output", model="gpt-4.1") == 10 * reply_tokens
    assert delta("teamrelay_request_duration_seconds_count", operation="createChatCompletion") == 10
    assert delta("teamrelay_cost_usd_total", model="gpt-4.1") > 0
    assert "teamrelay_streams_in_flight" in after
    assert "teamrelay_ledger_queue_depth" in after


def test_every_log_line_is_json_and_holds_no_key(
    relay: RunningRelay, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    auth = {"Authorization": f"Bearer {RELAY_KEY}"}
    chat = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
    with httpx2.Client(base_url=relay.base_url, headers=auth, timeout=10) as http:
        http.post("/chat/completions", json=chat)
        http.post("/chat/completions", json={**chat, "stream": True})
        upstream.faults("/v1/chat/completions", drop_after_events=2, times=1)
        http.post("/chat/completions", json={**chat, "stream": True})
        upstream.faults("/v1/embeddings", status=500, times=1)
        http.post("/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
        http.get("/models", headers={"Authorization": "Bearer tr-not-a-key-999"})
        http.get("/nope")
    httpx2.get(relay.url + "/metrics", headers=auth).raise_for_status()  # drains pending lines
    formatter = JsonFormatter()
    lines = [line for record in caplog.records for line in formatter.format(record).split("\n")]
    requests = [json.loads(line) for line in lines if '"request"' in line]
    assert len(requests) >= 6
    for line in lines:
        parsed = json.loads(line)
        assert parsed["level"]
        for secret in (UPSTREAM_KEY, RELAY_KEY, "tr-not-a-key-999"):
            assert secret not in line
    statuses = sorted(r["request"]["status"] for r in requests[-6:])
    assert statuses == [200, 200, 200, 401, 404, 500]
    assert all(r["request"]["relay_request_id"].startswith("req_relay_") for r in requests[-6:])


def test_request_lines_show_ttfb_rounded_or_a_dash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="teamrelay.requests")
    write_request_lines(
        [
            entry(),
            entry(
                relay_request_id="req_relay_2",
                key_name=None,
                method="GET",
                operation="retrieveFile",
                path="/v1/files/file-nope",
                status=404,
                duration_ms=3.0,
                ttfb_ms=None,
                input_tokens=None,
                output_tokens=None,
            ),
        ]
    )
    [record] = [r for r in caplog.records if r.name == "teamrelay.requests"]
    assert record.getMessage().split("\n") == [
        "req_relay_1 alice POST /v1/chat/completions createChatCompletion -> 200 20.0ms "
        "ttfb=12.3ms tokens=12/30",
        "req_relay_2 None GET /v1/files/file-nope retrieveFile -> 404 3.0ms "
        "ttfb=- tokens=None/None",
    ]


def test_the_json_formatter_gives_one_line_per_request_with_its_ledger_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="teamrelay.requests")
    prompt = b'{"model": "gpt-image-1", "prompt": "the launch plan, confidential"}'
    entries = [
        entry(),
        entry(relay_request_id="req_relay_2", ttfb_ms=None, status=500, shaped_body=prompt),
    ]
    write_request_lines(entries)
    [record] = [r for r in caplog.records if r.name == "teamrelay.requests"]
    lines = JsonFormatter().format(record).split("\n")
    assert len(lines) == 2
    for line, text_line, one in zip(lines, record.getMessage().split("\n"), entries, strict=True):
        parsed = json.loads(line)
        assert parsed["level"] == "info"
        assert parsed["logger"] == "teamrelay.requests"
        assert parsed["message"] == text_line
        request = parsed["request"]
        fields = {field.name: getattr(one, field.name) for field in dataclasses.fields(one)}
        del fields["shaped_body"]  # the member's request, not a fact about it
        assert request == json.loads(json.dumps({**fields, "ts": one.ts.isoformat()}))
        assert "launch plan" not in line
    assert json.loads(lines[0])["request"]["ts"] == "2026-12-01T12:30:15.250000+00:00"
    assert json.loads(lines[1])["request"]["ttfb_ms"] is None


def test_a_key_name_with_a_newline_keeps_its_json_request_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="teamrelay.requests")
    write_request_lines([entry(key_name="ops\nteam"), entry(relay_request_id="req_relay_2")])
    [record] = [r for r in caplog.records if r.name == "teamrelay.requests"]
    lines = JsonFormatter().format(record).split("\n")
    assert [json.loads(line)["request"]["key_name"] for line in lines] == ["ops\nteam", "alice"]


def test_metrics_need_the_metrics_token_or_an_admin_key(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/relay.db"
    member = create_keys(url, bob={})["bob"]
    env = {"RELAY_DATABASE_URL": url, "RELAY_METRICS_TOKEN": "metrics-secret"}
    with relay_in_thread(upstream.base_url, **env) as relay:
        scrapes = {
            who: httpx2.get(relay.url + "/metrics", headers=headers)
            for who, headers in {
                "nobody": {},
                "a wrong token": {"Authorization": "Bearer metrics-wrong"},
                "a member": {"Authorization": f"Bearer {member}"},
                "the metrics token": {"Authorization": "Bearer metrics-secret"},
                "an admin key": ADMIN,
                "an admin key as X-Relay-Key": {"X-Relay-Key": RELAY_KEY},
            }.items()
        }
    assert {who: answer.status_code for who, answer in scrapes.items()} == {
        "nobody": 401,
        "a wrong token": 401,
        "a member": 403,
        "the metrics token": 200,
        "an admin key": 200,
        "an admin key as X-Relay-Key": 200,
    }
    for refused in ("nobody", "a wrong token", "a member"):
        error = scrapes[refused].json()["error"]
        assert error["message"] == "Metrics need the metrics token or an admin relay key."
        assert error["code"] in ("invalid_api_key", "insufficient_scope")
        assert "teamrelay_" not in scrapes[refused].text
    assert "teamrelay_requests_total" in scrapes["an admin key"].text


def test_without_a_token_metrics_need_an_admin_key_unless_made_public(
    upstream: FakeUpstream,
) -> None:
    with relay_in_thread(upstream.base_url) as relay:
        assert httpx2.get(relay.url + "/metrics").status_code == 401
        assert httpx2.get(relay.url + "/metrics", headers=ADMIN).status_code == 200
    with relay_in_thread(upstream.base_url, RELAY_METRICS_PUBLIC="true") as relay:
        scrape = httpx2.get(relay.url + "/metrics")
    assert scrape.status_code == 200
    assert "teamrelay_requests_total" in scrape.text


def test_with_metrics_off_the_route_is_an_openai_404_and_the_ledger_still_records(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/relay.db"
    with (
        relay_in_thread(
            upstream.base_url, RELAY_DATABASE_URL=url, RELAY_METRICS_ENABLED="false"
        ) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk,
    ):
        scrape = httpx2.get(relay.url + "/metrics")
        assert scrape.status_code == 404
        assert scrape.json() == {
            "error": {
                "message": "Unknown route.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        answer = sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        assert answer.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve("file-nope")
    rows = sorted(asyncio.run(ledger_rows(url)), key=lambda row: row["ts"])
    assert [(row["operation"], row["status"]) for row in rows] == [
        ("createChatCompletion", 200),
        ("retrieveFile", 404),
    ]
    assert answer.usage is not None
    assert rows[0]["input_tokens"] == answer.usage.prompt_tokens
    assert rows[0]["output_tokens"] == answer.usage.completion_tokens
    assert rows[0]["model"] == answer.model


def test_with_request_lines_off_no_request_is_logged(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with (
        relay_in_thread(upstream.base_url, RELAY_REQUEST_LOG_ENABLED="false") as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk,
    ):
        before = httpx2.get(relay.url + "/metrics", headers=ADMIN).text
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        list(sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True))
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve("file-nope")
        after = httpx2.get(relay.url + "/metrics", headers=ADMIN).text
    chat = {"operation": "createChatCompletion", "status": "200"}
    requests = "teamrelay_requests_total"
    assert _metric(after, requests, **chat) - _metric(before, requests, **chat) == 2
    assert logging.getLogger("teamrelay.requests").isEnabledFor(logging.INFO)
    assert [r for r in caplog.records if r.name == "teamrelay.requests"] == []
