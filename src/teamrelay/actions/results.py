"""The compact answers: what a model needs from each upstream object, and their schemas.

A shaper and the schema describing its output sit side by side so they change together.
Every shaper returns an answer within limits.ANSWER_CHARS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from teamrelay.actions.compact import fit_answer, page_text, size
from teamrelay.actions.limits import ANSWER_CHARS

_PENDING = frozenset({"queued", "in_progress"})
_MAX_CITATIONS = 50


def _obj(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties}


_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer"}
_B: dict[str, Any] = {"type": "boolean"}
_PAGE = {
    "truncated": {**_B, "description": "True when the answer was cut to fit."},
    "next_offset": {**_I, "description": "Pass as offset to read on."},
    "hint": {**_S, "description": "What to call next."},
}
_LIST = {
    "has_more": _B,
    "next_after": {**_S, "description": "Pass as after for the next page."},
    "truncated": _B,
    "hint": _S,
}


def paged(
    base: dict[str, Any],
    field: str,
    window: str,
    start: int,
    hint: Callable[[int], str],
    *,
    more: bool = False,
) -> dict[str, Any]:
    """`base` plus the first page of `window` (text from character `start` on) in `field`,
    sized so the JSON fits the cap. `more` says text follows the window."""
    room = ANSWER_CHARS - size(base) - 400
    while True:
        piece, cut_at = page_text(window, 0, room)
        following = (
            start + cut_at if cut_at is not None else (start + len(window) if more else None)
        )
        answer = {**base, field: piece, "offset": start}
        if following is None:
            answer["total_chars"] = start + len(window)
        answer["truncated"] = following is not None
        if following is not None:
            answer["next_offset"] = following
            answer["hint"] = hint(following)
        excess = size(answer) - ANSWER_CHARS
        if excess <= 0:
            return answer
        room = max(0, room - excess - 32)


def listing(
    key: str, items: list[dict[str, Any]], has_more: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A page of objects; dropped from the end (with a cursor) when they would not fit."""
    answer: dict[str, Any] = {**(extra or {}), key: items, "has_more": has_more}
    cut = False
    while size(answer) > ANSWER_CHARS and items:
        items = items[: max(0, len(items) - max(1, len(items) // 8))]
        answer[key] = items
        cut = True
    if cut:
        answer["truncated"] = True
        answer["has_more"] = True
        answer["hint"] = "Not all items fit: call again with after set to next_after."
    if answer["has_more"] and items and isinstance(items[-1].get("id"), str):
        answer["next_after"] = items[-1]["id"]
    return answer


# Responses (askModel, getAnswer, cancelAnswer)


def _texts_and_citations(response: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    texts: list[str] = []
    citations: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if not isinstance(part, dict) or part.get("type") != "output_text":
                continue
            texts.append(str(part.get("text", "")))
            for note in part.get("annotations") or []:
                if isinstance(note, dict) and len(citations) < _MAX_CITATIONS:
                    keep = ("type", "url", "title", "file_id", "filename")
                    citations.append({k: note[k] for k in keep if note.get(k) is not None})
    return "\n\n".join(texts), citations


def answer(response: dict[str, Any], offset: int = 0) -> dict[str, Any]:
    response_id = str(response.get("id", ""))
    status = response.get("status")
    base: dict[str, Any] = {"response_id": response_id, "status": status}
    if response.get("model"):
        base["model"] = response["model"]
    if status in _PENDING:
        base["status"] = "in_progress"
        base["hint"] = (
            f"Still working. Call getAnswer with response_id {response_id} in about 10 "
            "seconds; tell the user it is on its way."
        )
        return base
    if response.get("error"):
        base["error"] = response["error"]
    if response.get("incomplete_details"):
        base["incomplete_details"] = response["incomplete_details"]
    text, citations = _texts_and_citations(response)
    if citations:
        base["citations"] = citations
    usage = response.get("usage")
    if isinstance(usage, dict):
        keep = ("input_tokens", "output_tokens", "total_tokens")
        base["usage"] = {k: usage[k] for k in keep if k in usage}
    offset = max(0, min(offset, len(text)))
    return paged(
        base,
        "output_text",
        text[offset:],
        offset,
        lambda n: (
            f"The text continues: call getAnswer with response_id {response_id} and offset {n}."
        ),
    )


ANSWER_SCHEMA = _obj(
    {
        "response_id": _S,
        "status": {**_S, "description": "completed, in_progress, queued, incomplete, failed."},
        "model": _S,
        "output_text": {**_S, "description": "The model's answer (this page of it)."},
        "citations": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
        "offset": _I,
        "total_chars": _I,
        **_PAGE,
    },
    "A model's answer, or its progress while it is still running.",
)


# Files and vector stores


def file_info(obj: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "filename", "bytes", "purpose", "status", "created_at", "expires_at")
    return {k: obj.get(k) for k in keep if obj.get(k) is not None}


FILE_SCHEMA = _obj(
    {"id": _S, "filename": _S, "bytes": _I, "purpose": _S, "status": _S, "created_at": _I},
    "An OpenAI file.",
)


def vector_store_info(obj: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "name", "status", "usage_bytes", "file_counts", "created_at", "expires_at")
    return {k: obj.get(k) for k in keep if obj.get(k) is not None}


VECTOR_STORE_SCHEMA = _obj(
    {"id": _S, "name": _S, "status": _S, "usage_bytes": _I, "file_counts": {"type": "object"}},
    "A vector store (searchable collection of files).",
)


def deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj.get("id"), "deleted": bool(obj.get("deleted"))}


DELETED_SCHEMA = _obj({"id": _S, "deleted": _B}, "What was deleted.")


def search_hits(found: dict[str, Any]) -> dict[str, Any]:
    hits = []
    for hit in found.get("data") or []:
        if not isinstance(hit, dict):
            continue
        parts = [str(p.get("text", "")) for p in hit.get("content") or [] if isinstance(p, dict)]
        hits.append(
            {
                "file_id": hit.get("file_id"),
                "filename": hit.get("filename"),
                "score": hit.get("score"),
                "text": "\n\n".join(parts),
            }
        )
    return fit_answer(
        {"results": hits},
        "Passages were cut to fit: read a whole file with readFileText (file_id, offset).",
    )


SEARCH_SCHEMA = _obj(
    {
        "results": {
            "type": "array",
            "items": _obj(
                {"file_id": _S, "filename": _S, "score": {"type": "number"}, "text": _S},
                "A matching passage.",
            ),
        },
        "truncated": _B,
        "hint": _S,
    },
    "Passages that match the query, best first.",
)

LIST_FILES_SCHEMA = _obj({"files": {"type": "array", "items": FILE_SCHEMA}, **_LIST}, "Files.")
LIST_STORES_SCHEMA = _obj(
    {"vector_stores": {"type": "array", "items": VECTOR_STORE_SCHEMA}, **_LIST}, "Vector stores."
)
UPLOADED_SCHEMA = _obj(
    {
        "files": {"type": "array", "items": FILE_SCHEMA},
        "vector_store_id": _S,
    },
    "The chat files, now OpenAI files (and in the vector store when one was named).",
)
ADDED_SCHEMA = _obj(
    {"vector_store_id": _S, "files": {"type": "array", "items": {"type": "object"}}},
    "Files added to the vector store, with their indexing status.",
)
TEXT_SCHEMA = _obj(
    {"file": FILE_SCHEMA, "text": _S, "offset": _I, "total_chars": _I, **_PAGE},
    "A page of a file's text.",
)

# Files out

FILE_RESPONSE_SCHEMA = _obj(
    {
        "openaiFileResponse": {
            "type": "array",
            "description": "Files for the user: shown in the chat.",
            "items": {},
        },
        "file": FILE_SCHEMA,
        "download_url": {**_S, "description": "A link for files too big to attach."},
        "hint": _S,
    },
    "Files returned into the chat.",
)

# Models, embeddings, batches


def model_ids(listing_body: dict[str, Any]) -> list[str]:
    return sorted(str(m.get("id")) for m in listing_body.get("data") or [] if isinstance(m, dict))


MODELS_SCHEMA = _obj(
    {"models": {"type": "array", "items": _S}, "truncated": _B}, "Model ids available here."
)


def _rounded(vector: Iterable[Any]) -> list[float]:
    return [round(float(x), 6) for x in vector]


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    vectors = [
        {"index": item.get("index"), "embedding": _rounded(item.get("embedding") or [])}
        for item in body.get("data") or []
        if isinstance(item, dict)
    ]
    dimensions = len(_rounded(body["data"][0].get("embedding") or [])) if vectors else 0
    extra = {"model": body.get("model"), "dimensions": dimensions, "usage": body.get("usage")}
    result = listing("embeddings", vectors, False, extra)
    if result.get("truncated"):
        result.pop("next_after", None)
        result["hint"] = "Not every vector fit: embed fewer texts per call."
    return result


EMBEDDINGS_SCHEMA = _obj(
    {
        "model": _S,
        "dimensions": _I,
        "embeddings": {"type": "array", "items": {"type": "object"}},
        "truncated": _B,
        "hint": _S,
    },
    "One vector per input text.",
)


def batch_info(obj: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "id",
        "status",
        "endpoint",
        "input_file_id",
        "output_file_id",
        "error_file_id",
        "request_counts",
        "created_at",
        "completed_at",
        "errors",
        "metadata",
    )
    return {k: obj.get(k) for k in keep if obj.get(k) is not None}


BATCH_SCHEMA = _obj(
    {
        "id": _S,
        "status": _S,
        "endpoint": _S,
        "output_file_id": {**_S, "description": "Read results with readFileText."},
        "error_file_id": _S,
        "request_counts": {"type": "object"},
    },
    "A batch job.",
)
LIST_BATCHES_SCHEMA = _obj(
    {"batches": {"type": "array", "items": BATCH_SCHEMA}, **_LIST}, "Batches."
)
ANY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The OpenAI API's answer (cut to fit, with truncated and hint, if large).",
}
