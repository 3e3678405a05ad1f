"""Within ChatGPT's 45 s and 100,000 characters: slow answers go to the background, overload
is an honest 429, and big results are cut with a way to read on."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread
from teamrelay.actions.compact import fit, page_text, size
from teamrelay.actions.limits import MAX_PAYLOAD_CHARS

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
BUDGET = 1.0


@pytest.fixture(scope="module")
def quick_relay(fake_upstream: FakeUpstream) -> Iterator[RunningRelay]:
    env = {"RELAY_ACTIONS_ANSWER_BUDGET": str(BUDGET)}
    with relay_in_thread(fake_upstream.base_url, **env) as running:
        yield running


@pytest.fixture
def direct(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY) as sdk:
        yield sdk


def timed_post(url: str, body: object) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    answer = httpx2.post(url, json=body, headers=AUTH, timeout=30)
    return answer, time.monotonic() - started


def test_slow_answer_comes_back_in_progress_then_finished(
    quick_relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.store.background_delay = 3.0
    answer, took = timed_post(quick_relay.url + "/actions/ask", {"input": "tell me slowly"})
    assert took < BUDGET + 0.5
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert first["status"] == "in_progress"
    assert "getAnswer" in first["hint"]
    (created,) = upstream.requests_to("/v1/responses", "POST")
    assert b'"background":true' in (created.body or b"")
    deadline = time.monotonic() + 10
    while True:
        started = time.monotonic()
        later = httpx2.get(
            quick_relay.url + f"/actions/answers/{first['response_id']}", headers=AUTH, timeout=30
        )
        assert time.monotonic() - started < BUDGET + 0.5
        assert later.status_code == 200
        if later.json()["status"] != "in_progress":
            break
        assert time.monotonic() < deadline
    finished = later.json()
    assert finished["status"] == "completed"
    assert finished["output_text"] == "Hello from the fake upstream. You said: tell me slowly"
    assert finished["usage"]["output_tokens"] > 0


def test_quick_answer_comes_back_finished(relay: RunningRelay, upstream: FakeUpstream) -> None:
    answer, _ = timed_post(relay.url + "/actions/ask", {"input": "hi", "model": "gpt-4.1"})
    assert answer.json()["status"] == "completed"
    assert answer.json()["model"] == "gpt-4.1"


@pytest.mark.parametrize(("sent", "expected"), [(7, "7"), (None, "5")])
def test_upstream_overload_is_an_honest_429(
    relay: RunningRelay, upstream: FakeUpstream, sent: int | None, expected: str
) -> None:
    upstream.faults("/v1/responses", status=429, retry_after=sent, times=1)
    answer, _ = timed_post(relay.url + "/actions/ask", {"input": "hi"})
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == expected
    assert answer.json()["error"]["type"] is not None


def test_a_slow_upstream_read_ends_within_the_budget(
    quick_relay: RunningRelay, upstream: FakeUpstream
) -> None:
    upstream.faults("/v1/models", delay=5, times=1)
    started = time.monotonic()
    answer = httpx2.get(quick_relay.url + "/actions/models", headers=AUTH, timeout=30)
    assert time.monotonic() - started < BUDGET + 0.5
    assert answer.status_code == 504


def test_a_megabyte_of_text_comes_back_in_pages(
    relay: RunningRelay, upstream: FakeUpstream, direct: openai.OpenAI
) -> None:
    text = "".join(f"line {n}: naïve café → ok\n" for n in range(40_000))
    assert len(text.encode()) > 1_000_000
    made = direct.files.create(file=("big.txt", text.encode()), purpose="assistants")
    pages: list[str] = []
    offset = 0
    while True:
        answer = httpx2.get(
            relay.url + f"/actions/files/{made.id}/text",
            params={"offset": offset},
            headers=AUTH,
        )
        assert answer.status_code == 200
        assert len(answer.text) < MAX_PAYLOAD_CHARS
        page = answer.json()
        pages.append(page["text"])
        if not page["truncated"]:
            break
        assert "readFileText" in page["hint"]
        offset = page["next_offset"]
    assert len(pages) > 10
    assert "".join(pages) == text


def test_a_megabyte_of_search_results_is_cut(
    relay: RunningRelay, upstream: FakeUpstream, direct: openai.OpenAI
) -> None:
    text = "\n\n".join(f"holiday rule {n} " + "x" * 200 for n in range(5000))
    made = direct.files.create(file=("rules.txt", text.encode()), purpose="assistants")
    store = direct.vector_stores.create(name="rules", file_ids=[made.id])
    answer = httpx2.post(
        relay.url + "/actions/vector_stores/search",
        json={"vector_store_id": store.id, "query": "holiday"},
        headers=AUTH,
    )
    assert answer.status_code == 200
    raw = upstream.wait_done(upstream.requests_to(f"/v1/vector_stores/{store.id}/search")[-1])
    assert raw.done
    assert len(answer.text) < MAX_PAYLOAD_CHARS
    result = answer.json()
    assert result["truncated"] is True
    assert result["results"][0]["file_id"] == made.id


def test_fit_cuts_any_json_and_says_so() -> None:
    huge = {"data": [{"id": f"obj_{n}", "text": "y" * 1000} for n in range(2000)], "x": "z"}
    fitted, cut = fit(huge, 50_000)
    assert cut
    assert size(fitted) <= 50_000
    assert fitted["x"] == "z"
    assert fit({"a": 1}, 100) == ({"a": 1}, False)


def test_page_text_reports_where_to_continue() -> None:
    assert page_text("abcdef", 0, 4) == ("abcd", 4)
    assert page_text("abcdef", 4, 4) == ("ef", None)
