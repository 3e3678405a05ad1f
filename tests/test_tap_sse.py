"""The SSE splitter: exact bytes out, the same events whatever the chunking, bounded memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from teamrelay.tap.sse import Event, EventSplitter, Piece, parse_event


def split(stream: bytes, cuts: list[int], max_event_bytes: int = 1 << 20) -> list[Piece]:
    splitter = EventSplitter(max_event_bytes)
    pieces: list[Piece] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        pieces += splitter.feed(stream[start:cut])
        start = cut
    rest = splitter.finish()
    if rest:
        pieces.append(Piece(rest, False, False))
    return pieces


def events(pieces: list[Piece]) -> list[Event]:
    parsed = [parse_event(piece.raw) for piece in pieces if piece.whole]
    return [event for event in parsed if event is not None]


def test_events_split_on_blank_lines_with_exact_raw_bytes() -> None:
    stream = b'data: {"a":1}\n\nevent: done\ndata: [DONE]\n\n'
    pieces = EventSplitter().feed(stream)
    assert [piece.raw for piece in pieces] == [
        b'data: {"a":1}\n\n',
        b"event: done\ndata: [DONE]\n\n",
    ]
    assert events(pieces) == [Event(None, b'{"a":1}'), Event("done", b"[DONE]")]


def test_crlf_and_cr_separators_end_events() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\rdata: c\n\r\ndata: d\r\n\n"
    pieces = EventSplitter().feed(stream)
    assert [piece.raw for piece in pieces] == [
        b"data: a\r\n\r\n",
        b"data: b\r\r",
        b"data: c\n\r\n",
        b"data: d\r\n\n",
    ]
    assert [event.data for event in events(pieces)] == [b"a", b"b", b"c", b"d"]


def test_a_crlf_is_one_line_end_not_a_blank_line() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\ndata: b\r\n") == []
    assert splitter.feed(b"\r\n") == [Piece(b"data: a\r\ndata: b\r\n\r\n")]


def test_separator_split_across_chunks_is_found() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: x\r") == []
    assert splitter.feed(b"\n\r") == [Piece(b"data: x\r\n\r")]
    # The `\n` completing the `\r\n` comes out alone and dispatches nothing.
    assert splitter.feed(b"\ndata: y\n\n") == [Piece(b"\n"), Piece(b"data: y\n\n")]
    assert parse_event(b"\n") is None


def test_multi_line_data_comments_and_fields_follow_the_spec() -> None:
    raw = b": keep-alive\nevent: message\nid: 7\ndata: one\ndata:two\ndata\nretry: 5\n\n"
    assert parse_event(raw) == Event("message", b"one\ntwo\n")


def test_a_comment_alone_dispatches_nothing() -> None:
    assert parse_event(b": ping\n\n") is None


def test_the_unfinished_last_event_is_returned_by_finish() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\n\ndata: partial") == [Piece(b"data: a\n\n")]
    assert splitter.finish() == b"data: partial"
    assert splitter.finish() == b""


def test_an_oversized_event_passes_in_pieces_and_is_not_buffered() -> None:
    cap = 1024
    splitter = EventSplitter(cap)
    out: list[Piece] = []
    fed = 0
    held_most = 0
    big = b"data: " + b"x" * 100_000 + b"\n\n"
    for start in range(0, len(big), 700):
        chunk = big[start : start + 700]
        out += splitter.feed(chunk)
        fed += len(chunk)
        held_most = max(held_most, fed - sum(len(piece.raw) for piece in out))
    out += splitter.feed(b"data: small\n\n")
    assert held_most <= cap
    assert b"".join(piece.raw for piece in out) == big + b"data: small\n\n"
    assert all(not piece.whole for piece in out[:-1])
    assert [piece.ends for piece in out[-2:]] == [True, True]
    assert events(out) == [Event(None, b"small")]


def test_an_event_over_the_cap_is_not_whole_even_in_one_chunk() -> None:
    pieces = EventSplitter(16).feed(b"data: 0123456789abcdef\n\ndata: ok\n\n")
    assert [piece.whole for piece in pieces] == [False, True]


_lines = st.lists(
    st.one_of(
        st.tuples(
            st.just(b"data"),
            st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b),
        ),
        st.tuples(st.sampled_from([b"event", b"id", b""]), st.sampled_from([b"x", b"delta", b""])),
    ),
    min_size=1,
    max_size=4,
)
_line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    stream = b""
    for _ in range(draw(st.integers(0, 6))):
        for name, value in draw(_lines):
            field = b":" + value if name == b"" else name + b": " + value
            stream += field + draw(_line_end)
        stream += draw(_line_end)
    if draw(st.booleans()):
        stream += b"data: unfinished"
    return stream


@settings(max_examples=300, deadline=None)
@given(stream=sse_streams(), data=st.data())
def test_any_chunking_gives_the_same_bytes_and_events(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    cap = data.draw(st.sampled_from([8, 40, 1 << 20]))
    whole = split(stream, [], cap)
    chunked = split(stream, cuts, cap)
    assert b"".join(piece.raw for piece in chunked) == stream
    assert events(chunked) == events(whole)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=30).filter(lambda b: not set(b) & {10, 13}), max_size=6),
    sep=st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r"]),
    data=st.data(),
)
def test_events_come_out_as_they_went_in(
    payloads: list[bytes], sep: bytes, data: st.DataObject
) -> None:
    stream = b"".join(b"data: " + payload + sep for payload in payloads)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert events(split(stream, cuts)) == [Event(None, payload) for payload in payloads]
