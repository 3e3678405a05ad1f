"""RequestHead: what the hot path reads from the ASGI request headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teamrelay.admission import RequestHead

Headers = list[tuple[bytes, bytes]]

_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def reference_parse(headers: Headers) -> RequestHead:
    """The rule spelled out header by header: of a repeated header the last one counts."""
    last: dict[bytes, bytes] = {}
    for name, value in headers:
        last[name] = value
    head = RequestHead()
    head.content_type = last.get(b"content-type", b"")
    head.chunked = b"transfer-encoding" in last
    relay_key = last.get(b"x-relay-key", b"").strip()
    if relay_key:
        head.key = relay_key.decode("latin-1")
    else:
        authorization = last.get(b"authorization", b"")
        if authorization.lower().startswith(b"bearer "):
            head.key = authorization[7:].strip().decode("latin-1") or None
    if b"content-length" in last:
        length = last[b"content-length"]
        digits = length != b"" and all(48 <= byte <= 57 for byte in length)
        head.content_length = int(length) if digits else -1
    request_id = last.get(b"x-relay-request-id")
    if request_id is not None and _VALID_REQUEST_ID.fullmatch(request_id):
        head.request_id = request_id
    return head


def test_the_last_of_a_repeated_header_counts() -> None:
    head = RequestHead.parse(
        [
            (b"authorization", b"Bearer tr-first"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"10"),
            (b"x-relay-request-id", b"first"),
            (b"authorization", b"Bearer tr-second"),
            (b"content-type", b"application/json"),
            (b"content-length", b"20"),
            (b"x-relay-request-id", b"second"),
        ]
    )
    assert head == RequestHead(
        key="tr-second", request_id=b"second", content_type=b"application/json", content_length=20
    )


def test_the_relay_key_header_wins_over_a_bearer_token() -> None:
    for headers in (
        [(b"authorization", b"Bearer tr-bearer"), (b"x-relay-key", b" tr-header ")],
        [(b"x-relay-key", b"tr-header"), (b"authorization", b"Bearer tr-bearer")],
    ):
        assert RequestHead.parse(headers).key == "tr-header"


def test_an_empty_relay_key_header_leaves_the_bearer_token() -> None:
    headers = [(b"x-relay-key", b"  "), (b"authorization", b"Bearer tr-bearer")]
    assert RequestHead.parse(headers).key == "tr-bearer"


@pytest.mark.parametrize("prefix", [b"Bearer ", b"bearer ", b"BEARER ", b"bEaReR "])
def test_the_bearer_prefix_is_read_in_any_case(prefix: bytes) -> None:
    assert RequestHead.parse([(b"authorization", prefix + b"tr-key ")]).key == "tr-key"


@pytest.mark.parametrize("value", [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer   ", b"tr-key"])
def test_an_authorization_without_a_bearer_token_gives_no_key(value: bytes) -> None:
    assert RequestHead.parse([(b"authorization", value)]).key is None


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"0", 0), (b"123", 123), (b"12a", -1), (b"-1", -1), (b" 5", -1), (b"", -1), (b"1e3", -1)],
)
def test_content_length_is_a_number_or_minus_one(value: bytes, length: int) -> None:
    assert RequestHead.parse([(b"content-length", value)]).content_length == length


def test_no_content_length_and_no_transfer_encoding_means_no_body() -> None:
    head = RequestHead.parse([(b"content-type", b"application/json")])
    assert (head.content_length, head.chunked, head.has_body) == (None, False, False)


def test_transfer_encoding_marks_the_body_chunked() -> None:
    head = RequestHead.parse([(b"transfer-encoding", b"chunked")])
    assert head.chunked
    assert head.has_body


@pytest.mark.parametrize(
    "request_id", [b"has space", b"x" * 129, b"", b"new\nline", b"caf\xc3\xa9", b"a/b"]
)
def test_an_invalid_client_request_id_is_ignored(request_id: bytes) -> None:
    assert RequestHead.parse([(b"x-relay-request-id", request_id)]).request_id is None


def test_a_valid_client_request_id_is_kept() -> None:
    request_id = b"A-z_0.9:" + b"x" * 120
    assert RequestHead.parse([(b"x-relay-request-id", request_id)]).request_id == request_id


_NAMES = st.sampled_from(
    [
        b"authorization",
        b"x-relay-key",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"x-relay-request-id",
        b"Authorization",
        b"accept",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            b"",
            b" ",
            b"Bearer tr-a",
            b"bearer tr-b ",
            b"BEARER  ",
            b"Basic x",
            b"tr-c",
            b"application/json",
            b"12",
            b"007",
            b"-3",
            b"req-1",
            b"has space",
            b"x" * 129,
        ]
    ),
    st.binary(max_size=12),
)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=10))
def test_parse_agrees_with_the_header_by_header_rule(headers: Headers) -> None:
    assert RequestHead.parse(headers) == reference_parse(headers)
