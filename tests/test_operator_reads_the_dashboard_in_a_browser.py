"""An operator opens `/admin` in headless Chromium after real traffic through the relay.

Debian's `chromium` and `chromium-driver` are installed by the session fixture when missing
(as root); elsewhere the test is skipped with the reason, unless RELAY_REQUIRE_SERVICES=1.
Selenium drives the browser through /usr/bin/chromedriver. A screenshot of the dashboard is
left in `test-output/` at the repository root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, relay_in_thread
from teamrelay.admin.dashboard import NOT_ADMIN
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine, upgrade

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
ALICE_CHATS = 4
BOB_CHATS = 2


def _unavailable(reason: str) -> None:
    if os.environ.get("RELAY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RELAY_REQUIRE_SERVICES=1: required here)", pytrace=False)
    pytest.skip(reason)


def _apt(*arguments: str) -> None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", *arguments], env=environment, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        _unavailable(f"apt-get {arguments[0]} failed: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium and its driver, installed here when missing and allowed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _unavailable("chromium is not installed and cannot be (needs root and apt-get)")
        _apt("update", "-qq")
        _apt("install", "-y", "-qq", "chromium", "chromium-driver")
        if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
            _unavailable("apt-get installed chromium but /usr/bin/chromium(driver) is missing")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(chromium)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


async def _create_api_key(db_url: str, name: str) -> str:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        _, secret = await KeyStore(engine).create(name, scopes={"api"})
        return secret
    finally:
        await engine.dispose()


def _chat(base_url: str, key: str, count: int) -> None:
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0) as sdk:
        for n in range(count):
            sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {n}"}]
            )


def _wait_for_ledger(url: str, requests: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = httpx2.get(
            url + "/admin/api/usage", params={"since": "1d"}, headers={"X-Relay-Key": RELAY_KEY}
        )
        if usage.json()["total"]["requests"] >= requests:
            return
        time.sleep(0.1)
    raise AssertionError(f"the ledger did not reach {requests} rows")


def _sign_in(browser: WebDriver, url: str, key: str) -> None:
    browser.get(url + "/admin")
    field = browser.find_element(By.ID, "key")
    field.send_keys(key)
    field.submit()


def _bars(browser: WebDriver, chart: str) -> dict[str, int]:
    bars = browser.find_elements(By.CSS_SELECTOR, f"#chart-{chart} g.bar")
    return {
        str(bar.get_attribute("data-label")): int(bar.get_attribute("data-requests") or -1)
        for bar in bars
    }


def test_operator_reads_the_dashboard_in_a_browser(
    upstream: FakeUpstream, browser: WebDriver, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/relay.db"
    bob = asyncio.run(_create_api_key(db_url, "bob"))
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=db_url) as relay:
        _chat(relay.base_url, RELAY_KEY, ALICE_CHATS)
        _chat(relay.base_url, bob, BOB_CHATS)
        upstream.faults("/v1/chat/completions", status=500, times=1)
        with pytest.raises(openai.InternalServerError):
            _chat(relay.base_url, bob, 1)
        _wait_for_ledger(relay.url, ALICE_CHATS + BOB_CHATS + 1)

        _sign_in(browser, relay.url, RELAY_KEY)
        wait = WebDriverWait(browser, 10)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "chart-key")))
        assert RELAY_KEY not in browser.current_url
        by_key = _bars(browser, "key")
        admin_name = next(name for name in by_key if name.startswith("bootstrap-"))
        assert by_key == {admin_name: ALICE_CHATS, "bob": BOB_CHATS + 1}
        assert _bars(browser, "model") == {"gpt-4o-mini": ALICE_CHATS + BOB_CHATS + 1}
        assert sum(_bars(browser, "day").values()) == ALICE_CHATS + BOB_CHATS + 1
        assert browser.find_element(By.ID, "total-requests").text == "7"
        errors = browser.find_element(By.ID, "errors").text
        assert "bob" in errors
        assert "500" in errors
        keys = browser.find_element(By.ID, "keys").text
        assert "bob" in keys
        assert bob not in browser.page_source
        assert RELAY_KEY not in browser.page_source
        OUTPUT.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(OUTPUT / "admin-dashboard.png"))

        browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "login")))
        _sign_in(browser, relay.url, bob)
        message = wait.until(expected_conditions.presence_of_element_located((By.ID, "message")))
        assert message.text == NOT_ADMIN
        assert not browser.find_elements(By.ID, "chart-key")
        assert browser.save_screenshot(str(OUTPUT / "admin-dashboard-refused.png"))
