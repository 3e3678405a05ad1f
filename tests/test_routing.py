"""The catalog on the hot path: every decided operation forwards exactly; the rest never leaves."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay, relay_in_thread
from teamrelay.catalog import Operation, load_catalog, load_policy

AUTH = {"Authorization": f"Bearer {RELAY_KEY}"}
CATALOG = load_catalog()
POLICY = load_policy(CATALOG, env={})
BOUNDARY = "relaywalkboundary"


def _probe(op: Operation) -> tuple[str, bytes | None, str | None]:
    """A small valid request for `op`: path with safe ids, a body of the kind it accepts."""
    path = "/v1" + op.path
    for name in op.params:
        path = path.replace("{" + name + "}", f"x_{name}-1")
    if not op.request_types and op.method in ("GET", "DELETE"):
        return path, None, None
    kinds = op.request_types or ("application/json",)
    if "application/json" in kinds:
        return path, json.dumps({"probe": op.operation_id}).encode(), "application/json"
    if "multipart/form-data" in kinds:
        form = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="probe"\r\n\r\n'
            f"{op.operation_id}\r\n--{BOUNDARY}--\r\n"
        ).encode()
        return path, form, f"multipart/form-data; boundary={BOUNDARY}"
    return path, b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", kinds[0]


def _forwardable() -> list[Operation]:
    return [
        op
        for op in CATALOG.operations
        if not op.websocket and not op.variant and not POLICY.decide(op).blocked
    ]


def test_every_decided_operation_reaches_upstream_byte_exact(
    relay: RunningRelay, upstream: FakeUpstream, record_property: pytest.RecordProperty
) -> None:
    operations = _forwardable()
    failures = []
    with httpx2.Client(base_url=relay.url, headers=AUTH, timeout=10) as http:
        for op in operations:
            path, body, content_type = _probe(op)
            headers = {"content-type": content_type} if content_type else {}
            upstream.clear_log()
            answer = http.request(
                op.method,
                path,
                params={"probe": "1", "n": ["2", "3"]},
                content=body,
                headers=headers,
            )
            received = upstream.log[-1] if len(upstream.log) == 1 else None
            expected_body = hashlib.sha256(body or b"").hexdigest()
            if (
                received is None
                or (received.method, received.path) != (op.method, path)
                or received.query != "probe=1&n=2&n=3"
                or received.body_sha256 != expected_body
                or answer.status_code >= 500
            ):
                failures.append(f"{op.method} {path} -> {answer.status_code}")
    record_property("walk", f"{len(operations) - len(failures)}/{len(operations)} passed")
    print(f"catalog walk: {len(operations) - len(failures)}/{len(operations)} operations passed")
    assert not failures
    assert len(operations) > 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/organization/users"),
        ("POST", "/v1/organization/admin_api_keys"),
        ("GET", "/v1/projects/proj_1/api_keys"),
        ("GET", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/evals"),
        ("DELETE", "/v1/evals/eval_1"),
    ],
)
def test_blocked_operations_get_403_and_never_reach_upstream(
    relay: RunningRelay, upstream: FakeUpstream, method: str, path: str
) -> None:
    body = b"{}" if method == "POST" else None
    answer = httpx2.request(
        method, relay.url + path, content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "blocked_operation"
    assert upstream.log == []


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/not-an-endpoint", 404, "unknown_url"),
        ("GET", "/v1/files/file-1/content/extra", 404, "unknown_url"),
        ("GET", "/v1/files/", 404, "unknown_url"),
        ("PUT", "/v1/files", 405, "method_not_allowed"),
        ("DELETE", "/v1/chat/completions", 405, "method_not_allowed"),
        ("GET", "/v1/files/a%2F..%2Fb", 400, "invalid_path_parameter"),
        ("GET", "/v1/files/...", 400, "invalid_path_parameter"),
    ],
)
def test_unknown_paths_wrong_methods_and_unsafe_ids_are_refused(
    relay: RunningRelay, upstream: FakeUpstream, method: str, path: str, status: int, code: str
) -> None:
    answer = httpx2.request(method, relay.url + path, headers=AUTH)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert upstream.log == []


def test_a_body_the_operation_does_not_take_gets_415(
    relay: RunningRelay, upstream: FakeUpstream
) -> None:
    form = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--{BOUNDARY}--\r\n"
    answer = httpx2.post(
        relay.base_url + "/chat/completions",
        content=form.encode(),
        headers={**AUTH, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert answer.status_code == 415
    assert upstream.log == []


def test_fine_tuned_model_names_pass_the_parameter_check(client: openai.OpenAI) -> None:
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ft:gpt-4o-mini:team::abc123")


@pytest.fixture(scope="module")
def gated(fake_upstream: FakeUpstream) -> Iterator[RunningRelay]:
    with relay_in_thread(fake_upstream.base_url, RELAY_MODEL_ALLOWLIST="gpt-5*,whisper-1") as r:
        yield r


@pytest.fixture
def gated_client(gated: RunningRelay, upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gated.base_url, api_key=RELAY_KEY, max_retries=0) as sdk:
        yield sdk


def test_allowlist_refuses_other_models_before_upstream(
    gated_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.PermissionDeniedError, match=r"gpt-4\.1"):
        gated_client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        gated_client.responses.create(model="o3", input="hi")
    assert upstream.log == []
    answer = gated_client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content


def test_allowlist_filters_the_model_list(gated_client: openai.OpenAI) -> None:
    listed = [m.id for m in gated_client.models.list()]
    assert listed
    assert all(m.startswith("gpt-5") or m == "whisper-1" for m in listed)


def test_allowlist_reads_the_model_of_a_form(
    gated_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    audio = ("a.mp3", io.BytesIO(b"\x00" * 4000))
    assert gated_client.audio.transcriptions.create(model="whisper-1", file=audio).text
    with pytest.raises(openai.PermissionDeniedError, match="gpt-4o-transcribe"):
        gated_client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)
    assert len(upstream.log) == 1


def _batch_line(model: str, n: int) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(line).encode() + b"\n"


def test_allowlist_checks_every_line_of_a_batch_input_file(
    gated_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    good = b"".join(_batch_line("gpt-5-mini", n) for n in range(2000))
    created = gated_client.files.create(file=("in.jsonl", io.BytesIO(good)), purpose="batch")
    assert created.bytes == len(good)
    bad = good + _batch_line("gpt-4.1", 2001)
    with pytest.raises(openai.PermissionDeniedError, match="line 2001"):
        gated_client.files.create(file=("in.jsonl", io.BytesIO(bad)), purpose="batch")
    with pytest.raises(openai.PermissionDeniedError):
        gated_client.uploads.create(
            bytes=10, filename="b.jsonl", mime_type="text/jsonl", purpose="batch"
        )
    assert len(gated_client.files.list().data) == 1
