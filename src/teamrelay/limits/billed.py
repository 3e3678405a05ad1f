"""The dollars of a request a dollar budget reserves, read from the request itself.

Tokens are guessed in `estimate`; this adds what OpenAI bills by the request's shape: images
by model, count, size and quality; speech by the characters of its input; transcription and
translation by the audio's minutes, guessed from the upload's size; and one call of each
built-in tool a request offers. It also reads a form's model (the fields before the file
part), so an unpriced model is caught before upstream.

Only keys with a dollar cap come here, so the JSON parse and the form peek cost nothing to
other keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from teamrelay.body import RequestBody
from teamrelay.catalog import Operation
from teamrelay.errors import RelayError
from teamrelay.ledger.prices import Prices
from teamrelay.limits.estimate import Estimate
from teamrelay.multipart import PEEK_LIMIT
from teamrelay.tap.usage import CHAT_SEARCH, ToolCall

_NAME: Final = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
IMAGE_OPERATIONS: Final = frozenset({"createImage", "createImageEdit", "createImageVariation"})
SPEECH_OPERATIONS: Final = frozenset({"createSpeech"})
AUDIO_OPERATIONS: Final = frozenset({"createTranscription", "createTranslation"})
# OpenAI's documented default when `model` is absent: dall-e-2, unless a parameter only the
# GPT image models take is set (API reference, `model` of /images/generations and /edits).
DEFAULT_IMAGE_MODEL: Final = "dall-e-2"
GPT_IMAGE_MODEL: Final = "gpt-image-1"
_SHAPED: Final = IMAGE_OPERATIONS | SPEECH_OPERATIONS | AUDIO_OPERATIONS
RESPONSE_OPERATIONS: Final = frozenset({"createResponse", "beta_createResponse"})
# Their JSON bodies are small (a prompt, a text to speak): the ledger keeps them to price a row.
SHAPED_JSON_OPERATIONS: Final = frozenset({"createImage", "createImageEdit", "createSpeech"})
_TIER: Final = re.compile(rb'"service_tier"\s*:\s*"(flex|priority|default|auto|scale)"')
_GPT_IMAGE_ONLY: Final = frozenset(
    {"background", "moderation", "output_compression", "output_format", "partial_images"}
)
_GPT_IMAGE_QUALITIES: Final = frozenset({"low", "medium", "high"})
# The audio's length is unknown before the answer: the upload is taken as 64 kbit/s audio
# (8,000 bytes a second: twice the minutes of a 128 kbit/s MP3, a quarter of 16 kHz WAV), and
# an upload of unknown size as the API's 25 MB limit. Settled to this guess unless the answer's
# usage counts tokens (the tap does not yet pass a `duration` on).
AUDIO_BYTES_PER_SECOND: Final = 8_000
MAX_AUDIO_BYTES: Final = 25 * 2**20
# Speech priced per minute of audio (gpt-4o-mini-tts' estimate): about 150 words a minute.
CHARACTERS_PER_MINUTE: Final = 900


def unpriced_model(model: str) -> RelayError:
    return RelayError(
        403,
        f"The model '{model}' has no price in this relay's table, and this relay key has a "
        "dollar budget, so its cost could not be counted. Ask the operator to add it to "
        "RELAY_PRICES_FILE, or to set RELAY_UNPRICED=allow.",
        param="model",
        code="model_not_priced",
    )


async def form_fields(body: RequestBody) -> dict[str, bytes]:
    """The simple fields of a form before its first file part (peeked, not consumed).

    Admission reads forms strictly (`multipart`); this only needs the fields that price a
    request, so a form it cannot follow just gives fewer fields.
    """
    data = await body.peek(_reached_file, PEEK_LIMIT)
    first = data.split(b"\r\n", 1)[0]
    if not first.startswith(b"--") or len(first) < 3:
        return {}
    fields: dict[str, bytes] = {}
    for part in data.split(b"\r\n" + first)[:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        if b"filename" in head.lower():
            break
        name = _NAME.search(head)
        if name is not None:
            fields.setdefault(name.group(1).decode("latin-1"), value)
    return fields


def declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length among `headers` (lower-case names, as ASGI gives them)."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _reached_file(head: bytes) -> bool:
    return b"filename" in head.lower()


def priced(
    operation: Operation,
    body: bytes | RequestBody | None,
    guess: Estimate,
    prices: Prices,
    *,
    form: Mapping[str, bytes] | None = None,
    length: int | None = None,
) -> Estimate:
    """`guess` with its model and dollars completed from the request's JSON or form fields.

    Only operations priced by their shape have their JSON parsed (again: `estimate` read the
    model); for the others a `service_tier` is found in the bytes.
    """
    operation_id = operation.operation_id
    if operation_id not in _SHAPED:
        model = _text(form.get("model", b"").decode("utf-8", "replace")) if form else None
        found = _TIER.search(body) if isinstance(body, bytes) else None
        tier = found.group(1).decode() if found else None
        model = model or guess.model
        tools = prices.tool_cost(offered_tools(operation_id, body, model), model)
        if model is None and tier is None and not tools:
            return guess
        usd = prices.cost(model, guess.input_tokens, guess.output_tokens, 0, tier) or 0.0
        return guess._replace(model=model, usd=usd + tools, tier=tier, tools_usd=tools)
    fields = _fields(body, form)
    model, dollars = _shape(
        operation_id, fields, _text(fields.get("model")) or guess.model, length, prices
    )
    return guess._replace(model=model, usd=dollars or 0.0, billed=dollars)


def offered_tools(
    operation_id: str, body: bytes | RequestBody | None, model: str | None
) -> list[ToolCall]:
    """One call of each built-in tool a Responses request offers (the least it bills if the
    model uses it), or the one search of a Chat Completions search model: reserved, then
    settled to the calls the answer shows."""
    if operation_id == "createChatCompletion":
        return [ToolCall(CHAT_SEARCH, model)] if model and "search" in model else []
    if operation_id not in RESPONSE_OPERATIONS or not isinstance(body, bytes):
        return []
    if b'"tools"' not in body:
        return []
    calls = []
    for tool in _fields(body, None).get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            continue
        if kind.startswith("web_search_preview"):
            calls.append(ToolCall("web_search_preview"))  # the dearer, non-reasoning rate
        elif kind in ("web_search", "file_search"):
            calls.append(ToolCall(kind))
        elif kind in ("code_interpreter", "shell"):
            container = tool.get("container" if kind == "code_interpreter" else "environment")
            if kind == "shell" and not (
                isinstance(container, dict) and container.get("type") == "container_auto"
            ):
                continue  # a local shell, or a container made (and billed) beforehand
            limit = container.get("memory_limit") if isinstance(container, dict) else None
            calls.append(ToolCall("containers", limit if isinstance(limit, str) else None))
        elif kind == "image_generation":
            model_name = tool.get("model")
            calls.append(
                ToolCall(
                    kind,
                    model_name if isinstance(model_name, str) else None,
                    _text(tool.get("quality")),
                    _text(tool.get("size")),
                )
            )
    return calls


def shape_cost(operation_id: str | None, body: bytes, prices: Prices) -> float | None:
    """What a JSON request priced by its shape (images, speech) bills, for the ledger row of a
    key without a dollar cap; None for other operations."""
    if operation_id not in SHAPED_JSON_OPERATIONS:
        return None
    fields = _fields(body, None)
    return _shape(operation_id, fields, _text(fields.get("model")), None, prices)[1]


def _shape(
    operation_id: str,
    fields: Mapping[str, Any],
    model: str | None,
    length: int | None,
    prices: Prices,
) -> tuple[str | None, float | None]:
    """The model and the dollars of an operation priced by its shape."""
    if operation_id in IMAGE_OPERATIONS:
        model = model or _default_image_model(fields)
        count = _int(fields.get("n"), 1)
        quality, size = _text(fields.get("quality")), _text(fields.get("size"))
        return model, prices.images(model, count, quality, size)
    if operation_id in SPEECH_OPERATIONS:
        text = fields.get("input")
        characters = len(text) if isinstance(text, str) else 0
        dollars = prices.characters(model, characters)
        if dollars is None:
            dollars = prices.minutes(model, 60 * characters / CHARACTERS_PER_MINUTE)
        return model, dollars
    upload = length if length is not None else MAX_AUDIO_BYTES  # transcription, translation
    return model, prices.minutes(model, upload / AUDIO_BYTES_PER_SECOND)


def is_unpriced(model: str | None, prices: Prices) -> bool:
    return bool(model) and prices.lookup(model) is None


def _fields(body: bytes | RequestBody | None, form: Mapping[str, bytes] | None) -> dict[str, Any]:
    if form is not None:
        return {name: value.decode("utf-8", "replace") for name, value in form.items()}
    if isinstance(body, bytes) and body[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return {}
        return document if isinstance(document, dict) else {}
    return {}


def _default_image_model(fields: Mapping[str, Any]) -> str:
    if _GPT_IMAGE_ONLY & fields.keys() or fields.get("quality") in _GPT_IMAGE_QUALITIES:
        return GPT_IMAGE_MODEL
    return DEFAULT_IMAGE_MODEL


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _int(value: Any, default: int) -> int:
    if isinstance(value, str):
        value = int(value) if value.strip().isdigit() else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return default
    return min(value, 10)  # the API's maximum `n`
