"""The exchange with the upstream: exact forwarding, streaming, failures on both sides."""

from __future__ import annotations

import gzip
import json
import time

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, free_socket, relay_in_thread

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "tell a story"}]}


def test_method_path_query_and_body_reach_upstream_exactly(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    body = b'{"model":"gpt-5-mini",  "input":"spacing \\u00e9 kept",\n"extra_new_param":[1,2]}'
    target = "/v1/responses?include=a&include=b&q=%20x%2Fy&empty="
    answer = httpx2.post(
        relay.url + target, content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    received = upstream.wait_done(upstream.log[-1])
    assert (received.method, received.target) == ("POST", target)
    assert received.body == body


def test_first_sse_event_arrives_before_the_upstream_sends_the_second(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/chat/completions", sse_events=50, sse_interval=0.1)
    stream = client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    first_at = None
    count = 0
    for _chunk in stream:
        first_at = first_at or time.monotonic()
        count += 1
    received = upstream.wait_done(upstream.log[-1])
    assert count >= 50
    assert first_at is not None
    assert first_at < received.events_sent_at[1]


def test_a_client_leaving_mid_stream_closes_the_upstream_within_a_second(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/chat/completions", sse_events=100, sse_interval=0.2)
    with httpx2.stream(
        "POST", relay.base_url + "/chat/completions", json={**CHAT, "stream": True}, headers=AUTH
    ) as response:
        next(response.iter_lines())
        left_at = time.monotonic()
    received = upstream.wait_done(upstream.log[-1], timeout=5)
    assert received.disconnected_at is not None
    assert received.disconnected_at - left_at < 1.0


def test_an_upstream_dropping_mid_stream_ends_the_client_stream_with_an_error(
    client: openai.OpenAI, relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/chat/completions", drop_after_events=3, sse_interval=0.01)
    started = time.monotonic()
    with pytest.raises(openai.APIError, match="upstream stream broke"):
        for _chunk in client.chat.completions.create(**CHAT, stream=True):  # type: ignore[call-overload]
            pass
    assert time.monotonic() - started < 5
    assert httpx2.get(relay.url + "/health").json()["status"] == "ok"


def test_a_broken_binary_download_is_cut_short_not_completed(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/audio/speech", drop_after_bytes=100_000)
    speech = {"model": "tts-1", "voice": "alloy", "input": "long text"}
    with pytest.raises(httpx2.RemoteProtocolError):
        httpx2.post(relay.base_url + "/audio/speech", json=speech, headers=AUTH)
    assert httpx2.get(relay.url + "/health").status_code == 200


def test_upstream_errors_pass_through_unchanged(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/chat/completions", status=429, retry_after=7, message="Slow down", times=1)
    with pytest.raises(openai.RateLimitError, match="Slow down") as limited:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert limited.value.response.headers["retry-after"] == "7"
    upstream.faults("/v1/embeddings", status=500, message="The server had an error", times=1)
    with pytest.raises(openai.InternalServerError, match="The server had an error"):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_compressed_answers_pass_through_compressed(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    headers = {**AUTH, "Accept-Encoding": "gzip"}
    with httpx2.stream("GET", relay.base_url + "/models", headers=headers) as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["object"] == "list"
    assert upstream.log[-1].header("accept-encoding") == "gzip"


def test_unreachable_upstream_gives_502_in_openai_shape(upstream: FakeUpstream) -> None:
    closed = free_socket()
    port = closed.getsockname()[1]
    closed.close()
    with (
        relay_in_thread(f"http://127.0.0.1:{port}/v1") as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError, match="could not be reached") as caught,
    ):
        sdk.models.list()
    assert caught.value.status_code == 502


def test_a_silent_upstream_gives_504(upstream: FakeUpstream) -> None:
    upstream.faults("/v1/models", hang=True, times=1)
    with (
        relay_in_thread(upstream.base_url, RELAY_READ_TIMEOUT="0.5") as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError, match="did not answer in time") as caught,
    ):
        sdk.models.list()
    assert caught.value.status_code == 504


def test_a_stream_gone_quiet_ends_with_an_error_after_the_idle_timeout(
    upstream: FakeUpstream,
) -> None:
    upstream.faults("/v1/chat/completions", sse_events=5, sse_interval=3.0)
    with (
        relay_in_thread(upstream.base_url, RELAY_IDLE_TIMEOUT="0.5") as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk,
    ):
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="upstream stream broke"):
            for _chunk in sdk.chat.completions.create(**CHAT, stream=True):  # type: ignore[call-overload]
                pass
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("headers", "content", "status", "code"),
    [
        ({}, b"", 401, "invalid_api_key"),
        ({"Authorization": "Bearer wrong"}, b"", 401, "invalid_api_key"),
        ({**AUTH, "Content-Type": "text/plain"}, b"hi", 415, "unsupported_media_type"),
        ({**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, b"a=b", 415, None),
    ],
)
def test_refusals_have_openai_shape_and_never_reach_upstream(
    relay: RunningRelay,
    upstream: FakeUpstream,
    headers: dict[str, str],
    content: bytes,
    status: int,
    code: str | None,
) -> None:
    answer = httpx2.post(relay.base_url + "/chat/completions", content=content, headers=headers)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    assert answer.headers["x-relay-request-id"]
    assert upstream.log == []


def test_the_relay_key_may_come_in_x_relay_key(relay: RunningRelay, upstream: FakeUpstream) -> None:
    answer = httpx2.get(relay.base_url + "/models", headers={"X-Relay-Key": RELAY_KEY})
    assert answer.status_code == 200
    assert upstream.log[-1].header("x-relay-key") is None


def test_an_oversized_body_gets_413_before_upstream(upstream: FakeUpstream) -> None:
    with relay_in_thread(upstream.base_url, RELAY_MAX_JSON_BYTES="1000") as relay:
        answer = httpx2.post(
            relay.base_url + "/embeddings", json={"input": "x" * 2000}, headers=AUTH
        )
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large"

        def chunked() -> object:
            yield b'{"input": "'
            yield b"x" * 2000
            yield b'"}'

        answer = httpx2.post(
            relay.base_url + "/embeddings",
            content=chunked(),  # type: ignore[arg-type]
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert answer.status_code == 413
    assert upstream.log == []


def test_request_ids_are_kept_or_made(relay: RunningRelay, upstream: FakeUpstream) -> None:
    mine = httpx2.get(
        relay.base_url + "/models", headers={**AUTH, "x-relay-request-id": "trace-42"}
    )
    assert mine.headers["x-relay-request-id"] == "trace-42"
    made = httpx2.get(relay.base_url + "/models", headers=AUTH)
    assert made.headers["x-relay-request-id"].startswith("req_relay_")
    assert made.headers["x-request-id"] == upstream.log[-1].response_header("x-request-id")
    assert made.headers["x-ratelimit-remaining-requests"]
    health = httpx2.get(relay.url + "/health", headers={"x-relay-request-id": "h-1"})
    assert health.headers["x-relay-request-id"] == "h-1"
    assert UPSTREAM_KEY not in health.text
