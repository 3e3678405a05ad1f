"""The body readers read exactly what a reference parser reads, or refuse with a 400.

JSON: `json.loads` (which itself accepts UTF-16 and UTF-32); only UTF-8 without a byte order
mark is read, everything else is refused. Multipart: python-multipart, the parser behind
Starlette's forms; the relay reads a form's head as it does, or refuses the form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from python_multipart import FormParser
from python_multipart.multipart import Field, File

from strategies import FORM_BOUNDARY, encoded_json, multipart_forms
from teamrelay.body import check_json_text, parse_json
from teamrelay.errors import RelayError
from teamrelay.isolation import is_owned_id, referenced_ids
from teamrelay.multipart import FormHead, FormWatcher, boundary_of, parse_parameters, scan_head

T = TypeVar("T")


def read(reader: Callable[[bytes], T], body: bytes) -> T | RelayError:
    """What `reader` makes of `body`: its reading, or its refusal."""
    try:
        return reader(body)
    except RelayError as refusal:
        return refusal


def strings_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set(value).union(*map(strings_in, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(strings_in, value)) if value else set()
    return set()


@given(encoded_json())
def test_json_is_read_as_json_loads_reads_it_or_refused(sample: tuple[str, bytes]) -> None:
    encoding, body = sample
    document = read(parse_json, body)
    if encoding == "utf-8":  # UTF-8 JSON is always read, exactly
        assert document == json.loads(body)
    else:
        assert isinstance(document, RelayError)
        assert document.status == 400


@given(encoded_json())
def test_referenced_ids_are_every_owned_id_json_loads_sees_or_a_refusal(
    sample: tuple[str, bytes],
) -> None:
    encoding, body = sample
    found = read(referenced_ids, body)
    if encoding == "utf-8":
        assert found == {s for s in strings_in(json.loads(body)) if is_owned_id(s)}
    else:
        assert isinstance(found, RelayError)
        assert found.status == 400


@pytest.mark.parametrize(
    "body",
    [
        '{"file_id":"file-x"}'.encode("utf-16-le"),
        '{"file_id":"file-x"}'.encode("utf-32"),
        b'\xef\xbb\xbf{"file_id":"file-x"}',
        b'{"file_id":"file-x","note":"caf\xe9"}',
        b'{"file_id":"file-x","nul":"\x00"}',
    ],
)
def test_json_that_is_not_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(RelayError) as refused:
        check_json_text(body)
    assert refused.value.status == 400
    with pytest.raises(RelayError):
        referenced_ids(body)


def test_json_with_escapes_that_does_not_parse_names_no_ids_by_default_no_more() -> None:
    for body in (b'{"file_id":"file-x", "a":"\\u0041"', b"[" * 50_000 + b'"\\u0041"'):
        with pytest.raises(RelayError) as refused:
            referenced_ids(body)
        assert refused.value.status == 400


def reference_form(body: bytes) -> list[tuple[bytes, bytes | None, bytes]] | None:
    """Every part as python-multipart reads it: (name, filename, value); None if it refuses."""
    parts: list[tuple[bytes, bytes | None, bytes]] = []

    def on_field(field: Field) -> None:
        parts.append((field.field_name or b"", None, field.value or b""))

    def on_file(file: File) -> None:
        parts.append((file.field_name or b"", file.file_name, b""))

    try:
        parser = FormParser(
            "multipart/form-data", on_field, on_file, boundary=FORM_BOUNDARY.encode()
        )
        parser.write(body)
        parser.finalize()
    except Exception:
        return None
    return parts


def head_of(parts: list[tuple[bytes, bytes | None, bytes]]) -> FormHead:
    head = FormHead()
    for name, filename, value in parts:
        if filename is not None:
            head.file_field = name.decode("latin-1")
            break
        head.fields.setdefault(name.decode("latin-1"), []).append(value)
    return head


def relay_form(body: bytes) -> FormHead:
    """A form as the relay reads it: its head, then the rest watched as it streams by."""
    head = scan_head(body, FORM_BOUNDARY.encode(), final=True)
    assert head is not None
    if head.file_data_at is not None:
        watcher = FormWatcher(FORM_BOUNDARY.encode(), head.file_data_at)
        for at in range(0, len(body), 7):  # in small chunks: heads split across them
            watcher(body[at : at + 7])
        watcher.finish()
    return head


@settings(max_examples=400)
@given(multipart_forms())
def test_a_form_head_is_read_as_python_multipart_reads_it_or_refused(body: bytes) -> None:
    ours = read(relay_form, body)
    if isinstance(ours, RelayError):
        assert ours.status == 400
        return
    assert ours is not None
    reference = reference_form(body)
    assert reference is not None, "the relay read a form python-multipart refuses"
    expected = head_of(reference)
    assert (ours.fields, ours.file_field) == (expected.fields, expected.file_field)


@pytest.mark.parametrize(
    ("value", "parameters"),
    [
        (b'form-data; name="a\\"b"; filename=x.txt', {b"name": b'a"b', b"filename": b"x.txt"}),
        (b"form-data;name=model", {b"name": b"model"}),
        (b'form-data ; NAME = "model" ', {b"name": b"model"}),
        (b'form-data; name="a;b"', {b"name": b"a;b"}),
    ],
)
def test_token_and_quoted_parameters_are_read(value: bytes, parameters: dict[bytes, bytes]) -> None:
    assert parse_parameters(value) == (b"form-data", parameters)


@pytest.mark.parametrize(
    "value",
    [
        b'form-data; name="a"; name="b"',
        b'form-data; name="a"; Name="a"',
        b"form-data; name*=utf-8''a",
        b'form-data; name="a',
        b'form-data; name="a\\b"',
        b"form-data; name=a b",
        b"form-data; name",
        b"form-data; name=",
        b'form-data; name="a";',
        b'form-data, name="a"',
    ],
)
def test_malformed_or_repeated_parameters_are_refused(value: bytes) -> None:
    with pytest.raises(RelayError) as refused:
        parse_parameters(value)
    assert refused.value.status == 400


def test_the_boundary_is_read_from_its_own_parameter_only() -> None:
    assert boundary_of(b"multipart/form-data; x-boundary=evil; boundary=good") == b"good"
    assert boundary_of(b'multipart/form-data; boundary="q u"') == b"q u"
    for bad in (b"multipart/form-data", b"multipart/form-data; boundary=a; boundary=b"):
        with pytest.raises(RelayError):
            boundary_of(bad)
