"""Isolation's parts: owned operations from the catalog, references in bodies, ownership."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from teamrelay.catalog import load_catalog
from teamrelay.isolation import Isolation, OwnedOperations, Owners, Scope, chatkit, referenced_ids
from teamrelay.isolation.listing import matches
from teamrelay.isolation.owned import created_id, derived_ids
from teamrelay.keys.store import KeyRecord

CATALOG = load_catalog()
OWNED = OwnedOperations(CATALOG)


def scope_of(operation_id: str) -> Scope | None:
    return OWNED.get(CATALOG.by_id[operation_id])


def created(operation_id: str, path: str, object_id: str, body: bytes | None) -> str | None:
    operation = CATALOG.by_id[operation_id]
    scope = OWNED.get(operation)
    assert scope is not None
    return created_id(operation, scope, path, object_id, body)


def test_owned_collections_come_from_the_catalog() -> None:
    for collection in ("/files", "/batches", "/vector_stores", "/responses", "/uploads"):
        assert collection in OWNED.collections
    for collection in ("/conversations", "/containers", "/videos", "/skills", "/chat/completions"):
        assert collection in OWNED.collections
    assert "/models" not in OWNED.collections  # nobody creates models through the API
    assert "/realtime/calls" in OWNED.collections  # created with SDP, named by `Location`


def test_the_owned_id_is_the_first_path_parameter() -> None:
    content = scope_of("downloadFile")
    assert content is not None
    assert content.path_id("/files/file-abc/content") == "file-abc"
    entry = scope_of("getVectorStoreFile")
    assert entry is not None
    assert entry.path_id("/vector_stores/vs_1/files/file-x") == "vs_1"
    stored = scope_of("getChatCompletion")
    assert stored is not None
    assert stored.path_id("/chat/completions/chatcmpl-9") == "chatcmpl-9"
    listing = scope_of("listFiles")
    assert listing is not None
    assert listing.lists
    assert listing.path_id("/files") is None
    assert scope_of("listModels") is None
    assert scope_of("retrieveModel") is None


def test_creates_record_new_ids_only() -> None:
    assert created("createFile", "/files", "file-1", None) == "file-1"
    assert created("cancelBatch", "/batches/batch_1/cancel", "batch_1", None) is None
    assert created("createChatCompletion", "/chat/completions", "chatcmpl-1", b"{}") is None
    stored = b'{"store": true}'
    assert created("createChatCompletion", "/chat/completions", "chatcmpl-1", stored)
    assert created("CreateVideoRemix", "/videos/video_1/remix", "video_2", b"{}") == "video_2"
    assert created("createVectorStoreFile", "/vector_stores/vs_1/files", "part_1", b"{}") is None


def test_references_are_found_anywhere_in_a_json_body() -> None:
    body = (
        b'{"model":"m","previous_response_id":"resp_1","conversation":{"id":"conv_2"},'
        b'"input":[{"role":"user","content":[{"type":"input_file","file_id":"file-3"}]}],'
        b'"tools":[{"type":"file_search","vector_store_ids":["vs_4","vs_5"]}],'
        b'"text":"file-3 is mentioned in prose, call_6 is not an owned id"}'
    )
    assert referenced_ids(body) == {"resp_1", "conv_2", "file-3", "vs_4", "vs_5"}


def test_ids_spelled_with_escapes_are_still_found() -> None:
    assert referenced_ids(b'{"file_id":"fil\\u0065-secret"}') == {"file-secret"}
    assert referenced_ids(b'{"input_file_id":"file-x","note":"caf\\u00e9"}') == {"file-x"}


def test_derived_ids_are_a_batch_s_results_and_an_upload_s_file() -> None:
    batch = {"id": "batch_1", "output_file_id": "file-out", "error_file_id": "file-err"}
    assert derived_ids(batch) == ["file-out", "file-err"]
    assert derived_ids({"id": "upload_1", "file": {"id": "file-done"}}) == ["file-done"]
    assert derived_ids({"id": "batch_2", "output_file_id": None}) == []


async def test_owners_are_written_behind_and_seen_by_another_process(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    mine, theirs = Owners(engine), Owners(other_engine, recheck_delay=0.5)
    await mine.start()
    try:
        mine.record("file-a", "alice", "/files")
        assert await mine.owner_of("file-a") == "alice"  # from the cache, before any write
        assert await theirs.owner_of("file-a") == "alice"  # the recheck covers the write
        mine.record("file-a", "bob", "/files", fresh=False)  # the first owner stays
        await asyncio.sleep(0.1)
    finally:
        await mine.stop()
    fresh = Owners(other_engine, recheck_delay=0)
    assert await fresh.owners_of(["file-a", "file-unknown"]) == {"file-a": "alice"}
    assert await fresh.owner_of("file-unknown") is None


@pytest.mark.parametrize("isolation", ["per_key", "shared"])
def test_admin_keys_are_never_confined(isolation: str) -> None:
    guard = Isolation(Owners.__new__(Owners), CATALOG, per_key=isolation == "per_key")
    admin = KeyRecord("1", "root", "tr-", frozenset({"api", "admin"}), None, None)
    member = KeyRecord("2", "bob", "tr-", frozenset({"api"}), None, None)
    opted_out = KeyRecord(
        "3", "bot", "tr-", frozenset({"api"}), None, None, {"isolation": "shared"}
    )
    assert not guard.confines(admin)
    assert guard.confines(member) is (isolation == "per_key")
    assert not guard.confines(opted_out)


async def test_a_keys_ids_are_listed_in_order_from_cursors(engine: AsyncEngine) -> None:
    owners = Owners(engine)
    await owners.start()
    try:
        for index in range(8):
            owners.record(f"file-{index}", "alice" if index % 3 else "bob", "/files")
        owners.record("vs_1", "alice", "/vector_stores")
        # queued a moment ago: `listed` writes them first
        newest = await owners.listed("alice", "/files", descending=True, count=3)
        assert newest == ["file-7", "file-5", "file-4"]
        older = await owners.listed("alice", "/files", descending=True, count=9, after="file-4")
        assert older == ["file-2", "file-1"]
        between = await owners.listed(
            "alice", "/files", descending=False, count=9, after="file-1", before="file-7"
        )
        assert between == ["file-2", "file-4", "file-5"]
        newer = await owners.listed("alice", "/files", descending=True, count=9, before="file-4")
        assert newer == ["file-7", "file-5"]
        with pytest.raises(LookupError):  # bob's id is no cursor in alice's list
            await owners.listed("alice", "/files", descending=True, count=9, after="file-3")
        await owners.forget("alice", ["file-5", "file-3"])  # only her own rows go
        assert await owners.listed("alice", "/files", descending=False, count=9) == [
            "file-1",
            "file-2",
            "file-4",
            "file-7",
        ]
        assert await owners.owner_of("file-3") == "bob"
        assert await owners.owner_of("file-5", recheck=False) is None
    finally:
        await owners.stop()


def test_retrieved_objects_are_filtered_as_the_upstream_lists_them() -> None:
    item = {"id": "file-1", "purpose": "batch", "metadata": {"team": "red"}}
    assert matches(item, [("purpose", "batch"), ("metadata[team]", "red")])
    assert not matches(item, [("purpose", "assistants")])
    assert not matches(item, [("metadata[team]", "blue")])
    assert not matches({"id": "x", "metadata": None}, [("metadata[team]", "red")])


def test_chatkit_threads_are_owned_through_their_user() -> None:
    assert "/chatkit/sessions" in OWNED.collections
    assert "/chatkit/threads" in OWNED.user_scoped
    thread = scope_of("GetThreadMethod")
    assert thread is not None
    assert thread.path_id("/chatkit/threads/cthr_1") == "cthr_1"
    listing = scope_of("ListThreadsMethod")
    assert listing is not None
    assert listing.lists
    assert chatkit.user_of(chatkit.user_id("ada")) == "ada"
    long_name = "u" * 500  # the spec allows 512 characters; the table's ids hold 256
    assert len(chatkit.user_id(long_name)) <= 256
    assert chatkit.user_of(chatkit.user_id(long_name)) is None
    assert chatkit.session_user(b'{"user": "ada", "workflow": {"id": "wf"}}') == "ada"
