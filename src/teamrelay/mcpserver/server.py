"""`/mcp`: a Streamable HTTP MCP server (the official `mcp` SDK's low-level server and session
manager) mounted in the relay's FastAPI app.

Tools: the GPT Actions operations (actions.py) and, when RELAY_MCP_VECTOR_STORES lists any,
`search` and `fetch` (knowledge.py). The session manager's task group lives inside the relay's
lifespan: `mount_mcp` appends its start to `Relay.startup` and its stop to `Relay.shutdown`
(the lifespan runs both in one task, as anyio requires).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from teamrelay import __version__
from teamrelay.actions.calls import OpenAICalls
from teamrelay.keys.store import KeyRecord
from teamrelay.mcpserver.actions import ActionCaller, ActionTool, action_tools
from teamrelay.mcpserver.gate import STATE_KEY, BearerGate
from teamrelay.mcpserver.knowledge import FETCH_TOOL, SEARCH_TOOL, Knowledge

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "Tools of the team's OpenAI relay: ask models, search and manage vector stores and files, "
    "generate images, embed text, run batches. Everything runs as the signed-in member, "
    "within their budget. Use search and fetch for the team's shared documents."
)


class RelayMCP:
    """The tools, and the HTTP endpoint that serves them."""

    def __init__(self, app: FastAPI, relay: Relay) -> None:
        self.app = app
        self.caller = ActionCaller(app)
        settings = relay.settings
        # The knowledge stores are the team's, shared on purpose: no caller, so no isolation.
        calls = OpenAICalls(relay)
        self.knowledge = Knowledge(
            calls, settings.mcp_vector_stores, settings.actions_answer_budget, relay.settle
        )
        self._actions: dict[str, ActionTool] | None = None
        self.server: Server[Any] = Server(
            "teamrelay",
            version=__version__,
            title="teamrelay",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        self.sessions = StreamableHTTPSessionManager(self.server)
        self.endpoint = BearerGate(self.sessions.handle_request, settings, relay.keys, relay.tokens)
        self._stack = contextlib.AsyncExitStack()

    def actions(self) -> dict[str, ActionTool]:
        if self._actions is None:
            schema = getattr(self.app.state, "actions_schema", None)
            self._actions = action_tools(schema.document(self.app)) if schema else {}
        return self._actions

    def tools(self) -> list[types.Tool]:
        listed = [tool.tool for tool in self.actions().values()]
        if self.knowledge.stores:
            listed[:0] = [SEARCH_TOOL, FETCH_TOOL]
        return listed

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools())

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = ctx.request
        if not isinstance(request, Request):
            raise RuntimeError("the relay's MCP tools run over HTTP only")
        arguments = dict(params.arguments or {})
        if params.name in ("search", "fetch") and self.knowledge.stores:
            key: KeyRecord | None = request.scope.get("state", {}).get(STATE_KEY)
            return await self.knowledge.run(params.name, arguments, key)
        tool = self.actions().get(params.name)
        if tool is None:
            return types.CallToolResult(
                content=[types.TextContent(text=f"Unknown tool {params.name!r}.")], is_error=True
            )
        base = str(request.base_url).rstrip("/")
        return await self.caller.call(tool, arguments, base, request.headers)

    async def start(self) -> None:
        await self.caller.start()
        await self._stack.enter_async_context(self.sessions.run())

    async def stop(self) -> None:
        await self._stack.aclose()
        await self.caller.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


def mount_mcp(app: FastAPI, relay: Relay) -> RelayMCP:
    """Serve `/mcp` from `app`, with its sessions started and stopped by the relay's lifespan."""
    mcp = RelayMCP(app, relay)
    # An ASGI endpoint (not a function), so Starlette hands it the raw request: the session
    # manager streams its answers.
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, include_in_schema=False))
    relay.startup.append(mcp.start)
    relay.shutdown.append(mcp.stop)
    return mcp
