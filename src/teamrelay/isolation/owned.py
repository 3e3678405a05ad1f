"""Which operations touch objects a key can own, derived from the catalog.

An owned collection is a path where the API creates objects (`POST /files`, answered with
JSON) and addresses them by id (`/files/{file_id}...`). For each operation the relay then
knows: where the owned id sits in its path (the first parameter; deeper ones, such as a
vector store's file entries, are reached through their parent), whether it may create
objects, whether it lists a collection, and whether one object can be retrieved by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from teamrelay.catalog import Catalog, Operation

# Prefixes of ids that name owned objects, for finding references in request bodies.
ID_PREFIXES: Final = (
    "file-",
    "vs_",
    "batch_",
    "resp_",
    "conv_",
    "cntr_",
    "upload_",
    "video_",
    "skill_",
    "asst_",
    "thread_",
    "chatcmpl-",
    "rtc_",
    "cksess_",
    "cthr_",
)
_OWNED_ID = re.compile("(?:" + "|".join(map(re.escape, ID_PREFIXES)) + r")[A-Za-z0-9_\-]{1,200}\Z")
# Creates whose object the upstream keeps only when asked to (`"store": true`).
STORED_WHEN_ASKED: Final = frozenset({"createChatCompletion"})
_STORE_TRUE = re.compile(rb'"store"\s*:\s*true')
# Creates answered with the new object's URL in `Location`, not with JSON (a realtime call's
# SDP answer).
LOCATION_CREATES: Final = frozenset({"/realtime/calls"})
# Collections whose objects are made outside the relay and belong to whoever owns their
# `user` (ChatKit's widget creates threads; see `chatkit`).
USER_SCOPED: Final = frozenset({"/chatkit/threads"})
# Answers naming objects derived from the one asked about, which belong to its owner.
DERIVED_FROM: Final = frozenset({"retrieveBatch", "cancelBatch", "listBatches", "completeUpload"})


def is_owned_id(value: str) -> bool:
    return _OWNED_ID.match(value) is not None


@dataclass(frozen=True, slots=True)
class Scope:
    collection: str
    id_segment: int | None = None
    creates: bool = False
    lists: bool = False

    def path_id(self, path: str) -> str | None:
        """The owned id in a raw request path after `/v1`, if this operation has one."""
        if self.id_segment is None:
            return None
        segments = path.split("/", self.id_segment + 1)
        return segments[self.id_segment] if len(segments) > self.id_segment else None


class OwnedOperations:
    def __init__(self, catalog: Catalog) -> None:
        json_creates = LOCATION_CREATES | {
            op.path
            for op in catalog.operations
            if op.method == "POST" and not op.params and "application/json" in op.response_types
        }
        collections = {
            prefix
            for op in catalog.operations
            if op.params
            and (prefix := op.path.split("{", 1)[0].rstrip("/")) in json_creates | USER_SCOPED
        }
        families = {collection.split("/")[1] for collection in collections}
        self._scopes: dict[Operation, Scope] = {}
        for op in catalog.operations:
            scope = _scope(op, collections, families)
            if scope is not None:
                self._scopes[op] = scope
        self.collections = frozenset(collections)
        self.lists = frozenset(op for op, scope in self._scopes.items() if scope.lists)
        self.user_scoped = USER_SCOPED & self.collections
        self.retrievable = frozenset(
            collection
            for op in catalog.operations
            if op.method == "GET"
            and len(op.params) == 1
            and (collection := op.path.split("{", 1)[0].rstrip("/")) in collections
            and op.path == f"{collection}/{{{op.params[0]}}}"
        )

    def get(self, operation: Operation) -> Scope | None:
        return self._scopes.get(operation)


def _scope(op: Operation, collections: set[str], families: set[str]) -> Scope | None:
    if op.websocket:
        return None
    if op.params:
        prefix = op.path.split("{", 1)[0].rstrip("/")
        if prefix not in collections:
            return None
        return Scope(prefix, id_segment=prefix.count("/") + 1, creates=op.method == "POST")
    if op.path in collections:
        return Scope(op.path, creates=op.method == "POST", lists=op.method == "GET")
    if op.method == "POST" and op.family in families:
        return Scope(f"/{op.family}", creates=True)
    return None


def may_create(operation: Operation, scope: Scope, body: object) -> bool:
    """Whether a successful answer to this request may be an object the relay must record."""
    if not scope.creates:
        return False
    return operation.operation_id not in STORED_WHEN_ASKED or (
        isinstance(body, bytes) and b'"store"' in body and _STORE_TRUE.search(body) is not None
    )


def created_id(
    operation: Operation, scope: Scope, path: str, object_id: str | None, body: object
) -> str | None:
    """The id of an object this successful call created, or None."""
    if object_id is None or not may_create(operation, scope, body):
        return None
    if scope.id_segment is None and operation.path == scope.collection:
        return object_id
    if object_id != scope.path_id(path) and is_owned_id(object_id):
        return object_id
    return None


def derived_ids(answer: Any) -> list[str]:
    """Ids of objects an answer says were produced for it (batch results, an upload's file)."""
    if not isinstance(answer, dict):
        return []
    found = [answer.get("output_file_id"), answer.get("error_file_id")]
    produced = answer.get("file")
    if isinstance(produced, dict):
        found.append(produced.get("id"))
    return [value for value in found if isinstance(value, str) and is_owned_id(value)]
