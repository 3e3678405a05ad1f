"""Compression as OpenAI's edge applies it, so the relay is tested against compressed answers.

The real edge compresses JSON answers (success and error alike) for every client that accepts
an encoding: the official SDKs send `Accept-Encoding: gzip, deflate`, others add `br` and
`zstd`. Whether it compresses SSE streams is not documented; the fake does when
`compress_streams` is set, flushing each event so streams stay live. The real edge never
sends `deflate`; the fake does when it is the only coding accepted, so it can be tested.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard

# The order a coding is picked in when the client weighs several the same.
PREFERENCE = ("zstd", "br", "gzip", "deflate")
COMPRESSED_TYPES = ("application/json", "text/plain")


def choose(accept_encoding: str | None) -> str | None:
    """The coding to answer with, by the client's q-values and then `PREFERENCE`."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        param = params.strip()
        if param.startswith("q="):
            try:
                quality = float(param[2:])
            except ValueError:
                continue
        weights[name.strip().lower()] = quality
    wildcard = weights.get("*")
    best: tuple[float, int] | None = None
    chosen = None
    for rank, coding in enumerate(PREFERENCE):
        quality = weights.get(coding, wildcard if wildcard is not None else 0.0)
        if quality <= 0:
            continue
        if best is None or (quality, -rank) > best:
            best, chosen = (quality, -rank), coding
    return chosen


def compressible(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media in COMPRESSED_TYPES or media.endswith("+json")


class Encoder:
    """Compresses a body piece by piece; each piece is flushed so a reader can decode it."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        if coding == "gzip":
            self._zlib = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._zlib = zlib.compressobj()
        elif coding == "br":
            self._brotli = brotli.Compressor()
        elif coding == "zstd":
            self._zstd = zstandard.ZstdCompressor().compressobj()
        else:
            raise ValueError(coding)

    def chunk(self, data: bytes) -> bytes:
        if self.coding in ("gzip", "deflate"):
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self.coding == "br":
            return self._brotli.process(data) + self._brotli.flush()
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def end(self) -> bytes:
        if self.coding in ("gzip", "deflate"):
            return self._zlib.flush()
        if self.coding == "br":
            return self._brotli.finish()
        return self._zstd.flush()


def compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return zlib.compress(data, wbits=16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return brotli.compress(data)
    return zstandard.ZstdCompressor().compress(data)
