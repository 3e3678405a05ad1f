"""The GPT Actions surface as MCP tools: one tool per Actions operation, read from the served
Actions schema, and called through the Actions wrapper routes themselves.

Calling the wrappers in-process (an ASGI request carrying the caller's own credential) keeps
one implementation of each operation: the same auth and scopes, budgets, ledger row, compact
answer and 100,000-character bound as a custom GPT gets. Files the wrappers hand back as
`openaiFileResponse` become MCP image or embedded-resource content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
from mcp import types
from starlette.types import ASGIApp

from teamrelay.actions.schema import operations
from teamrelay.oauth.tokens import AT_MCP

# Not tools: ChatGPT-only chat files, and the public ping and info operations.
SKIPPED = frozenset({"uploadChatFiles", "ping", "relayInfo"})
CREDENTIAL_HEADERS = ("authorization", "x-relay-key")
_BODY = "body"


@dataclass(frozen=True, slots=True)
class ActionTool:
    name: str
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    body_fields: tuple[str, ...] | None  # None: the body is passed whole as `body`
    has_body: bool
    tool: types.Tool

    def request(self, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any], Any]:
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", quote(str(arguments.get(name, "")), safe=""))
        query = {n: arguments[n] for n in self.query_params if arguments.get(n) is not None}
        body: Any = None
        if self.has_body:
            if self.body_fields is None:
                body = arguments.get(_BODY) or {}
            else:
                body = {n: arguments[n] for n in self.body_fields if n in arguments}
        return path, query, body


def _annotations(operation_id: str, operation: Mapping[str, Any]) -> types.ToolAnnotations:
    read_only = operation.get("x-openai-isConsequential") is False
    destructive = operation_id.startswith(("delete", "cancel", "openaiDelete"))
    return types.ToolAnnotations(
        title=operation.get("summary"),
        read_only_hint=read_only,
        destructive_hint=None if read_only else destructive,
        open_world_hint=True,
    )


def action_tool(path: str, method: str, operation: Mapping[str, Any]) -> ActionTool:
    properties: dict[str, Any] = {}
    required: list[str] = []
    path_params: list[str] = []
    query_params: list[str] = []
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        schema = dict(parameter.get("schema", {}))
        if parameter.get("description"):
            schema["description"] = parameter["description"]
        properties[name] = schema
        if parameter.get("required"):
            required.append(name)
        (path_params if parameter.get("in") == "path" else query_params).append(name)
    body_fields: tuple[str, ...] | None = ()
    request_body = operation.get("requestBody")
    if request_body:
        schema = request_body["content"]["application/json"].get("schema", {})
        fields = schema.get("properties")
        if isinstance(fields, dict) and not set(fields) & set(properties):
            properties.update(fields)
            required.extend(schema.get("required", []))
            body_fields = tuple(fields)
        else:
            properties[_BODY] = schema
            body_fields = None
            if request_body.get("required"):
                required.append(_BODY)
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = sorted(set(required))
    name = operation["operationId"]
    description = operation.get("description") or operation.get("summary") or name
    tool = types.Tool(
        name=name,
        title=operation.get("summary"),
        description=description,
        input_schema=input_schema,
        annotations=_annotations(name, operation),
    )
    return ActionTool(
        name,
        method.upper(),
        path,
        tuple(path_params),
        tuple(query_params),
        body_fields,
        bool(request_body),
        tool,
    )


def action_tools(document: Mapping[str, Any]) -> dict[str, ActionTool]:
    found: dict[str, ActionTool] = {}
    for path, method, operation in operations(dict(document)):
        if operation.get("operationId") in SKIPPED or not operation.get("operationId"):
            continue
        tool = action_tool(path, method, operation)
        found[tool.name] = tool
    return found


def _file_content(item: Any) -> types.ContentBlock:
    if isinstance(item, str):
        return types.TextContent(text=f"File: {item}")
    name = str(item.get("name") or "file")
    mime = str(item.get("mime_type") or "application/octet-stream")
    data = str(item.get("content") or "")
    if mime.startswith("image/"):
        return types.ImageContent(data=data, mime_type=mime)
    return types.EmbeddedResource(
        resource=types.BlobResourceContents(uri=f"file:///{quote(name)}", blob=data, mime_type=mime)
    )


def tool_result(status: int, raw: bytes) -> types.CallToolResult:
    """An Actions answer as MCP content; an error answer as an error result, its text intact."""
    text = raw.decode("utf-8", "replace")
    if status >= 400:
        return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        return types.CallToolResult(content=[types.TextContent(text=text)])
    if not isinstance(answer, dict):
        return types.CallToolResult(content=[types.TextContent(text=text)])
    files: Sequence[Any] = answer.pop("openaiFileResponse", None) or []
    content: list[types.ContentBlock] = [types.TextContent(text=json.dumps(answer))]
    content.extend(_file_content(item) for item in files)
    return types.CallToolResult(content=content, structured_content=answer)


class ActionCaller:
    """Sends a tool call to the Actions wrapper route, in-process, as the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._client: httpx2.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self._app))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(
        self,
        tool: ActionTool,
        arguments: Mapping[str, Any],
        base_url: str,
        headers: Mapping[str, str],
    ) -> types.CallToolResult:
        if self._client is None:
            raise RuntimeError("ActionCaller.start was not awaited")
        path, query, body = tool.request(arguments)
        sent = {name: headers[name] for name in CREDENTIAL_HEADERS if name in headers}
        at_mcp = AT_MCP.set(True)  # an /mcp token is good for this call (RFC 8707)
        try:
            response = await self._client.request(
                tool.method,
                base_url.rstrip("/") + path,
                params=query,
                json=body if tool.has_body else None,
                headers=sent,
            )
        finally:
            AT_MCP.reset(at_mcp)
        return tool_result(response.status_code, response.content)
