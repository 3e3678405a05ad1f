"""Pytest fixtures for the fake upstream; import them into a conftest to use them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """One fake for the whole session: starting it costs a thread and a socket."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake, emptied of objects, log and faults for this test."""
    fake_upstream_server.reset()
    return fake_upstream_server
