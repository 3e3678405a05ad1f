"""`GET /admin/api/usage`: admin-scope keys only, the same aggregates as the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx2
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from servers import ADMIN, RunningRelay
from teamrelay.admin.api import admin_router
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.prices import load_prices
from teamrelay.ledger.recorder import Recorder
from teamrelay.ledger.usage import By, usage_report
from test_usage import ENTRIES  # one data set for the CLI and the API

ADMIN_BOOTSTRAP = "tr-test-admin-000000000000000000000000000000"


@dataclass
class Admin:
    client: httpx2.AsyncClient
    api_key: str
    engine: AsyncEngine


@pytest.fixture
async def admin(engine: AsyncEngine) -> AsyncIterator[Admin]:
    keys = KeyStore(engine, bootstrap=[ADMIN_BOOTSTRAP])
    await keys.start()
    _, api_key = await keys.create("alice", scopes={"api", "actions"})
    recorder = Recorder(engine, load_prices())
    for entry in ENTRIES:
        recorder.record(entry)
    await recorder.stop()
    app = FastAPI()
    app.include_router(admin_router(keys, engine))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        yield Admin(client, api_key, engine)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("by", list(By))
async def test_admin_key_gets_the_same_aggregates_as_the_report(admin: Admin, by: By) -> None:
    response = await admin.client.get(
        "/admin/api/usage", params={"since": "7d", "by": by.value}, headers=bearer(ADMIN_BOOTSTRAP)
    )
    assert response.status_code == 200
    body = response.json()
    report = (await usage_report(admin.engine, by=by, since=None)).to_dict()
    assert body["by"] == by.value
    assert body["total"]["requests"] < report["total"]["requests"]  # 7 of 10 days
    assert set(body["total"]) == {
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
    }
    assert sum(group["requests"] for group in body["groups"]) == body["total"]["requests"]


async def test_admin_usage_defaults_to_seven_days_by_key(admin: Admin) -> None:
    response = await admin.client.get("/admin/api/usage", headers={"X-Relay-Key": ADMIN_BOOTSTRAP})
    assert response.status_code == 200
    assert response.json()["by"] == "key"
    assert {"key_id", "key_name"} <= set(response.json()["groups"][0])


@pytest.mark.parametrize("headers", [{}, bearer("tr-wrong"), {"Authorization": "Basic eA=="}])
async def test_missing_or_wrong_keys_get_401_in_openai_shape(
    admin: Admin, headers: dict[str, str]
) -> None:
    response = await admin.client.get("/admin/api/usage", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_key_without_admin_scope_gets_403(admin: Admin) -> None:
    response = await admin.client.get("/admin/api/usage", headers=bearer(admin.api_key))
    assert response.status_code == 403
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("by", "colour"),
        ("since", "soon"),
        ("since", "99999999d"),
        ("since", "999999999999w"),
        ("since", "9" * 5000 + "m"),
        ("since", "0001-01-01T00:00:00+05:00"),
        ("since", "2026-13-01"),
        ("since", "\x00"),
    ],
)
async def test_bad_parameters_get_400_naming_the_parameter(
    admin: Admin, param: str, value: str
) -> None:
    response = await admin.client.get(
        "/admin/api/usage", params={param: value}, headers=bearer(ADMIN_BOOTSTRAP)
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


_OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
_MOMENTS = st.datetimes(timezones=st.none() | st.builds(timezone, _OFFSETS)).map(datetime.isoformat)
_DURATIONS = st.from_regex(r"\A[0-9]{1,14}[mhdw]\Z")
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_QUERY = st.lists(
    st.tuples(st.sampled_from(["since", "by", "limit"]), _DURATIONS | _MOMENTS | _TEXT),
    max_size=4,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=_QUERY)
def test_no_query_makes_the_usage_api_fail(
    relay: RunningRelay, http: httpx2.Client, query: list[tuple[str, str]]
) -> None:
    """Any `since` (durations of any size, dates of any year and offset, any text) and `by`:
    a report or a 400 in OpenAI's shape naming the parameter, never a 500."""
    answer = http.get(relay.url + "/admin/api/usage", params=query, headers=ADMIN)
    event(f"status {answer.status_code}")
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] in ("since", "by")
    else:
        assert "total" in answer.json()
