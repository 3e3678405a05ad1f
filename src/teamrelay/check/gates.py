"""The seed's live success gates, one function each, in the order `teamrelay check` runs them.

Each gate cleans up what it created (files, uploads, batches) even when it fails, so running
the check against a production deployment leaves nothing behind but ledger rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from openai.types import Batch

from teamrelay.check.actions_schema import operation_count, schema_problems
from teamrelay.check.probe import GateFailed, GateSkipped, Probe, step
from teamrelay.check.wiretap import REQUEST_ID_HEADER

FALLBACK_MODEL = "gpt-5-mini"
PROMPT = "Reply with one short sentence saying that the relay works."
ACTIONS_SCHEMA_PATH = "/openapi.actions.json"
_BATCH_DONE = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class Gate:
    name: str
    run: Callable[[Probe], str]
    slow: bool = False


def _model(probe: Probe) -> str:
    return probe.model or FALLBACK_MODEL


def _batch_lines(probe: Probe, count: int) -> tuple[bytes, list[str]]:
    """A valid batch input file: also a realistic payload for the file round trips."""
    nonce = secrets.token_hex(4)
    ids = [f"teamrelay-check-{nonce}-{n}" for n in range(count)]
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": _model(probe), "input": PROMPT},
        }
        for custom_id in ids
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode(), ids


def _same_bytes(what: str, sent: bytes, got: bytes) -> None:
    if sent != got:
        raise GateFailed(
            f"{what}: the content differs: sent {len(sent)} bytes "
            f"(sha256 {hashlib.sha256(sent).hexdigest()[:12]}), got {len(got)} bytes "
            f"(sha256 {hashlib.sha256(got).hexdigest()[:12]})"
        )


def _discard_file(probe: Probe, file_id: str) -> None:
    with contextlib.suppress(Exception):
        probe.sdk.files.delete(file_id)


def health(probe: Probe) -> str:
    with step("GET /health"):
        response = probe.raw.get(f"{probe.root_url}/health")
    if response.status_code != 200:
        raise GateFailed(f"GET /health answered {response.status_code}")
    with step("GET /health"):
        body = response.json()
    if not isinstance(body, dict) or (body.get("object"), body.get("status")) != ("health", "ok"):
        raise GateFailed(f"GET /health answered {response.text[:120]!r}, not object=health, ok")
    upstream = body.get("openai")
    if isinstance(upstream, dict) and upstream.get("api_key_configured") is False:
        raise GateFailed("GET /health: the relay has no upstream OPENAI_API_KEY configured")
    if probe.model is None and isinstance(body.get("default_model"), str):
        probe.model = body["default_model"]
    relay = body.get("relay")
    relay = relay if isinstance(relay, dict) else {}
    version = f"{relay.get('name', 'relay')} {relay.get('version', '')}".strip()
    return f"{version}, default model {body.get('default_model', 'not stated')}"


def models(probe: Probe) -> str:
    with step("models.list"):
        listed = [model.id for model in probe.sdk.models.list().data]
    if not listed:
        raise GateFailed("models.list: the relay offers no models")
    if _model(probe) not in listed:
        raise GateFailed(
            f"models.list: {_model(probe)} is not among the {len(listed)} models offered "
            "(choose one with --model)"
        )
    return f"{len(listed)} models, {_model(probe)} among them"


def response(probe: Probe) -> str:
    with step("responses.create"):
        answer = probe.sdk.responses.create(model=_model(probe), input=PROMPT)
    if answer.status != "completed":
        raise GateFailed(f"responses.create: response {answer.id} is {answer.status}")
    if not answer.output_text.strip():
        raise GateFailed(f"responses.create: response {answer.id} has no output text")
    if answer.usage is None or answer.usage.total_tokens <= 0:
        raise GateFailed(f"responses.create: response {answer.id} has no usage")
    return f"{answer.usage.input_tokens} tokens in, {answer.usage.output_tokens} out"


def response_stream(probe: Probe) -> str:
    what = "responses.create(stream=True)"
    with (
        step(what),
        probe.sdk.responses.create(model=_model(probe), input=PROMPT, stream=True) as stream,
    ):
        events = list(stream)
    if not events:
        raise GateFailed(f"{what}: the stream had no events")
    if events[0].type != "response.created":
        raise GateFailed(f"{what}: the first event is {events[0].type}, not response.created")
    numbers = [n for n in (getattr(e, "sequence_number", None) for e in events) if n is not None]
    if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
        raise GateFailed(f"{what}: events arrived out of sequence_number order")
    last = events[-1]
    if last.type != "response.completed":
        raise GateFailed(
            f"{what}: the stream ended after {len(events)} events without response.completed "
            f"(last event: {last.type})"
        )
    final = last.response
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    if not deltas:
        raise GateFailed(f"{what}: no response.output_text.delta events")
    if deltas != final.output_text:
        raise GateFailed(f"{what}: the text deltas do not add up to the final output text")
    if final.usage is None or final.usage.total_tokens <= 0:
        raise GateFailed(f"{what}: response.completed carries no usage")
    return f"{len(events)} events in order, {final.usage.output_tokens} tokens out"


def files(probe: Probe) -> str:
    content, _ = _batch_lines(probe, 40)
    with step("files.create"):
        created = probe.sdk.files.create(
            file=("teamrelay-check.jsonl", content, "application/jsonl"), purpose="batch"
        )
    deleted = False
    try:
        with step("files.content"):
            downloaded = probe.sdk.files.content(created.id).read()
        _same_bytes("files.content", content, downloaded)
        with step("files.delete"):
            deleted = probe.sdk.files.delete(created.id).deleted
        if not deleted:
            raise GateFailed(f"files.delete: {created.id} was not deleted")
    finally:
        if not deleted:
            _discard_file(probe, created.id)
    return f"{len(content)} bytes uploaded, downloaded identical, deleted"


def uploads(probe: Probe) -> str:
    content, _ = _batch_lines(probe, 40)
    middle = content.index(b"\n", len(content) // 2) + 1
    parts = [content[:middle], content[middle:]]
    with step("uploads.create"):
        upload = probe.sdk.uploads.create(
            bytes=len(content),
            filename="teamrelay-check.jsonl",
            mime_type="text/jsonl",
            purpose="batch",
        )
    file_id: str | None = None
    try:
        part_ids = []
        for number, part in enumerate(parts, 1):
            with step(f"uploads.parts.create (part {number})"):
                part_ids.append(probe.sdk.uploads.parts.create(upload.id, data=part).id)
        with step("uploads.complete"):
            done = probe.sdk.uploads.complete(upload.id, part_ids=part_ids)
        if done.status != "completed" or done.file is None:
            raise GateFailed(f"uploads.complete: upload {upload.id} is {done.status} with no file")
        file_id = done.file.id
        with step("files.content (completed upload)"):
            downloaded = probe.sdk.files.content(file_id).read()
        _same_bytes("files.content (completed upload)", content, downloaded)
    finally:
        if file_id is not None:
            _discard_file(probe, file_id)
        else:
            with contextlib.suppress(Exception):
                probe.sdk.uploads.cancel(upload.id)
    return f"{len(content)} bytes in {len(parts)} parts, completed, downloaded identical"


def _await_batch(probe: Probe, batch_id: str) -> Batch:
    deadline = time.monotonic() + probe.batch_wait
    pause = 0.05
    while True:
        with step("batches.retrieve"):
            batch = probe.sdk.batches.retrieve(batch_id)
        if batch.status in _BATCH_DONE:
            return batch
        left = deadline - time.monotonic()
        if left <= 0:
            with contextlib.suppress(Exception):
                probe.sdk.batches.cancel(batch_id)
            raise GateFailed(
                f"batches.retrieve: batch {batch_id} still {batch.status} after "
                f"{probe.batch_wait:g} s; cancelled it (allow longer with --batch-wait)"
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 5.0)


def batch(probe: Probe) -> str:
    content, ids = _batch_lines(probe, 2)
    with step("files.create (batch input)"):
        input_file = probe.sdk.files.create(
            file=("teamrelay-check-batch.jsonl", content, "application/jsonl"), purpose="batch"
        )
    created = [input_file.id]
    started = time.monotonic()
    try:
        with step("batches.create"):
            queued = probe.sdk.batches.create(
                input_file_id=input_file.id,
                endpoint="/v1/responses",
                completion_window="24h",
                metadata={"source": "teamrelay check"},
            )
        done = _await_batch(probe, queued.id)
        created += [f for f in (done.output_file_id, done.error_file_id) if f]
        if done.status != "completed":
            errors = done.errors.data if done.errors and done.errors.data else []
            reason = f": {errors[0].message}" if errors else ""
            raise GateFailed(f"batches.retrieve: batch {done.id} ended {done.status}{reason}")
        if not done.output_file_id:
            counts = done.request_counts
            failed = f" ({counts.failed} of {counts.total} requests failed)" if counts else ""
            raise GateFailed(f"batches.retrieve: batch {done.id} has no output file{failed}")
        with step("files.content (batch output)"):
            output = probe.sdk.files.content(done.output_file_id).read()
        with step("batch output"):
            results = [json.loads(line) for line in output.splitlines() if line.strip()]
        answered = {
            r.get("custom_id")
            for r in results
            if isinstance(r, dict) and (r.get("response") or {}).get("status_code") == 200
        }
        if answered != set(ids):
            raise GateFailed(
                f"batch output: {len(answered)} of {len(ids)} requests answered with 200 "
                f"in {done.output_file_id}"
            )
    finally:
        for file_id in created:
            _discard_file(probe, file_id)
    return f"{len(ids)} requests answered, output downloaded ({time.monotonic() - started:.1f} s)"


def actions_schema(probe: Probe) -> str:
    what = f"GET {ACTIONS_SCHEMA_PATH}"
    with step(what):
        answer = probe.raw.get(
            f"{probe.root_url}{ACTIONS_SCHEMA_PATH}",
            headers={"Authorization": f"Bearer {probe.key}"},
        )
    if answer.status_code == 404:
        raise GateSkipped(f"not served ({what} answered 404)")
    if answer.status_code != 200:
        raise GateFailed(f"{what} answered {answer.status_code}")
    with step(what):
        schema = answer.json()
    if not isinstance(schema, dict):
        raise GateFailed(f"{what}: the schema is not a JSON object")
    problems = schema_problems(schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GateFailed(f"{what}: {problems[0]}{more}")
    return f"{operation_count(schema)} operations, unique operationIds, bearer auth"


def relay_headers(probe: Probe) -> str:
    seen = probe.tap.exchanges
    if not seen:
        raise GateFailed("no response from the relay to judge")
    leaked = [e for e in seen if e.key_in_headers or e.key_in_body]
    if leaked:
        first = leaked[0]
        where = "headers" if first.key_in_headers else "body"
        more = f" (and {len(leaked) - 1} more responses)" if len(leaked) > 1 else ""
        raise GateFailed(
            f"an upstream-key-looking value (sk-…) came back in the {where} of {first.label}{more}"
        )
    missing = [e for e in seen if not e.request_id]
    if missing:
        first = missing[0]
        raise GateFailed(
            f"{len(missing)} of {len(seen)} responses had no {REQUEST_ID_HEADER} "
            f"(first: {first.label}, status {first.status})"
        )
    return f"{len(seen)} responses, each with {REQUEST_ID_HEADER}, no sk-… value"


GATES = (
    Gate("health", health),
    Gate("models", models),
    Gate("response", response),
    Gate("response stream", response_stream),
    Gate("files", files),
    Gate("uploads", uploads),
    Gate("batch", batch, slow=True),
    Gate("actions schema", actions_schema),
    Gate("relay headers", relay_headers),
)
