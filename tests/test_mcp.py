"""`/mcp` with the official MCP Python client: OAuth (found through the 401's metadata hint,
registered dynamically, signed in with a relay key) or a relay key as bearer; the Actions
operations as tools, and `search` and `fetch` over the configured vector stores."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
import pytest
from mcp import ClientSession, types
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from fakeupstream import FakeUpstream
from oauthclient import OAuthRelay, hidden_fields, oauth_relay, register
from servers import RELAY_KEY, UPSTREAM_KEY

CALLBACK = "http://localhost:8977/callback"
HANDBOOK = (
    b"Expense policy\n\nTravel is booked through the travel desk and approved by a lead.\n\n"
    b"Laptops are replaced every three years."
)


@pytest.fixture(scope="module")
def store_id(fake_upstream: FakeUpstream) -> str:
    """A vector store at the upstream, as the operator would have made one for the team."""
    fake_upstream.reset()
    with openai.OpenAI(
        base_url=fake_upstream.base_url, api_key=UPSTREAM_KEY, max_retries=0
    ) as direct:
        handbook = direct.files.create(file=("handbook.md", HANDBOOK), purpose="assistants")
        store = direct.vector_stores.create(name="Handbook", file_ids=[handbook.id])
    return store.id


@pytest.fixture(scope="module")
def gate(fake_upstream: FakeUpstream, store_id: str) -> Iterator[OAuthRelay]:
    with oauth_relay(fake_upstream.base_url, RELAY_MCP_VECTOR_STORES=store_id) as running:
        yield running


@asynccontextmanager
async def mcp_session(
    url: str, headers: dict[str, str] | None = None, auth: httpx2.Auth | None = None
) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers, auth=auth, timeout=20) as http,
        streamable_http_client(url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def payload(result: types.CallToolResult) -> Any:
    assert not result.is_error, result.content
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return json.loads(first.text)


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class MemberAtBrowser:
    """Opens the authorization URL the MCP client hands over and signs in with a relay key."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.result: AuthorizationCodeResult | None = None

    async def open(self, url: str) -> None:
        async with httpx2.AsyncClient() as browser:
            page = await browser.get(url)
            assert page.status_code == 200, page.text
            form = {**hidden_fields(page.text), "secret": self.secret, "decision": "allow"}
            answer = await browser.post(url.split("?")[0], data=form)
        assert answer.status_code == 302, answer.text
        query = httpx2.URL(answer.headers["location"]).params
        self.result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


async def test_without_credentials_mcp_answers_401_with_the_metadata_hint(gate: OAuthRelay) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.post(gate.url + "/mcp", json={"jsonrpc": "2.0", "id": 1})
        wrong = await http.post(
            gate.url + "/mcp", json={}, headers={"authorization": "Bearer tra_nonsense"}
        )
    hint = f'resource_metadata="{gate.url}/.well-known/oauth-protected-resource/mcp"'
    assert answer.status_code == 401
    assert hint in answer.headers["www-authenticate"]
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert hint in wrong.headers["www-authenticate"]


async def test_official_client_discovers_registers_signs_in_and_calls_tools(
    gate: OAuthRelay,
) -> None:
    member = MemberAtBrowser(RELAY_KEY)
    storage = Memory()
    auth = OAuthClientProvider(
        server_url=gate.url + "/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="Coding agent",
            redirect_uris=[AnyUrl(CALLBACK)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=member.open,
        callback_handler=member.callback,
    )
    async with mcp_session(gate.url, auth=auth) as session:
        listed = await session.list_tools()
        found = payload(await session.call_tool("search", {"query": "laptops replaced"}))
    assert storage.tokens is not None
    assert storage.tokens.access_token.startswith("tra_")
    assert {"search", "fetch", "askModel"} <= {tool.name for tool in listed.tools}
    assert found["results"][0]["title"] == "handbook.md"


async def test_oauth_token_lists_tools_and_calls_search_fetch_and_ask(
    gate: OAuthRelay, store_id: str
) -> None:
    agent = register(gate.url, CALLBACK)
    try:
        token = agent.tokens(RELAY_KEY, resource=gate.url + "/mcp")["access_token"]
    finally:
        agent.close()
    async with mcp_session(gate.url, {"authorization": f"Bearer {token}"}) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        found = payload(await session.call_tool("search", {"query": "travel desk"}))
        hit = found["results"][0]
        document = payload(await session.call_tool("fetch", {"id": hit["id"]}))
        answer = payload(
            await session.call_tool("askModel", {"input": "Say hello", "model": "gpt-5-mini"})
        )
    assert set(hit) >= {"id", "title", "url"}
    assert hit["id"] == f"{store_id}:{hit['id'].split(':', 1)[1]}"
    assert document["id"] == hit["id"]
    assert "travel desk" in document["text"]
    assert set(document) == {"id", "title", "text", "url", "metadata"}
    assert answer["status"] == "completed"
    assert answer["output_text"]
    assert tools["search"].annotations is not None
    assert tools["search"].annotations.read_only_hint is True
    assert tools["listFiles"].annotations.read_only_hint is True  # type: ignore[union-attr]
    delete = tools["deleteFile"].annotations
    assert delete is not None
    assert delete.destructive_hint is True
    assert delete.read_only_hint is False
    assert "uploadChatFiles" not in tools


async def test_relay_key_as_bearer_works_for_coding_agents(gate: OAuthRelay) -> None:
    async with mcp_session(gate.url, {"authorization": f"Bearer {RELAY_KEY}"}) as session:
        models = payload(await session.call_tool("listModels", {}))
        missing = await session.call_tool("getFile", {"file_id": "file-doesnotexist"})
    assert models["models"]
    assert missing.is_error


async def test_token_for_another_resource_is_refused_at_mcp(gate: OAuthRelay) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            gate.url + "/mcp", json={}, headers={"x-relay-key": "tr-not-a-key-at-all"}
        )
    assert answer.status_code == 401


async def test_fetch_refuses_ids_outside_the_configured_stores(gate: OAuthRelay) -> None:
    async with mcp_session(gate.url, {"authorization": f"Bearer {RELAY_KEY}"}) as session:
        result = await session.call_tool("fetch", {"id": "vs_other:file-abc"})
    assert result.is_error
