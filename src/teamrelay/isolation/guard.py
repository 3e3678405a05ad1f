"""The isolation step of the hot path: a key sees, changes and uses only its own objects.

With RELAY_ISOLATION=per_key (the default) a key without the `admin` scope is confined: an id
of an object it does not own, in the path or anywhere in a JSON body, gets the upstream's own
404 (as if the object did not exist) before anything is sent upstream, and lists show only
its objects. Objects the relay never saw created (they existed before it) have no owner, so
only admin keys see them; ChatKit threads, which ChatKit makes without the relay, belong to
the owner of their `user` (see `chatkit`). A key's own `isolation` limit overrides the relay's
default.

Every object created through the relay is recorded with its key, whatever the mode, so
turning isolation on later confines keys to what they created.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.types import Send

from teamrelay.body import RequestBody
from teamrelay.catalog import Catalog, Operation
from teamrelay.errors import RelayError
from teamrelay.forward import Call, Exchange
from teamrelay.headers import UpstreamHeaders
from teamrelay.isolation import chatkit
from teamrelay.isolation.listing import Charge, list_owned
from teamrelay.isolation.owned import (
    DERIVED_FROM,
    OwnedOperations,
    Scope,
    created_id,
    derived_ids,
    is_owned_id,
    may_create,
)
from teamrelay.isolation.owners import Owners
from teamrelay.isolation.references import form_ids, referenced_ids
from teamrelay.keys.store import KeyRecord
from teamrelay.upstream import Upstream


def not_found(collection: str, object_id: str) -> RelayError:
    """The upstream's 404 for an id it does not know, so a refusal reveals nothing."""
    noun = collection.rsplit("/", 1)[-1].removesuffix("es" if collection.endswith("ches") else "s")
    noun = noun.replace("_", " ")
    return RelayError(404, f"No {noun} found with id '{object_id}'.", type="invalid_request_error")


def _not_found_anywhere(object_id: str) -> RelayError:
    return RelayError(404, f"No object found with id '{object_id}'.", type="invalid_request_error")


class Isolation:
    """`upstream` and `headers` let the guard ask the upstream who a ChatKit thread is for
    (see `chatkit`); without them such a thread has no owner (admin only)."""

    def __init__(
        self,
        owners: Owners,
        catalog: Catalog,
        *,
        per_key: bool,
        upstream: Upstream | None = None,
        headers: UpstreamHeaders | None = None,
    ) -> None:
        self.owners = owners
        self.owned = OwnedOperations(catalog)
        self.per_key = per_key
        self._upstream = upstream
        self._headers = headers

    def confines(self, key: KeyRecord | None) -> bool:
        """Whether `key` is limited to its own objects."""
        if key is None or "admin" in key.scopes:
            return False
        mode = key.limits.get("isolation") if key.limits else None
        return mode == "per_key" if mode is not None else self.per_key

    async def check(
        self,
        key_id: str,
        operation: Operation,
        path: str,
        body: bytes | RequestBody | None,
        charge: Charge | None = None,
    ) -> None:
        """Raises the 404 for the first id in the request that `key_id` does not own: in the
        path, in a JSON body, or in a form's fields (read by `Admission.body(reads_ids=True)`;
        a multipart body whose head was not read is refused, not taken as naming nothing).
        An upstream call the check makes (who a ChatKit thread is for) goes to `charge`."""
        scope = self.owned.get(operation)
        if scope is not None:
            object_id = scope.path_id(path)
            if object_id is not None and await self._owner(scope, object_id, charge) != key_id:
                raise not_found(scope.collection, object_id)
        if operation.operation_id == chatkit.CREATE_SESSION and isinstance(body, bytes):
            await self._claim_user(key_id, body)
        if isinstance(body, RequestBody):
            if body.form is None and body.kind == "multipart":
                raise RelayError(
                    400, "The relay could not read this form's fields.", code="invalid_body"
                )
            referenced = form_ids(body.form.fields) if body.form is not None else set()
        else:
            referenced = referenced_ids(body) if body is not None else set()
        await self._all_owned(key_id, referenced)

    async def _all_owned(self, key_id: str, referenced: set[str]) -> None:
        """The upstream's own 404 for the first id (in order) `key_id` does not own."""
        if not referenced:
            return
        owners = await self.owners.owners_of(referenced)
        for object_id in sorted(referenced):
            owner = owners.get(object_id) or await self.owners.owner_of(object_id)
            if owner != key_id:
                raise _not_found_anywhere(object_id)

    async def _claim_user(self, key_id: str, body: bytes) -> None:
        """A session for a ChatKit user reaches that user's threads: refused for a user
        another key owns, and an unowned user becomes the key's before the session is made."""
        user = chatkit.session_user(body)
        if user is None:
            return
        owner = await self.owners.owner_of(chatkit.user_id(user), recheck=False)
        if owner is None:
            self.owners.record(chatkit.user_id(user), key_id, chatkit.USERS)
        elif owner != key_id:
            raise chatkit.user_taken()

    async def _owner(self, scope: Scope, object_id: str, charge: Charge | None) -> str | None:
        if scope.collection not in self.owned.user_scoped:
            return await self.owners.owner_of(object_id)
        owner = await self.owners.owner_of(object_id, recheck=False)
        if owner is None and self._upstream is not None and self._headers is not None:
            if charge is not None:
                await charge(1)
            headers = self._headers.build([chatkit.BETA], keep_length=False)
            owner = await chatkit.thread_owner(self._upstream, headers, self.owners, object_id)
        return owner

    async def check_query(self, key_id: str, query: str) -> None:
        """The same 404 for an owned id in the query string (a cursor, a filter)."""
        referenced = {value for _, value in parse_qsl(query) if is_owned_id(value)}
        await self._all_owned(key_id, referenced)

    def records(self, operation: Operation, body: bytes | RequestBody | None) -> bool:
        """Whether a successful answer to this request may create an object to remember."""
        scope = self.owned.get(operation)
        return scope is not None and may_create(operation, scope, body)

    def lists(self, operation: Operation) -> bool:
        return operation in self.owned.lists

    async def list_owned(
        self,
        upstream: Upstream,
        call: Call,
        key_id: str,
        operation: Operation,
        send: Send,
        charge: Charge,
    ) -> Exchange:
        """The key's own objects of a list operation, paged from the ownership table; the
        upstream calls it makes beyond the first go to `charge` (the key's rate limit)."""
        learn = None
        if operation.operation_id in DERIVED_FROM:

            def learn(item: dict[str, object]) -> None:
                self._learn_derived(item, key_id)

        scope = self.owned.get(operation)
        assert scope is not None  # an operation that lists has a scope
        collection = scope.collection
        if collection in self.owned.user_scoped:
            return await chatkit.list_threads(upstream, call, key_id, self.owners, send)
        return await list_owned(
            upstream,
            call,
            key_id,
            collection,
            self.owners,
            send,
            retrievable=collection in self.owned.retrievable,
            charge=charge,
            learn=learn,
        )

    async def _derived_owner(
        self, key: KeyRecord | None, operation: Operation, path: str, confined: bool
    ) -> str | None:
        """Who owns what this answer derives from (a batch's files belong to its owner)."""
        if key is None or operation.operation_id not in DERIVED_FROM:
            return None
        scope = self.owned.get(operation)
        object_id = scope.path_id(path) if scope is not None else None
        if object_id is None:
            return None
        return key.id if confined else await self.owners.owner_of(object_id, recheck=False)

    async def learn_from(
        self, key: KeyRecord, operation: Operation, path: str, confined: bool, answer: object
    ) -> None:
        """`learner` for callers that already hold the parsed answer (the Actions wrappers)."""
        owner = await self._derived_owner(key, operation, path, confined)
        if owner is not None:
            self._learn_derived(answer, owner)

    async def learner(
        self, key: KeyRecord | None, operation: Operation, path: str, confined: bool
    ) -> Callable[[bytes], bytes] | None:
        """For answers that name derived objects: a `Call.rewrite` that records them for the
        owner of what produced them, and returns the answer unchanged."""
        owner = await self._derived_owner(key, operation, path, confined)
        if owner is None:
            return None

        def learn(answer: bytes) -> bytes:
            with contextlib.suppress(ValueError):
                self._learn_derived(json.loads(answer), owner)
            return answer

        return learn

    def _learn_derived(self, answer: object, owner: str) -> None:
        for derived in derived_ids(answer):
            self.owners.record(derived, owner, "/files")

    def record(
        self,
        key: KeyRecord | None,
        operation: Operation,
        path: str,
        body: bytes | RequestBody | None,
        exchange: Exchange | None,
    ) -> None:
        """After the answer: remember an object this call created, for its key."""
        if key is None or exchange is None or not 200 <= exchange.status < 300:
            return
        object_id = exchange.tap.object_id if exchange.tap is not None else None
        if object_id is None and exchange.location:
            object_id = exchange.location.rstrip("/").rpartition("/")[2]
        self.remember(key, operation, path, body, object_id)

    def remember(
        self,
        key: KeyRecord,
        operation: Operation,
        path: str,
        body: bytes | RequestBody | None,
        object_id: str | None,
    ) -> None:
        """Record the object a successful call created (its answer's id), for `key`."""
        scope = self.owned.get(operation)
        if scope is None or object_id is None:
            return
        created = created_id(operation, scope, path, object_id, body)
        if created is None:
            return
        self.owners.record(created, key.id, scope.collection, fresh=scope.id_segment is None)
        if operation.operation_id == chatkit.CREATE_SESSION and isinstance(body, bytes):
            user = chatkit.session_user(body)
            if user is not None:  # the first key to make a session for a user owns it
                self.owners.record(chatkit.user_id(user), key.id, chatkit.USERS, fresh=False)
