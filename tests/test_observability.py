"""Operators see exact figures in /metrics and one clean log line per request."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream, chat_prompt, input_tokens, reply_words
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread
from teamrelay.observability.logs import JsonFormatter

PROMPT = "one two three four five"


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
    httpx2.get(relay.url + "/metrics").raise_for_status()  # drains pending lines
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
