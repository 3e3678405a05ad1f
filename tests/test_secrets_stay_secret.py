"""Neither the upstream key nor a relay key leaks: not upstream, not to clients, not in logs."""

from __future__ import annotations

import logging

import httpx2
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread
from teamrelay.headers import HOP_BY_HOP

CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hello"}]}
WRONG_KEY = "tr-wrong-key-123456"
_CLIENT_LOGGERS = ("openai", "httpx2", "httpcore2")


def _exchanges(relay: RunningRelay, upstream: FakeUpstream) -> list[httpx2.Response]:
    auth = {"Authorization": f"Bearer {RELAY_KEY}"}
    hop_by_hop = {
        "Connection": "keep-alive, x-custom",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic abc",
        "X-Relay-Key": RELAY_KEY,
    }
    responses = []
    with httpx2.Client(base_url=relay.base_url, timeout=10) as raw:
        responses.append(raw.post("/chat/completions", json=CHAT, headers=auth))
        responses.append(raw.post("/chat/completions", json={**CHAT, "stream": True}, headers=auth))
        upstream.faults("/v1/chat/completions", drop_after_events=2, times=1)
        responses.append(raw.post("/chat/completions", json={**CHAT, "stream": True}, headers=auth))
        responses.append(raw.get("/files/file-missing", headers=auth))
        responses.append(raw.get("/models", headers={**hop_by_hop, **auth}))
        responses.append(raw.get("/models", headers={"Authorization": f"Bearer {WRONG_KEY}"}))
        responses.append(raw.get("/models", headers={"X-Relay-Key": WRONG_KEY}))
    return responses


def test_keys_go_only_where_they_belong(
    relay: RunningRelay, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = _exchanges(relay, upstream)
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 401, 401]
    assert b"upstream stream broke" in responses[2].content
    assert len(upstream.log) == 5
    for received in upstream.log:
        assert received.header("authorization") == f"Bearer {UPSTREAM_KEY}"
        names = {name.lower().encode() for name, _ in received.headers}
        assert not names & HOP_BY_HOP
        assert not names & {b"x-relay-key", b"proxy-authorization"}
        assert all(RELAY_KEY not in value for _, value in received.headers)
    for response in responses:
        exposed = response.text + "".join(f"{k}:{v}" for k, v in response.headers.items())
        for secret in (UPSTREAM_KEY, RELAY_KEY, WRONG_KEY):
            assert secret not in exposed
    relay_side = [r for r in caplog.records if not r.name.startswith(_CLIENT_LOGGERS)]
    logged = "\n".join(
        record.getMessage() + str(record.exc_info or "") + str(record.__dict__)
        for record in relay_side
    )
    for secret in (UPSTREAM_KEY, RELAY_KEY, WRONG_KEY):
        assert secret not in logged


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://relay-user:s3cret-pass@{host}/v1", "http://{host}"),
        ("http://{host}/proxy/s3cret-path-token/v1", "http://{host}"),
    ],
)
def test_health_names_only_the_upstreams_origin(
    fake_upstream: FakeUpstream, base_url: str, shown: str
) -> None:
    host = fake_upstream.base_url.split("://", 1)[1].split("/", 1)[0]
    with relay_in_thread(base_url.format(host=host)) as running:
        answer = httpx2.get(running.url + "/health", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["openai"]["base_url"] == shown.format(host=host)
    assert "s3cret" not in answer.text
