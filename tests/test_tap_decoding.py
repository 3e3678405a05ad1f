"""The tap reads compressed answers from a decoded copy, in any chunking, within bounds."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from teamrelay.tap import Tap
from teamrelay.tap.decoding import SLICE, decoder_for

ANSWER = {
    "id": "resp_123",
    "model": "gpt-4.1",
    "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi " * 500}]}],
    "usage": {"input_tokens": 7, "output_tokens": 500, "total_tokens": 507},
}
BODY = json.dumps(ANSWER).encode()
STREAM = b"".join(
    b"event: " + name.encode() + b"\ndata: " + json.dumps(event).encode() + b"\n\n"
    for name, event in (
        ("response.created", {"type": "response.created", "response": {**ANSWER, "usage": None}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
        ("response.completed", {"type": "response.completed", "response": ANSWER}),
    )
)
COMPRESS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def _raw_deflate(data: bytes) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


def _feed(tap: Tap, data: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out.append(tap.feed(data[start:cut]))
        start = cut
    out.append(tap.finish())
    return b"".join(out)


@settings(max_examples=40, deadline=None)
@given(
    coding=st.sampled_from(sorted(COMPRESS)),
    streamed=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_usage_model_and_id_are_read_from_any_coding_in_any_chunking(
    coding: str, streamed: bool, cuts: list[int]
) -> None:
    wire = COMPRESS[coding](STREAM if streamed else BODY)
    tap = Tap.for_response("text/event-stream" if streamed else "application/json", coding)
    assert _feed(tap, wire, cuts) == wire
    assert not tap.unreadable
    assert tap.usage is not None
    assert (tap.usage.input_tokens, tap.usage.output_tokens) == (7, 500)
    assert (tap.model, tap.object_id) == ("gpt-4.1", "resp_123")


def test_raw_deflate_is_read_too() -> None:
    tap = Tap.for_response("application/json", "deflate")
    tap.whole(_raw_deflate(BODY))
    assert tap.usage is not None
    assert tap.usage.output_tokens == 500


def test_concatenated_gzip_members_are_all_read() -> None:
    half = len(BODY) // 2
    tap = Tap.for_response("application/json", "gzip")
    tap.whole(gzip.compress(BODY[:half]) + gzip.compress(BODY[half:]))
    assert tap.usage is not None


@pytest.mark.parametrize("encoding", ["compress", "gzip, br", "identity, gzip", "xz"])
def test_codings_it_cannot_read_leave_the_usage_unknown(encoding: str) -> None:
    tap = Tap.for_response("application/json", encoding)
    assert tap.feed(BODY) is BODY
    tap.finish()
    assert tap.usage is None
    assert tap.unreadable


@pytest.mark.parametrize("coding", sorted(COMPRESS))
def test_a_corrupt_copy_is_given_up_and_the_bytes_still_pass(coding: str) -> None:
    wire = COMPRESS[coding](BODY)
    broken = wire[:10] + bytes(b ^ 0x5A for b in wire[10:])
    tap = Tap.for_response("application/json", coding)
    assert _feed(tap, broken, [5, 40]) == broken
    assert tap.usage is None
    assert tap.unreadable


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_decompression_bomb_stops_at_the_cap(
    coding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = COMPRESS[coding](b'{"usage":' + b" " * (64 * SLICE))
    tap = Tap.for_response("application/json", coding)
    monkeypatch.setattr("teamrelay.tap.taps.DECODED_CAP", 4 * SLICE)
    tap.feed(bomb)
    tap.finish()
    assert tap.unreadable


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_no_step_yields_more_than_two_slices(coding: str) -> None:
    decoder = decoder_for(coding)
    assert decoder is not None
    pieces: list[int] = []
    decoder.decode(COMPRESS[coding](b"x" * (10 * SLICE)), lambda piece: pieces.append(len(piece)))
    decoder.end(lambda piece: pieces.append(len(piece)))
    assert max(pieces) <= 2 * SLICE  # brotli's buffer grows in steps past its limit
    assert sum(pieces) == 10 * SLICE
