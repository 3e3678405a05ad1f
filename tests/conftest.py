"""Shared fixtures: a clean environment, the fake OpenAI upstream, and relays on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, UPSTREAM_KEY, RunningRelay, relay_in_thread

pytest_plugins = ("dbfixtures", "linkserver")

_OWN_PREFIXES = ("OPENAI_", "RELAY_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and proxies from the developer's shell must not leak into any test."""
    for name in list(os.environ):
        if name.upper().startswith(_OWN_PREFIXES) and name != "RELAY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
        yield upstream


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake upstream, reset for each test."""
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture(scope="session")
def relay(fake_upstream: FakeUpstream) -> Iterator[RunningRelay]:
    """One relay for the session, in a thread, on the session's fake upstream."""
    with relay_in_thread(fake_upstream.base_url) as running:
        yield running


@pytest.fixture
def client(relay: RunningRelay, upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    """The official SDK as a team member would use it: relay URL, relay key, no retries."""
    with openai.OpenAI(base_url=relay.base_url, api_key=RELAY_KEY, max_retries=0) as sdk:
        yield sdk
