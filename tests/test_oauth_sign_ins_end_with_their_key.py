"""The story: a member's key leaks, the operator rotates (or revokes) it with the CLI, and every
OAuth sign-in made with it ends: its access tokens are refused on `/v1` and `/mcp`, its refresh
tokens and its codes not yet exchanged buy nothing. Signing in again with the new secret works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import typer
from typer.testing import CliRunner

from fakeupstream import FakeUpstream
from oauthclient import OAuthClient, OAuthRelay, oauth_relay, register
from teamrelay.keys.cli import keys_app

CALLBACK = "http://127.0.0.1:8976/callback"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def keys_cli(database: str, *args: str) -> str:
    app = typer.Typer()
    app.add_typer(keys_app, name="keys")
    result = CliRunner().invoke(app, ["keys", *args], env={"RELAY_DATABASE_URL": database})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("rotation") / "relay.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
def gate(fake_upstream: FakeUpstream, database: str) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url, RELAY_DATABASE_URL=database) as running:
        yield running


@pytest.fixture
def agent(gate: OAuthRelay) -> Iterator[OAuthClient]:
    client = register(gate.url, CALLBACK)
    yield client
    client.close()


def v1_works(gate: OAuthRelay, token: str) -> bool:
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=token, max_retries=0) as client:
        try:
            client.models.list()
        except openai.AuthenticationError:
            return False
    return True


def mcp_status(gate: OAuthRelay, token: str) -> int:
    answer = httpx2.post(
        gate.url + "/mcp",
        json=INITIALIZE,
        headers={
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
        },
    )
    return answer.status_code


def eventually_refused(gate: OAuthRelay, whole: str, mcp: str) -> None:
    deadline = time.monotonic() + 5  # the lookup caches' bound, as for a revoked key
    while v1_works(gate, whole) or mcp_status(gate, mcp) != 401:
        assert time.monotonic() < deadline, "a token still works"
        time.sleep(0.1)


def signed_in(gate: OAuthRelay, agent: OAuthClient, secret: str) -> dict[str, Any]:
    """One sign-in for the whole relay, one for /mcp, and a code not yet exchanged."""
    whole = agent.tokens(secret)
    mcp = agent.tokens(secret, resource=gate.url + "/mcp")
    pending = agent.sign_in(secret)
    assert v1_works(gate, whole["access_token"])
    assert mcp_status(gate, mcp["access_token"]) == 200
    return {"whole": whole, "mcp": mcp, "pending": pending}


def assert_ended(gate: OAuthRelay, agent: OAuthClient, grants: dict[str, Any]) -> None:
    eventually_refused(gate, grants["whole"]["access_token"], grants["mcp"]["access_token"])
    for tokens in (grants["whole"], grants["mcp"]):
        refreshed = agent.refresh(tokens["refresh_token"])
        assert refreshed.status_code == 400, refreshed.text
        assert refreshed.json()["error"] == "invalid_grant"
    exchanged = agent.exchange(grants["pending"])
    assert exchanged.status_code == 400, exchanged.text
    assert exchanged.json()["error"] == "invalid_grant"


@pytest.mark.usefixtures("upstream")
def test_rotating_a_key_ends_its_sign_ins_and_the_new_secret_signs_in(
    gate: OAuthRelay, agent: OAuthClient, database: str
) -> None:
    _, old = gate.create_key("grace")
    grants = signed_in(gate, agent, old)

    new = keys_cli(database, "rotate", "grace")

    assert new.startswith("tr-")
    assert new != old
    assert_ended(gate, agent, grants)
    again = agent.tokens(new)
    assert v1_works(gate, again["access_token"])
    assert agent.refresh(again["refresh_token"]).status_code == 200


@pytest.mark.usefixtures("upstream")
def test_revoking_a_key_ends_its_sign_ins_on_v1_and_mcp(
    gate: OAuthRelay, agent: OAuthClient, database: str
) -> None:
    _, secret = gate.create_key("heidi")
    grants = signed_in(gate, agent, secret)

    keys_cli(database, "revoke", "heidi")

    assert_ended(gate, agent, grants)


@pytest.mark.usefixtures("upstream")
def test_a_rotation_in_the_relays_own_process_ends_its_tokens_at_once(
    gate: OAuthRelay, agent: OAuthClient
) -> None:
    """The admin API rotates in the relay's process: its token cache forgets them then."""
    _, secret = gate.create_key("judy")
    tokens = agent.tokens(secret)
    assert v1_works(gate, tokens["access_token"])  # now in the lookup cache

    gate.run(lambda relay: relay.keys.rotate("judy"))

    assert not v1_works(gate, tokens["access_token"])
