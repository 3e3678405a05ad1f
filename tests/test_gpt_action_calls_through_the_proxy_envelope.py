"""A GPT Action uses `/v1/proxy`: allowlisted JSON calls go through, nothing else leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, event, given, settings

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay
from strategies import CATALOG, POLICY, envelopes
from teamrelay.catalog import Matched

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
JSON_AUTH = {**AUTH, "content-type": "application/json"}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def _proxy(relay: RunningRelay, envelope: Any) -> httpx2.Response:
    return httpx2.post(relay.base_url + "/proxy", json=envelope, headers=AUTH)


@pytest.mark.parametrize("path", ["/v1/evals", "/v1/fine_tuning/jobs", "evals"])
def test_seed_blocked_paths_are_refused(
    relay: RunningRelay, upstream: FakeUpstream, path: str
) -> None:
    answer = _proxy(relay, {"method": "GET", "path": path})
    assert answer.status_code == 403
    assert upstream.log == []


def test_seed_models_and_responses_go_through(relay: RunningRelay, upstream: FakeUpstream) -> None:
    models = _proxy(relay, {"method": "GET", "path": "/v1/models", "params": {"limit": 2}})
    assert models.status_code == 200
    assert models.json()["object"] == "list"
    assert upstream.log[-1].target == "/v1/models?limit=2"
    answer = _proxy(
        relay,
        {"method": "POST", "path": "responses", "json": {"model": "gpt-5", "input": "hi"}},
    )
    assert answer.status_code == 200
    assert answer.json()["object"] == "response"
    received = upstream.log[-1]
    assert received.body == b'{"model":"gpt-5","input":"hi"}'
    assert received.header("content-type") == "application/json"


def test_streaming_and_non_json_are_refused(relay: RunningRelay, upstream: FakeUpstream) -> None:
    streamed = {"method": "POST", "path": "/v1/responses", "body": {"input": "x", "stream": True}}
    assert _proxy(relay, streamed).status_code == 400
    text = httpx2.post(
        relay.base_url + "/proxy", content=b"x", headers={**AUTH, "content-type": "text/plain"}
    )
    assert text.status_code == 415
    assert httpx2.get(relay.base_url + "/proxy", headers=AUTH).status_code == 405
    assert httpx2.post(relay.base_url + "/proxy", json={"method": "GET"}).status_code == 401
    assert upstream.log == []


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(envelope=envelopes())
def test_every_envelope_is_refused_before_upstream_or_is_one_allowlisted_call(
    relay: RunningRelay, fake_upstream: FakeUpstream, http: httpx2.Client, envelope: dict[str, Any]
) -> None:
    fake_upstream.clear_log()
    content = json.dumps(envelope)
    answer = http.post(relay.base_url + "/proxy", content=content, headers=JSON_AUTH)
    event(f"status {answer.status_code}")
    if 400 <= answer.status_code < 500 and not fake_upstream.log:
        assert answer.json()["error"]["message"]
        return
    assert len(fake_upstream.log) == 1
    received = fake_upstream.log[0]
    resolution = CATALOG.resolve(received.method, received.path[3:])
    assert isinstance(resolution, Matched)
    assert POLICY.decide(resolution.operation).proxy
    assert received.path.startswith("/v1/")
