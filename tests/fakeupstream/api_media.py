"""Audio and images: binary speech, transcripts of uploaded audio, tiny real PNGs."""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
import zlib
from typing import Any

from aiohttp import web

from .errors import missing, require
from .generation import count_words, delta_pieces
from .wire import Streamer, exchange_of, json_reply, sse_json_events

SPEECH_SIZE = 256 * 1024
SPEECH_CHUNKS = 8
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
routes = web.RouteTableDef()


def speech_bytes(text: str, size: int = SPEECH_SIZE) -> bytes:
    """The "audio" for `text`: pseudo-random bytes seeded by the text, so tests can compare."""
    return random.Random(hashlib.sha256(text.encode()).digest()).randbytes(size)


def transcript_text(filename: str, size: int) -> str:
    return f"Transcript of {filename}: {size} bytes of audio."


def tiny_png(seed: str, side: int = 8) -> bytes:
    """A valid one-colour PNG whose colour depends on `seed`."""
    colour = hashlib.sha256(seed.encode()).digest()[:3]
    rows = b"".join(b"\x00" + colour * side for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@routes.post("/v1/audio/speech")
async def speech(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    require(body, "model", "input", "voice")
    audio = speech_bytes(str(body["input"]))
    content_type = SPEECH_TYPES.get(str(body.get("response_format", "mp3")), "audio/mpeg")
    streamer = await Streamer.open(request, content_type=content_type)
    step = len(audio) // SPEECH_CHUNKS
    for start in range(0, len(audio), step):
        await streamer.write(audio[start : start + step])
    await streamer.finish()
    return streamer.response


async def _transcribe(request: web.Request, task: str) -> web.StreamResponse:
    body = exchange_of(request).body
    audio = body.file("file")
    if audio is None:
        raise missing("file")
    model = body.field("model")
    if not model:
        raise missing("model")
    text = transcript_text(audio.filename or "audio", audio.size)
    words = count_words(text)
    response_format = body.field("response_format") or "json"
    if body.field("stream") == "true" and task == "transcribe":
        events: list[tuple[str | None, Any]] = [
            (None, {"type": "transcript.text.delta", "delta": piece, "logprobs": []})
            for piece in delta_pieces(text.split())
        ]
        events.append((None, {"type": "transcript.text.done", "text": text, "logprobs": []}))
        return await sse_json_events(request, events, done=False)
    if response_format in ("text", "srt", "vtt"):
        return web.Response(text=text + "\n", content_type="text/plain")
    result: dict[str, Any] = {"text": text}
    if model == "whisper-1":
        result["usage"] = {"type": "duration", "seconds": max(1, audio.size // 16000)}
    else:
        result["usage"] = {
            "type": "tokens",
            "input_tokens": max(1, audio.size // 1000),
            "input_token_details": {"text_tokens": 0, "audio_tokens": max(1, audio.size // 1000)},
            "output_tokens": words,
            "total_tokens": max(1, audio.size // 1000) + words,
        }
    if response_format == "verbose_json":
        duration = max(1.0, audio.size / 16000)
        result |= {
            "task": task,
            "language": "english",
            "duration": duration,
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": duration,
                    "text": text,
                    "tokens": list(range(words)),
                    "temperature": 0.0,
                    "avg_logprob": -0.1,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.0,
                }
            ],
        }
    return json_reply(result)


@routes.post("/v1/audio/transcriptions")
async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, "transcribe")


@routes.post("/v1/audio/translations")
async def translations(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, "translate")


def _images(prompt: str, count: int, model: str) -> dict[str, Any]:
    data = [
        {"b64_json": base64.b64encode(tiny_png(f"{prompt}:{index}")).decode()}
        for index in range(count)
    ]
    result: dict[str, Any] = {"created": int(time.time()), "data": data}
    if model.startswith("gpt-image"):
        prompt_tokens = max(1, count_words(prompt))
        result |= {
            "background": "opaque",
            "output_format": "png",
            "quality": "low",
            "size": "1024x1024",
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": 272 * count,
                "total_tokens": prompt_tokens + 272 * count,
            },
        }
    return result


@routes.post("/v1/images/generations")
async def image_generations(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body.json()
    require(body, "prompt")
    count = int(body.get("n") or 1)
    return json_reply(_images(str(body["prompt"]), count, str(body.get("model", "dall-e-2"))))


@routes.post("/v1/images/edits")
async def image_edits(request: web.Request) -> web.StreamResponse:
    body = exchange_of(request).body
    prompt = body.field("prompt")
    if prompt is None:
        raise missing("prompt")
    count = int(body.field("n") or 1)
    return json_reply(_images(prompt, count, body.field("model") or "dall-e-2"))
