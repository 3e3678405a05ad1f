"""Read-only `search` and `fetch` over the vector stores the operator lists in
RELAY_MCP_VECTOR_STORES: the two tools ChatGPT's deep research and company knowledge call.

Their shapes are the ones OpenAI documents for MCP servers used that way
(https://platform.openai.com/docs/mcp): `search(query)` answers one text content holding
`{"results": [{"id", "title", "url"}]}`, and `fetch(id)` one holding
`{"id", "title", "text", "url", "metadata"}`. An id names a store and a file
(`vs_…:file-…`), and only the listed stores can be named.

The listed stores are the team's shared knowledge (the operator chose them), so these calls
go through the Actions wrappers' upstream calls (`OpenAICalls`), not per-key isolation; each
call still leaves a ledger row under the caller's key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from mcp import types
from starlette.responses import JSONResponse

from teamrelay.accounting import Ticket, wrapper_entry
from teamrelay.actions.calls import Deadline, OpenAICalls, Passthrough, segment
from teamrelay.errors import RelayError
from teamrelay.gateway import new_request_id
from teamrelay.keys.store import KeyRecord
from teamrelay.ledger.recorder import LedgerEntry

MAX_RESULTS = 10
_SNIPPET = 300
_TEXT_LIMIT = 90_000
FILE_URL = "https://platform.openai.com/storage/files/{file_id}"

SEARCH_TOOL = types.Tool(
    name="search",
    title="Search the team's knowledge",
    description=(
        "Search the team's document collections (OpenAI vector stores). Returns ids, "
        "titles and URLs; read a result with fetch."
    ),
    input_schema={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look for."}},
        "required": ["query"],
    },
    annotations=types.ToolAnnotations(
        title="Search the team's knowledge", read_only_hint=True, open_world_hint=False
    ),
)
FETCH_TOOL = types.Tool(
    name="fetch",
    title="Read a document",
    description="Read the full text of a document found with search, by its id.",
    input_schema={
        "type": "object",
        "properties": {"id": {"type": "string", "description": "An id from search."}},
        "required": ["id"],
    },
    annotations=types.ToolAnnotations(
        title="Read a document", read_only_hint=True, open_world_hint=False
    ),
)


def _text_result(document: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(document))], structured_content=document
    )


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


class Knowledge:
    def __init__(
        self,
        calls: OpenAICalls,
        stores: Sequence[str],
        budget: float,
        observe: Callable[[LedgerEntry], None],
    ) -> None:
        self.calls = calls
        self.stores = tuple(stores)
        self.budget = budget
        self.observe = observe

    async def run(
        self, name: str, arguments: dict[str, Any], key: KeyRecord | None
    ) -> types.CallToolResult:
        ticket = Ticket.open("POST", f"/mcp/tools/{name}", new_request_id())
        ticket.key = key
        answer: dict[str, Any] | None = None
        try:
            if name == "search":
                answer = await self.search(str(arguments.get("query") or ""))
            else:
                answer = await self.fetch(str(arguments.get("id") or ""))
            return _text_result(answer)
        except RelayError as error:
            ticket.refusal = error
            return _error(error.message)
        except Passthrough as refused:
            ticket.refusal = RelayError(refused.status, "", code=f"upstream_{refused.status}")
            return _error(refused.body.decode("utf-8", "replace"))
        finally:
            shown = JSONResponse(answer) if answer is not None else None
            self.observe(wrapper_entry(ticket, f"mcp.{name}", shown))

    async def search(self, query: str) -> dict[str, Any]:
        if not query.strip():
            raise RelayError(400, "Give a query.", param="query")
        self.calls.check("searchVectorStore")
        deadline = Deadline.after(self.budget)
        hits: list[tuple[float, dict[str, Any]]] = []
        for store in self.stores:
            found = await self.calls.json(
                "POST",
                f"/vector_stores/{segment(store)}/search",
                deadline,
                body={"query": query, "max_num_results": MAX_RESULTS},
            )
            for hit in found.get("data") or []:
                file_id = str(hit.get("file_id") or "")
                parts = [str(p.get("text", "")) for p in hit.get("content") or []]
                snippet = " ".join(" ".join(parts).split())[:_SNIPPET]
                result = {
                    "id": f"{store}:{file_id}",
                    "title": hit.get("filename") or file_id,
                    "url": FILE_URL.format(file_id=file_id),
                    "text": snippet,
                }
                hits.append((float(hit.get("score") or 0), result))
        hits.sort(key=lambda pair: -pair[0])
        return {"results": [result for _, result in hits[:MAX_RESULTS]]}

    async def fetch(self, document_id: str) -> dict[str, Any]:
        store, _, file_id = document_id.partition(":")
        if store not in self.stores or not file_id:
            raise RelayError(404, f"No document {document_id!r}: use an id from search.")
        self.calls.check("retrieveVectorStoreFileContent")
        deadline = Deadline.after(self.budget)
        base = f"/vector_stores/{segment(store)}/files/{segment(file_id)}"
        entry = await self.calls.json("GET", base, deadline)
        page = await self.calls.json("GET", base + "/content", deadline)
        text = "\n\n".join(str(p.get("text", "")) for p in page.get("data") or [])
        title = file_id
        if self.calls.allowed("retrieveFile"):
            meta = await self.calls.json("GET", f"/files/{segment(file_id)}", deadline)
            title = str(meta.get("filename") or file_id)
        metadata: dict[str, Any] = {"vector_store_id": store, **(entry.get("attributes") or {})}
        if len(text) > _TEXT_LIMIT:
            text, metadata["truncated"] = text[:_TEXT_LIMIT], True
        return {
            "id": document_id,
            "title": title,
            "text": text,
            "url": FILE_URL.format(file_id=file_id),
            "metadata": metadata,
        }
