"""RFC 8707: a token is good where it was issued for. An MCP client's token (resource `/mcp`)
works on `/mcp` and nowhere else, through refreshes too; a token for the whole relay (what GPT
Actions get, sending no resource) works on `/v1`, the Actions and `/mcp`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from oauthclient import OAuthClient, OAuthRelay, oauth_relay, register
from servers import RELAY_KEY

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


@pytest.fixture(scope="module")
def gate(fake_upstream: FakeUpstream) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url) as running:
        yield running


@pytest.fixture
def agent(gate: OAuthRelay) -> Iterator[OAuthClient]:
    client = register(gate.url, CALLBACK)
    yield client
    client.close()


def on_v1(gate: OAuthRelay, token: str) -> int:
    with openai.OpenAI(base_url=gate.url + "/v1", api_key=token, max_retries=0) as client:
        try:
            client.models.list()
        except openai.APIStatusError as error:
            return error.status_code
    return 200


def on_actions(gate: OAuthRelay, token: str) -> int:
    schema: dict[str, Any] = httpx2.get(gate.url + "/openapi.actions.json").json()
    path = next(
        path
        for path, item in schema["paths"].items()
        if item.get("get", {}).get("operationId") == "listModels"
    )
    answer = httpx2.get(gate.url + path, headers={"authorization": f"Bearer {token}"})
    return answer.status_code


def on_mcp(gate: OAuthRelay, token: str) -> int:
    answer = httpx2.post(
        gate.url + "/mcp",
        json=INITIALIZE,
        headers={
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
        },
    )
    return answer.status_code


@pytest.mark.usefixtures("upstream")
def test_a_token_for_mcp_is_refused_on_v1_and_the_actions(
    gate: OAuthRelay, agent: OAuthClient
) -> None:
    tokens = agent.tokens(RELAY_KEY, resource=gate.url + "/mcp")
    assert tokens["resource"] == gate.url + "/mcp"

    assert on_mcp(gate, tokens["access_token"]) == 200
    assert on_v1(gate, tokens["access_token"]) == 401
    assert on_actions(gate, tokens["access_token"]) == 401

    refreshed = agent.refresh(tokens["refresh_token"]).json()
    assert refreshed["resource"] == gate.url + "/mcp"
    assert on_mcp(gate, refreshed["access_token"]) == 200
    assert on_v1(gate, refreshed["access_token"]) == 401


@pytest.mark.usefixtures("upstream")
def test_a_token_for_the_relay_works_everywhere(gate: OAuthRelay, agent: OAuthClient) -> None:
    tokens = agent.tokens(RELAY_KEY)
    assert tokens["resource"] == gate.url

    assert on_v1(gate, tokens["access_token"]) == 200
    assert on_actions(gate, tokens["access_token"]) == 200
    assert on_mcp(gate, tokens["access_token"]) == 200


def test_a_code_for_mcp_cannot_be_exchanged_for_the_relay(agent: OAuthClient) -> None:
    signed = agent.sign_in(RELAY_KEY, resource=agent.base + "/mcp")
    answer = agent.exchange(signed, resource=agent.base)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
