"""Bodies the relay's steps cannot read are refused with a 400, never read as "nothing there".

A raw client sends what no SDK would: JSON in UTF-16 or UTF-32, multipart heads with unquoted
or repeated parameters, a field given twice, an object id in a form. Each refusal comes before
anything reaches the upstream (the fake upstream's log stays as it was).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import openai
import pytest
from sqlalchemy import insert

from fakeupstream import FakeUpstream
from servers import RELAY_KEY, RunningRelay, relay_in_thread
from teamrelay.keys.store import KeyStore
from teamrelay.ledger.db import create_engine, upgrade
from teamrelay.ledger.models import ObjectRow

BOUNDARY = "relayboundary7"
GOOD_LINE = (
    b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"gpt-5-mini","messages":[{"role":"user","content":"hi"}]}}\n'
)
BAD_LINE = GOOD_LINE.replace(b"gpt-5-mini", b"gpt-4.1")


@dataclass
class Team:
    relay: RunningRelay
    alice: str
    bob: str


async def keys_and_containers(url: str) -> dict[str, str]:
    """Alice's and Bob's keys, each owning a container (the fake upstream has none)."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = KeyStore(engine, cache_ttl=0)
        secrets, rows = {}, []
        for name in ("alice", "bob"):
            record, secrets[name] = await store.create(name, scopes={"api"})
            rows.append({"object_id": f"cntr_{name}", "key_id": record.id})
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            for row in rows:
                await connection.execute(
                    insert(ObjectRow).values(**row, collection="/containers", created_at=now)
                )
        return secrets
    finally:
        await engine.dispose()


@contextlib.contextmanager
def team_relay(upstream: FakeUpstream, data: Path, **env: str) -> Iterator[Team]:
    url = f"sqlite+aiosqlite:///{data}/team.db"
    secrets = asyncio.run(keys_and_containers(url))
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url, **env) as relay:
        yield Team(relay, secrets["alice"], secrets["bob"])


@pytest.fixture
def team(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Team]:
    with team_relay(upstream, tmp_path, RELAY_MODEL_ALLOWLIST="gpt-5*,whisper-1") as running:
        yield running


def alices_file(team: Team) -> str:
    with openai.OpenAI(base_url=team.relay.base_url, api_key=team.alice, max_retries=0) as sdk:
        return sdk.files.create(file=("a.txt", b"Alice's notes\n"), purpose="assistants").id


def send(team: Team, key: str, path: str, body: bytes, content_type: str) -> httpx2.Response:
    headers = {"authorization": f"Bearer {key}", "content-type": content_type}
    return httpx2.post(team.relay.base_url + path, content=body, headers=headers, timeout=10)


def form(*parts: tuple[str, bytes]) -> bytes:
    """Parts given as (the Content-Disposition header's value and any more header lines, data)."""
    out = b""
    for head, data in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: {head}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


FORM = f"multipart/form-data; boundary={BOUNDARY}"
ENCODINGS = ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16", "utf-32"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_json_in_utf16_or_utf32_cannot_hide_another_keys_file_id(
    team: Team, upstream: FakeUpstream, encoding: str
) -> None:
    stolen = alices_file(team)
    before = len(upstream.log)
    request = {"model": "gpt-5-mini", "input": [{"type": "input_file", "file_id": stolen}]}
    body = json.dumps(request).encode(encoding)
    response = send(team, team.bob, "/responses", body, "application/json")
    assert response.status_code == 400, response.text
    assert "UTF-8" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "invalid_json"
    assert len(upstream.log) == before


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_json_in_utf16_or_utf32_cannot_pass_the_model_allowlist(
    team: Team, upstream: FakeUpstream, encoding: str
) -> None:
    body = json.dumps({"model": "gpt-4.1", "input": "hi"}).encode(encoding)
    for key in (team.bob, RELAY_KEY):  # a member, and an admin key the allowlist binds too
        response = send(team, key, "/responses", body, "application/json")
        assert response.status_code == 400, response.text
    assert len(upstream.log) == 0


def test_a_utf8_byte_order_mark_and_invalid_utf8_are_refused(
    team: Team, upstream: FakeUpstream
) -> None:
    body = json.dumps({"model": "gpt-5-mini", "input": "café"}, ensure_ascii=False).encode()
    for bad in (codecs.BOM_UTF8 + body, body.replace("é".encode(), b"\xe9")):
        response = send(team, team.bob, "/responses", bad, "application/json")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_json"
    assert len(upstream.log) == 0
    assert send(team, team.bob, "/responses", body, "application/json").status_code == 200


def test_json_with_escapes_that_does_not_parse_is_refused_not_read_as_naming_no_ids(
    team: Team, upstream: FakeUpstream
) -> None:
    stolen = alices_file(team)
    before = len(upstream.log)
    nested = "[" * 100_000 + "]" * 100_000
    body = f'{{"model":"gpt-5-mini","x":"\\u0041","deep":{nested},"file_id":"{stolen}"}}'
    response = send(team, team.bob, "/responses", body.encode(), "application/json")
    assert response.status_code == 400, response.text
    assert len(upstream.log) == before


def test_an_unquoted_model_field_given_after_a_quoted_one_is_refused(
    team: Team, upstream: FakeUpstream
) -> None:
    body = form(
        ('form-data; name="model"', b"whisper-1"),
        ("form-data; name=model", b"gpt-4o-transcribe"),
        ('form-data; name="file"; filename="a.mp3"', b"\x00" * 100),
    )
    response = send(team, team.bob, "/audio/transcriptions", body, FORM)
    assert response.status_code == 400, response.text
    assert "more than once" in response.json()["error"]["message"]
    assert len(upstream.log) == 0


def test_an_unquoted_model_field_is_read_like_a_quoted_one(
    team: Team, upstream: FakeUpstream
) -> None:
    body = form(
        ("form-data; name=model", b"gpt-4o-transcribe"),
        ('form-data; name="file"; filename="a.mp3"', b"\x00" * 100),
    )
    response = send(team, team.bob, "/audio/transcriptions", body, FORM)
    assert response.status_code == 403, response.text
    assert "gpt-4o-transcribe" in response.json()["error"]["message"]
    ok = body.replace(b"gpt-4o-transcribe", b"whisper-1")
    assert send(team, team.bob, "/audio/transcriptions", ok, FORM).status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        'form-data; name="prompt"; name="model"',
        'form-data; name="model"; NAME="model"',
        "form-data; name*=utf-8''model",
        'form-data; name="model',
        "form-data; name=mo del",
        'form-data; name="mo\\del"',
        "form-data; name=",
        'attachment; name="model"',
        'form-data; name="model";',
    ],
)
def test_a_malformed_or_ambiguous_part_head_is_refused(
    team: Team, upstream: FakeUpstream, head: str
) -> None:
    first = [('form-data; name="model"', b"whisper-1")] if "prompt" in head else []
    body = form(
        *first,
        (head, b"gpt-4o-transcribe"),
        ('form-data; name="file"; filename="a.mp3"', b"\x00" * 100),
    )
    response = send(team, team.bob, "/audio/transcriptions", body, FORM)
    assert response.status_code == 400, response.text
    assert len(upstream.log) == 0


def test_two_content_disposition_headers_or_a_transfer_encoding_are_refused(
    team: Team, upstream: FakeUpstream
) -> None:
    for extra in (
        'form-data; name="model"\r\nContent-Disposition: form-data; name="prompt"',
        'form-data; name="prompt"\r\nContent-Disposition: form-data; name="model"',
        'form-data; name="model"\r\nContent-Transfer-Encoding: base64',
    ):
        body = form(
            (extra, b"Z3B0LTRvLXRyYW5zY3JpYmU="),
            ('form-data; name="file"; filename="a.mp3"', b"\x00" * 100),
        )
        response = send(team, team.bob, "/audio/transcriptions", body, FORM)
        assert response.status_code == 400, response.text
    assert len(upstream.log) == 0


def test_a_second_model_after_the_file_is_refused(team: Team, upstream: FakeUpstream) -> None:
    body = form(
        ('form-data; name="model"', b"whisper-1"),
        ('form-data; name="file"; filename="a.mp3"', b"\x00" * 100),
        ('form-data; name="model"', b"gpt-4o-transcribe"),
    )
    response = send(team, team.bob, "/audio/transcriptions", body, FORM)
    assert response.status_code == 400, response.text
    assert "before the first file" in response.json()["error"]["message"]
    # The head went up while the body streamed; the upstream never got the whole form.
    assert all(entry.body_len < len(body) for entry in upstream.log)


def test_a_second_purpose_cannot_skip_the_batch_line_check(
    team: Team, upstream: FakeUpstream
) -> None:
    for purposes in ((b"assistants", b"batch"), (b"batch", b"assistants")):
        body = form(
            ('form-data; name="purpose"', purposes[0]),
            ('form-data; name="purpose"', purposes[1]),
            ('form-data; name="file"; filename="in.jsonl"', GOOD_LINE + BAD_LINE),
        )
        response = send(team, team.bob, "/files", body, FORM)
        assert response.status_code == 400, response.text
    assert len(upstream.log) == 0


def test_a_second_batch_file_part_is_refused(team: Team, upstream: FakeUpstream) -> None:
    body = form(
        ('form-data; name="purpose"', b"batch"),
        ('form-data; name="file"; filename="in.jsonl"', GOOD_LINE),
        ('form-data; name="file"; filename="more.jsonl"', BAD_LINE),
    )
    response = send(team, team.bob, "/files", body, FORM)
    assert response.status_code == 400, response.text
    with openai.OpenAI(base_url=team.relay.base_url, api_key=team.bob, max_retries=0) as sdk:
        assert sdk.files.list().data == []


def test_another_keys_file_id_in_a_container_file_form_is_not_found(
    team: Team, upstream: FakeUpstream
) -> None:
    stolen = alices_file(team)
    before = len(upstream.log)
    for field in ("file_id", "anything_else"):
        body = form((f'form-data; name="{field}"', stolen.encode()))
        response = send(team, team.bob, "/containers/cntr_bob/files", body, FORM)
        assert response.status_code == 404, response.text
        assert stolen in response.json()["error"]["message"]
    assert len(upstream.log) == before


def test_another_keys_file_id_in_json_inside_a_form_field_is_not_found(
    team: Team, upstream: FakeUpstream
) -> None:
    stolen = alices_file(team)
    before = len(upstream.log)
    body = form(
        ('form-data; name="model"', b"gpt-5-mini"),
        ('form-data; name="input_reference"', json.dumps({"file_id": stolen}).encode()),
    )
    response = send(team, team.bob, "/videos", body, FORM)
    assert response.status_code == 404, response.text
    assert len(upstream.log) == before


def test_an_object_id_after_the_file_is_refused(team: Team, upstream: FakeUpstream) -> None:
    stolen = alices_file(team)
    before = len(upstream.log)
    body = form(
        ('form-data; name="file"; filename="a.txt"', b"hello"),
        ('form-data; name="file_id"', stolen.encode()),
    )
    response = send(team, team.bob, "/containers/cntr_bob/files", body, FORM)
    assert response.status_code == 400, response.text
    assert "before the first file" in response.json()["error"]["message"]
    assert all(entry.body_len < len(body) for entry in upstream.log[before:])


def test_the_owner_s_own_id_in_a_form_goes_upstream(team: Team, upstream: FakeUpstream) -> None:
    mine = alices_file(team)
    before = len(upstream.log)
    body = form(('form-data; name="file_id"', mine.encode()))
    response = send(team, team.alice, "/containers/cntr_alice/files", body, FORM)
    assert response.status_code != 400, response.text
    assert len(upstream.log) == before + 1


def test_an_admin_key_s_forms_are_not_read_for_ids(team: Team, upstream: FakeUpstream) -> None:
    body = form(("form-data; name=file_id; name=x", b"file-abc"))
    response = send(team, RELAY_KEY, "/containers/cntr_1/files", body, FORM)
    assert response.status_code != 400, response.text
