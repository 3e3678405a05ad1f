"""The tap on the real path: usage is read, and the relay's own additions never show."""

from __future__ import annotations

import json

import httpx2

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "a b c d"}], "stream": True}


def _events(raw: bytes) -> list[bytes]:
    return [event for event in raw.split(b"\n\n") if event]


def test_a_stream_without_include_usage_reaches_the_client_as_if_never_asked(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    answer = httpx2.post(relay.base_url + "/chat/completions", json=CHAT, headers=AUTH)
    received = upstream.wait_done(upstream.log[-1])
    asked = json.loads(received.body or b"")
    assert asked["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in asked.items() if k != "stream_options"} == CHAT
    upstream_events = _events(bytes(received.sent))
    usage_chunks = [e for e in upstream_events if b'"choices":[]' in e]
    assert len(usage_chunks) == 1
    expected = [e.replace(b',"usage":null', b"") for e in upstream_events if e not in usage_chunks]
    assert _events(answer.content) == expected
    assert b'"usage"' not in answer.content
    assert answer.content.endswith(b"data: [DONE]\n\n")


def test_a_stream_that_asked_for_usage_is_untouched(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    request = json.dumps({**CHAT, "stream_options": {"include_usage": True}}).encode()
    headers = {**AUTH, "content-type": "application/json"}
    answer = httpx2.post(relay.base_url + "/chat/completions", content=request, headers=headers)
    received = upstream.wait_done(upstream.log[-1])
    assert received.body == request
    assert answer.content == bytes(received.sent)
