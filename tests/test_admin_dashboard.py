"""`/admin`: sign in with an admin key through a form, a signed session, usage, errors, keys."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from servers import RELAY_KEY, RunningRelay
from teamrelay.admin.dashboard import BAD_KEY, NOT_ADMIN, STALE_FORM, dashboard_router
from teamrelay.admin.session import LOGIN_COOKIE, SESSION_COOKIE
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.prices import load_prices
from teamrelay.ledger.recorder import LedgerEntry, Recorder

ADMIN = "tr-test-admin-000000000000000000000000000000"
SIGNING_KEY = b"test-signing-key-0000000000000000"
NOW = datetime.now(UTC)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
BAR = re.compile(r'data-chart="(\w+)"|data-label="([^"]*)" data-requests="(\d+)"')


def entry(n: int, key: tuple[str | None, str | None], **changes: object) -> LedgerEntry:
    base = LedgerEntry(
        ts=NOW - timedelta(minutes=n + 1),
        relay_request_id=f"req_relay_test_{n:04d}",
        key_id=key[0],
        key_name=key[1],
        method="POST",
        operation="createChatCompletion",
        path="/v1/chat/completions",
        model="gpt-4o",
        status=200,
        duration_ms=12.0,
        ttfb_ms=3.0,
        bytes_in=100,
        bytes_out=200,
        streamed=False,
        aborted=False,
        input_tokens=10,
        output_tokens=5,
        cached_tokens=0,
        reasoning_tokens=0,
        upstream_request_id=None,
        error_type=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Dashboard:
    client: httpx2.AsyncClient
    keys: KeyStore
    engine: AsyncEngine
    api_only: str


async def record(engine: AsyncEngine, entries: list[LedgerEntry]) -> None:
    recorder = Recorder(engine, load_prices())
    for item in entries:
        recorder.record(item)
    await recorder.stop()


@pytest.fixture
async def dashboard(engine: AsyncEngine) -> AsyncIterator[Dashboard]:
    keys = KeyStore(engine, bootstrap=[ADMIN], cache_ttl=0)
    await keys.start()
    _, api_only = await keys.create("alice", scopes={"api"})
    app = FastAPI()
    app.include_router(dashboard_router(keys, engine, SIGNING_KEY))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        yield Dashboard(client, keys, engine, api_only)


async def sign_in(client: httpx2.AsyncClient, key: str) -> httpx2.Response:
    page = await client.get("/admin")
    token = CSRF.search(page.text)
    assert token is not None
    return await client.post("/admin/login", data={"key": key, "csrf": token[1]})


def chart_bars(html: str) -> dict[str, dict[str, int]]:
    """{chart name: {bar label: requests}} from the page's SVG."""
    charts: dict[str, dict[str, int]] = {}
    current = ""
    for match in BAR.finditer(html):
        if match[1]:
            current = match[1]
            charts[current] = {}
        else:
            charts[current][match[2]] = int(match[3])
    return charts


async def test_the_login_page_asks_for_the_key_in_a_posted_form(dashboard: Dashboard) -> None:
    page = await dashboard.client.get("/admin")
    assert page.status_code == 200
    assert '<form method="post" action="/admin/login"' in page.text
    assert 'type="password" name="key"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert LOGIN_COOKIE in page.cookies


async def test_admin_key_signs_in_and_sees_usage_errors_and_keys(dashboard: Dashboard) -> None:
    alice = await dashboard.keys.get("alice")
    await record(
        dashboard.engine,
        [entry(n, (alice.id, "alice")) for n in range(3)]
        + [entry(3 + n, ("k_bob", "bob"), model="gpt-4.1-nano") for n in range(2)]
        + [entry(5, ("k_bob", "bob"), status=500, error_type="server_error", model="gpt-4o")],
    )
    signed_in = await sign_in(dashboard.client, ADMIN)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin"

    page = await dashboard.client.get("/admin")
    assert page.status_code == 200
    charts = chart_bars(page.text)
    assert charts["key"] == {"alice": 3, "bob": 3}
    assert charts["model"] == {"gpt-4o": 4, "gpt-4.1-nano": 2}
    assert sum(charts["day"].values()) == 6
    assert 'id="total-requests">6<' in page.text
    assert 'id="total-errors">1<' in page.text
    assert "req_relay_test_0005" in page.text
    assert "server_error" in page.text
    assert alice.prefix in page.text
    assert dashboard.api_only not in page.text
    assert ADMIN not in page.text


async def test_the_session_cookie_holds_a_signed_key_id_never_the_key(
    dashboard: Dashboard,
) -> None:
    response = await sign_in(dashboard.client, ADMIN)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    assert ADMIN not in cookie
    value = response.cookies[SESSION_COOKIE]
    dashboard.client.cookies.set(SESSION_COOKIE, "x" + value, domain="relay.test", path="/admin")
    assert "Sign in" in (await dashboard.client.get("/admin")).text


async def test_the_session_cookie_is_secure_over_https(engine: AsyncEngine) -> None:
    keys = KeyStore(engine, bootstrap=[ADMIN], cache_ttl=0)
    await keys.start()
    app = FastAPI()
    app.include_router(dashboard_router(keys, engine, SIGNING_KEY))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://relay.test") as client:
        response = await sign_in(client, ADMIN)
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]
        assert (await client.get("/admin")).status_code == 200


async def test_a_key_without_admin_scope_is_refused_with_a_clear_message(
    dashboard: Dashboard,
) -> None:
    response = await sign_in(dashboard.client, dashboard.api_only)
    assert response.status_code == 403
    assert NOT_ADMIN.replace("'", "&#39;") in response.text
    assert SESSION_COOKIE not in response.cookies
    assert dashboard.api_only not in response.text


@pytest.mark.parametrize("key", ["tr-wrong-key", ""])
async def test_an_unknown_key_is_refused(dashboard: Dashboard, key: str) -> None:
    response = await sign_in(dashboard.client, key)
    assert response.status_code == 401
    assert BAD_KEY in response.text
    assert SESSION_COOKIE not in response.cookies


async def test_login_without_a_matching_csrf_token_is_refused(dashboard: Dashboard) -> None:
    await dashboard.client.get("/admin")
    forged = await dashboard.client.post("/admin/login", data={"key": ADMIN, "csrf": "forged"})
    assert forged.status_code == 403
    assert STALE_FORM in forged.text
    dashboard.client.cookies.clear()
    token = CSRF.search((await dashboard.client.get("/admin")).text)
    assert token is not None
    dashboard.client.cookies.clear()  # a form from another browser: its nonce cookie is gone
    response = await dashboard.client.post("/admin/login", data={"key": ADMIN, "csrf": token[1]})
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


async def test_a_form_with_more_fields_than_it_has_reads_as_stale(dashboard: Dashboard) -> None:
    token = CSRF.search((await dashboard.client.get("/admin")).text)
    assert token is not None
    padding = {f"extra{n}": "x" for n in range(9)}
    login = await dashboard.client.post(
        "/admin/login", data={"key": ADMIN, "csrf": token[1], **padding}
    )
    assert login.status_code == 403
    assert STALE_FORM in login.text
    assert SESSION_COOKIE not in login.cookies
    await sign_in(dashboard.client, ADMIN)
    token = CSRF.search((await dashboard.client.get("/admin")).text)
    assert token is not None
    logout = await dashboard.client.post("/admin/logout", data={"csrf": token[1], **padding})
    assert logout.status_code == 403
    assert "Usage by key" in (await dashboard.client.get("/admin")).text


async def test_a_key_in_the_url_signs_nobody_in(dashboard: Dashboard) -> None:
    page = await dashboard.client.get("/admin", params={"key": ADMIN})
    assert "Sign in" in page.text
    assert "Usage by key" not in page.text
    get_login = await dashboard.client.get("/admin/login", params={"key": ADMIN})
    assert get_login.status_code == 405


@pytest.mark.parametrize("change", ["revoke", "rotate", "demote"])
async def test_a_revoked_rotated_or_demoted_key_loses_its_session(
    dashboard: Dashboard, change: str
) -> None:
    assert (await sign_in(dashboard.client, ADMIN)).status_code == 303
    assert "Usage by key" in (await dashboard.client.get("/admin")).text
    admin = next(k for k in await dashboard.keys.list() if k.name.startswith("bootstrap-"))
    if change == "revoke":
        await dashboard.keys.revoke(admin.id)
    elif change == "rotate":
        await dashboard.keys.rotate(admin.id)
    else:
        await dashboard.keys.update(admin.id, scopes={"api"})
    page = await dashboard.client.get("/admin")
    assert page.status_code == 401
    assert "Your session has ended" in page.text
    assert "Usage by key" not in page.text


async def test_logout_needs_its_token_and_ends_the_session(dashboard: Dashboard) -> None:
    await sign_in(dashboard.client, ADMIN)
    page = await dashboard.client.get("/admin")
    token = CSRF.search(page.text)
    assert token is not None
    refused = await dashboard.client.post("/admin/logout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert "Usage by key" in (await dashboard.client.get("/admin")).text
    out = await dashboard.client.post("/admin/logout", data={"csrf": token[1]})
    assert out.status_code == 303
    assert "Sign in" in (await dashboard.client.get("/admin")).text


async def test_the_period_selector_narrows_the_usage(dashboard: Dashboard) -> None:
    await record(
        dashboard.engine,
        [
            entry(1, ("k_a", "recent")),
            entry(2, ("k_b", "last-week"), ts=NOW - timedelta(days=3)),
            entry(3, ("k_c", "last-month"), ts=NOW - timedelta(days=20)),
            entry(4, ("k_d", "ancient"), ts=NOW - timedelta(days=45)),
        ],
    )
    await sign_in(dashboard.client, ADMIN)
    seen = {}
    for period in ("24h", "7d", "30d"):
        page = await dashboard.client.get("/admin", params={"period": period})
        assert f'class="selected" aria-current="page">{period}<' in page.text
        seen[period] = set(chart_bars(page.text)["key"])
    assert seen == {
        "24h": {"recent"},
        "7d": {"recent", "last-week"},
        "30d": {"recent", "last-week", "last-month"},
    }
    assert len(chart_bars(page.text)["day"]) == 31
    fallback = await dashboard.client.get("/admin", params={"period": "forever"})
    assert 'aria-current="page">7d<' in fallback.text


async def test_names_from_keys_and_the_ledger_are_escaped(dashboard: Dashboard) -> None:
    await dashboard.keys.create("<script>alert(1)</script>", scopes={"api"})
    await record(
        dashboard.engine,
        [entry(1, ("k_x", '"><img src=x>'), model="<b>model</b>", status=400)],
    )
    await sign_in(dashboard.client, ADMIN)
    page = (await dashboard.client.get("/admin")).text
    assert "<script>alert" not in page
    assert "<img src=x>" not in page
    assert "<b>model</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;model&lt;/b&gt;" in page


async def test_the_stylesheet_ships_with_the_package(dashboard: Dashboard) -> None:
    css = await dashboard.client.get("/admin/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert ".chart" in css.text
    assert (await dashboard.client.get("/admin/static/../session.py")).status_code == 404
    assert (await dashboard.client.get("/admin/static/missing.js")).status_code == 404


async def test_the_relay_serves_the_dashboard(relay: RunningRelay) -> None:
    async with httpx2.AsyncClient(base_url=relay.url) as client:
        page = await client.get("/admin")
        assert page.status_code == 200
        token = CSRF.search(page.text)
        assert token is not None
        signed_in = await client.post("/admin/login", data={"key": RELAY_KEY, "csrf": token[1]})
        assert signed_in.status_code == 303
        assert "Usage by key" in (await client.get("/admin")).text
