"""Decoding a copy of a compressed answer, so the tap can read it while the client gets the
upstream's bytes unchanged.

OpenAI's edge compresses answers for every client that accepts it (the official SDKs do), so
without this the relay would learn no usage and no created id from them. Decoders are
incremental and bounded: no step yields more than about `SLICE` bytes at once, a zstd window is
capped as RFC 9659 asks of HTTP, and past `DECODED_CAP` bytes the copy is given up (the
answer still passes; its usage is then unknown, never zero).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import IO, Protocol, cast

import brotli
import zstandard

READABLE = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})
SLICE = 256 * 1024
DECODED_CAP = 256 * 1024 * 1024
_ZSTD_WINDOW = 8 * 1024 * 1024

Sink = Callable[[bytes], None]


class Unreadable(Exception):
    """The copy cannot be decoded (corrupt, or larger than the cap)."""


class Decoder(Protocol):
    def decode(self, chunk: bytes, sink: Sink) -> None: ...

    def end(self, sink: Sink) -> None: ...


def decoder_for(content_encoding: str) -> Decoder | None:
    """A decoder for one content coding; None for codings (or stacks of them) it cannot read."""
    coding = content_encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Zlib(zlib.MAX_WBITS, raw_fallback=True)
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    return None


class _Zlib:
    """gzip (every member, as a concatenation decodes) and deflate, zlib-wrapped or raw: RFC
    9110 says zlib, but some servers send raw deflate, and clients accept both."""

    __slots__ = ("_obj", "_raw_fallback", "_started", "_wbits")

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._wbits = wbits
        self._obj = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback
        self._started = False

    def decode(self, chunk: bytes, sink: Sink) -> None:
        data = chunk
        while data:
            obj = self._obj
            try:
                out = obj.decompress(data, SLICE)
            except zlib.error:
                if not self._raw_fallback or self._started:
                    raise Unreadable from None
                self._raw_fallback = False
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._started = True
            if out:
                sink(out)
            if obj.unconsumed_tail:
                data = obj.unconsumed_tail
            elif obj.eof and obj.unused_data:
                data = obj.unused_data
                self._obj = zlib.decompressobj(self._wbits)
            else:
                data = b""

    def end(self, sink: Sink) -> None:
        out = self._obj.flush()
        if out:
            sink(out)


class _Brotli:
    __slots__ = ("_obj",)

    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decode(self, chunk: bytes, sink: Sink) -> None:
        obj = self._obj
        try:
            out = obj.process(chunk, output_buffer_limit=SLICE)
            while out:
                sink(out)
                out = b"" if obj.is_finished() else obj.process(b"", output_buffer_limit=SLICE)
        except brotli.error:
            raise Unreadable from None

    def end(self, sink: Sink) -> None:
        return None


class _Zstd:
    __slots__ = ("_sink", "_writer")

    def __init__(self) -> None:
        self._sink: Sink | None = None
        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
        self._writer = dctx.stream_writer(cast(IO[bytes], self), write_size=SLICE, closefd=False)

    def write(self, data: bytes) -> int:
        """Called by zstandard with each decoded piece of at most `SLICE` bytes."""
        if self._sink is not None:
            self._sink(bytes(data))
        return len(data)

    def decode(self, chunk: bytes, sink: Sink) -> None:
        self._sink = sink
        try:
            self._writer.write(chunk)
        except zstandard.ZstdError:
            raise Unreadable from None
        finally:
            self._sink = None

    def end(self, sink: Sink) -> None:
        return None
