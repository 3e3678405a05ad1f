"""The story: the operator makes an OAuth client for the team's custom GPT with the CLI, the
GPT editor is filled from the Actions schema and that client, and each member signs in as
themselves. Their calls through the Actions operations land in the ledger under their own
name, and their own key's rate limit and isolation apply."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import openai
import pytest
import typer
from openapi_spec_validator import validate
from sqlalchemy import text
from typer.testing import CliRunner

from fakeupstream import FakeUpstream
from oauthclient import CHATGPT_CALLBACK, OAuthClient, OAuthRelay, oauth_relay
from servers import RELAY_KEY
from teamrelay.gateway import Relay
from teamrelay.oauth.cli import oauth_app

OLD_CALLBACK = CHATGPT_CALLBACK.replace("https://chatgpt.com", "https://chat.openai.com")


def cli(url: str, *args: str) -> tuple[str, str]:
    app = typer.Typer()
    app.add_typer(oauth_app, name="oauth")
    result = CliRunner().invoke(
        app, ["oauth", *args], env={"RELAY_DATABASE_URL": url, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("story") / "relay.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
def team_gpt(database: str) -> tuple[str, str]:
    """`teamrelay oauth clients create`, as the operator runs it: (client id, client secret)."""
    secret, told = cli(
        database,
        "clients",
        "create",
        "--name",
        "Team GPT",
        "--redirect-uri",
        CHATGPT_CALLBACK,
        "--redirect-uri",
        OLD_CALLBACK,
    )
    client_id = told.split("client_id:")[1].split()[0]
    listed, _ = cli(database, "clients", "list")
    assert client_id in listed
    assert secret.strip() not in listed
    return client_id, secret.strip()


@pytest.fixture(scope="module")
def gate(fake_upstream: FakeUpstream, database: str, team_gpt: Any) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url, RELAY_DATABASE_URL=database) as running:
        yield running


def chatgpt(gate: OAuthRelay, team_gpt: tuple[str, str], callback: str) -> OAuthClient:
    """ChatGPT as GPT Actions use OAuth: client id and secret posted, no PKCE."""
    client_id, secret = team_gpt
    return OAuthClient(gate.url, client_id, callback, secret)


async def _ledger(relay: Relay) -> list[dict[str, Any]]:
    async with relay.engine.connect() as connection:
        rows = await connection.execute(text("SELECT key_name, operation, status FROM ledger"))
        return [dict(row._mapping) for row in rows]


def ledger_rows(gate: OAuthRelay, want: int, name: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = [row for row in gate.run(_ledger) if row["key_name"] == name]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_schema_advertises_the_sign_in_for_the_gpt_editor(gate: OAuthRelay) -> None:
    schema = httpx2.get(gate.url + "/openapi.actions.json").json()
    validate(schema)
    flow = schema["components"]["securitySchemes"]["relayOAuth"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == gate.url + "/oauth/authorize"
    assert flow["tokenUrl"] == gate.url + "/oauth/token"
    assert set(flow["scopes"]) == {"api", "actions"}
    assert {"relayOAuth": ["actions"]} in schema["security"]
    assert {"relayKey": []} in schema["security"]


@pytest.mark.usefixtures("upstream")
def test_members_of_a_custom_gpt_each_act_as_themselves(
    gate: OAuthRelay, team_gpt: tuple[str, str]
) -> None:
    _, bob_key = gate.create_key("bob", limits={"rpm": 4})
    for callback in (CHATGPT_CALLBACK, OLD_CALLBACK):
        gpt = chatgpt(gate, team_gpt, callback)
        try:
            query, _ = gpt.authorize_params(pkce=False, scope="api actions", state="gpt-state")
            page = gpt.sign_in_page(query)
            assert "Team GPT" in page.text
            answer = gpt.submit(page, bob_key)
            assert answer.status_code == 302
            location = answer.headers["location"]
            assert location.startswith(callback + "?")
            assert parse_qs(urlsplit(location).query)["state"] == ["gpt-state"]
            code = parse_qs(urlsplit(location).query)["code"][0]
            exchanged = httpx2.post(
                gate.url + "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": callback,
                    "client_id": gpt.client_id,
                    "client_secret": gpt.client_secret or "",
                },
            )
            assert exchanged.status_code == 200, exchanged.text
        finally:
            gpt.close()
    token = exchanged.json()["access_token"]
    as_bob = {"authorization": f"Bearer {token}"}

    asked = httpx2.post(gate.url + "/actions/ask", json={"input": "Hello"}, headers=as_bob)
    assert asked.status_code == 200, asked.text
    listed = httpx2.get(gate.url + "/actions/models", headers=as_bob)
    assert listed.status_code == 200
    rows = ledger_rows(gate, 2, "bob")
    assert {row["operation"] for row in rows} >= {"actions.askModel", "actions.listModels"}

    # Bob's own limits apply to his token on every surface: four requests a minute (two
    # Actions calls above, two here), then 429 — on /v1 and through the Actions alike.
    statuses = [httpx2.get(gate.url + "/v1/models", headers=as_bob).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    again = httpx2.get(gate.url + "/actions/models", headers=as_bob)
    assert again.status_code == 429
    assert again.headers["retry-after"]


@pytest.mark.usefixtures("upstream")
def test_a_members_token_does_not_reach_another_members_files(
    gate: OAuthRelay, team_gpt: tuple[str, str]
) -> None:
    _, dana_key = gate.create_key("dana")
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=RELAY_KEY, max_retries=0) as alice:
        private = alice.files.create(file=("notes.txt", b"alice only"), purpose="user_data")
    gpt = chatgpt(gate, team_gpt, CHATGPT_CALLBACK)
    try:
        token = gpt.tokens(dana_key, pkce=False)["access_token"]
    finally:
        gpt.close()
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=token, max_retries=0) as dana:
        with pytest.raises(openai.NotFoundError):
            dana.files.retrieve(private.id)
        mine = dana.files.create(file=("mine.txt", b"dana's"), purpose="user_data")
        assert dana.files.retrieve(mine.id).id == mine.id


@pytest.mark.usefixtures("upstream")
def test_through_the_actions_a_member_sees_only_their_own_files(
    gate: OAuthRelay, team_gpt: tuple[str, str], fake_upstream: FakeUpstream
) -> None:
    _, erin_key = gate.create_key("erin")
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=RELAY_KEY, max_retries=0) as alice:
        private = alice.files.create(file=("plan.txt", b"alice only"), purpose="user_data")
    gpt = chatgpt(gate, team_gpt, CHATGPT_CALLBACK)
    try:
        token = gpt.tokens(erin_key, pkce=False)["access_token"]
    finally:
        gpt.close()
    as_erin = {"authorization": f"Bearer {token}"}
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=token, max_retries=0) as erin:
        mine = erin.files.create(file=("erin.txt", b"erin's notes"), purpose="user_data")
    fake_upstream.clear_log()
    for path in (f"/actions/files/{private.id}", f"/actions/files/{private.id}/text"):
        refused = httpx2.get(gate.url + path, headers=as_erin)
        assert refused.status_code == 404, refused.text
    deleted = httpx2.post(
        gate.url + "/actions/files/delete", json={"file_id": private.id}, headers=as_erin
    )
    assert deleted.status_code == 404
    assert fake_upstream.log == []
    listed = httpx2.get(gate.url + "/actions/files", headers=as_erin)
    assert listed.status_code == 200
    ids = {f["id"] for f in listed.json()["files"]}
    assert mine.id in ids
    assert private.id not in ids
