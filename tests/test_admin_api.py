"""`GET /admin/api/usage`: admin-scope keys only, the same aggregates as the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

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


@pytest.mark.parametrize(("param", "value"), [("by", "colour"), ("since", "soon")])
async def test_bad_parameters_get_400_naming_the_parameter(
    admin: Admin, param: str, value: str
) -> None:
    response = await admin.client.get(
        "/admin/api/usage", params={param: value}, headers=bearer(ADMIN_BOOTSTRAP)
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
