"""Per-model prices, and the estimated cost of one request.

The shipped table (`teamrelay/data/prices.toml`) is a snapshot of OpenAI's public price list,
each entry with the date it was checked and where; an operator's file named by
RELAY_PRICES_FILE is laid over it model by model, so a new model or a negotiated price needs no
release. Costs are estimates: the invoice is the truth.

Most models bill tokens (`ModelPrice.input`, `cached_input`, `output`, USD per 1M). Some bill
the request's shape instead: an image by model, size and quality (`per_image`), speech by the
characters of its input (`per_million_characters`), audio by its minutes (`per_minute`).
Built-in tools (`[tools]`, `ToolPrice`) bill per call or per container, on top of the tokens.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from teamrelay.tap.usage import CHAT_SEARCH, IMAGE_TOOL_MODEL, ToolCall

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_PER_TOKEN = 1e-6

# The sections of a price file; `models` is the older spelling of `text`.
KINDS: Final = ("text", "image", "speech", "transcription", "embedding", "realtime")
_SECTIONS: Final = {"models": "text", **{kind: kind for kind in KINDS}}
_TOKEN_FIELDS: Final = ("input", "cached_input", "output")
_MODALITY_FIELDS: Final = ("image_input", "image_output", "audio_input", "audio_output")
_UNIT_FIELDS: Final = ("per_million_characters", "per_minute")
_TIER_FIELDS: Final = ("batch", "flex", "priority")
_TEXT_FIELDS: Final = ("checked", "source", "default_size", "default_quality", "note")
_NUMBERS: Final = (*_TOKEN_FIELDS, *_MODALITY_FIELDS, *_UNIT_FIELDS)
_FIELDS: Final = {*_NUMBERS, *_TIER_FIELDS, *_TEXT_FIELDS, "kind", "per_image"}
# A usage total that does not split its tokens by modality is priced at the modality the
# model is for: a transcription's input is audio, speech's output is audio, an image model's
# output is image tokens, a realtime session is mostly voice (dearer than text: a dollar cap
# errs towards refusing).
_UNSPLIT: Final = {
    "transcription": ("audio_input", None),
    "speech": (None, "audio_output"),
    "image": (None, "image_output"),
    "realtime": ("audio_input", "audio_output"),
}


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per 1M tokens, per image, per 1M characters or per minute.

    `batch`, `flex` and `priority` multiply the token prices for those service tiers;
    `per_image` maps `"quality/size"` (`"hd/1024x1792"`) to dollars. `checked` and `source`
    say where the figures were read and when; they take no part in comparisons.
    """

    input: float | None = None
    cached_input: float | None = None
    output: float | None = None
    kind: str = "text"
    image_input: float | None = None
    image_output: float | None = None
    audio_input: float | None = None
    audio_output: float | None = None
    per_image: Mapping[str, float] = field(default_factory=dict)
    default_size: str | None = None
    default_quality: str | None = None
    per_million_characters: float | None = None
    per_minute: float | None = None
    batch: float | None = None
    flex: float | None = None
    priority: float | None = None
    checked: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)
    note: str | None = field(default=None, compare=False)

    @property
    def bills_tokens(self) -> bool:
        return self.input is not None or self.output is not None

    def token_prices(self) -> tuple[float, float, float]:
        """Input, cached input and output per 1M tokens for a usage total not split by
        modality."""
        input_field, output_field = _UNSPLIT.get(self.kind, (None, None))
        base_input = self.input or 0.0
        input_price = _first(getattr(self, input_field) if input_field else None, base_input)
        output_price = _first(getattr(self, output_field) if output_field else None, self.output)
        cached = self.cached_input if self.cached_input is not None else input_price
        return input_price, min(cached, input_price), output_price

    def split_cost(self, uncached: int, output: int, audio: tuple[int, int]) -> float:
        """Uncached input and output tokens, `audio` of them audio, at their own rates (per
        1M). Cached input is not split here: the tokens the answer calls audio are taken as
        uncached first, which errs towards the dearer rate."""
        text_in = _first(self.input, self.audio_input)
        text_out = _first(self.output, self.audio_output)
        audio_in = min(max(audio[0], 0), uncached)
        audio_out = min(max(audio[1], 0), output)
        return (
            (uncached - audio_in) * text_in
            + audio_in * _first(self.audio_input, text_in)
            + (output - audio_out) * text_out
            + audio_out * _first(self.audio_output, text_out)
        )

    def image_price(self, quality: str | None, size: str | None) -> float | None:
        """One image's price; an absent or `auto` quality or size takes the model's default,
        else the dearest listed that matches the rest."""
        if not self.per_image:
            return None
        quality = _chosen(quality, self.default_quality)
        size = _chosen(size, self.default_size)
        exact = self.per_image.get(f"{quality}/{size}")
        if exact is not None:
            return exact
        matching = [
            price
            for key, price in self.per_image.items()
            if (quality is None or key.split("/")[0] == quality)
            and (size is None or key.split("/")[-1] == size)
        ]
        return max(matching or self.per_image.values())

    def described(self) -> str:
        """The prices in one line, for `teamrelay prices`."""
        parts = []
        for name in (*_TOKEN_FIELDS, *_MODALITY_FIELDS):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name.replace('_', ' ')} ${value:g}/1M")
        if self.per_image:
            parts.append(", ".join(f"{k} ${v:g}" for k, v in self.per_image.items()) + " /image")
        if self.per_million_characters is not None:
            parts.append(f"${self.per_million_characters:g}/1M characters")
        if self.per_minute is not None:
            parts.append(f"${self.per_minute:g}/minute")
        for tier in _TIER_FIELDS:
            value = getattr(self, tier)
            if value is not None:
                parts.append(f"{tier} x{value:g}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"kind": self.kind}
        for name in (*_NUMBERS, *_TIER_FIELDS, *_TEXT_FIELDS):
            value = getattr(self, name)
            if value is not None:
                shown[name] = value
        if self.per_image:
            shown["per_image"] = dict(self.per_image)
        return shown


def _first(value: float | None, fallback: float | None) -> float:
    return value if value is not None else (fallback or 0.0)


def _chosen(value: str | None, default: str | None) -> str | None:
    return default if value in (None, "", "auto") else value


@dataclass(frozen=True, slots=True)
class ToolPrice:
    """A built-in tool's price beyond tokens: US dollars per 1k calls, or per container by
    its memory limit (`"1g"`). `reasoning_per_1k_calls` is for the calls a reasoning model
    makes (web_search_preview); `chat_models` are Chat Completions models that make one such
    call per answer (the search models). `per_gb_day` (file storage) is shown, not counted."""

    per_1k_calls: float | None = None
    reasoning_per_1k_calls: float | None = None
    per_container: Mapping[str, float] = field(default_factory=dict)
    per_gb_day: float | None = None
    chat_models: tuple[str, ...] = ()
    fixed_input_tokens: Mapping[str, int] = field(default_factory=dict)
    checked: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)
    note: str | None = field(default=None, compare=False)

    def per_call(self, option: str | None) -> float:
        """One call (or container): `option` is a container's memory limit, or `reasoning`;
        a memory limit not listed takes the dearest container."""
        if self.per_container:
            found = self.per_container.get(option or DEFAULT_CONTAINER)
            return found if found is not None else max(self.per_container.values())
        if option == REASONING and self.reasoning_per_1k_calls is not None:
            return self.reasoning_per_1k_calls / 1000
        return (self.per_1k_calls or 0.0) / 1000

    def fixed_input_for(self, model: str | None) -> int:
        """The input tokens a call of this tool bills at `model`'s rate, beyond its usage."""
        if not model or not self.fixed_input_tokens:
            return 0
        for name, tokens in self.fixed_input_tokens.items():
            if _names(model, name):
                return tokens
        return 0

    def bills_chat(self, model: str | None) -> bool:
        if not model:
            return False
        return any(_names(model, name) for name in self.chat_models)

    def described(self) -> str:
        parts = []
        if self.per_1k_calls is not None:
            parts.append(f"${self.per_1k_calls:g}/1k calls")
        if self.reasoning_per_1k_calls is not None:
            parts.append(f"reasoning models ${self.reasoning_per_1k_calls:g}/1k calls")
        if self.per_container:
            each = ", ".join(f"{k} ${v:g}" for k, v in self.per_container.items())
            parts.append(f"{each} /container")
        if self.per_gb_day is not None:
            parts.append(f"storage ${self.per_gb_day:g}/GB-day (not counted)")
        if self.chat_models:
            parts.append(f"one call per answer of {', '.join(self.chat_models)}")
        for name, tokens in self.fixed_input_tokens.items():
            parts.append(f"{tokens:,} input tokens a call with {name}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for name in (*_TOOL_NUMBERS, *_TEXT_FIELDS):
            value = getattr(self, name, None)
            if value is not None:
                shown[name] = value
        if self.per_container:
            shown["per_container"] = dict(self.per_container)
        if self.chat_models:
            shown["chat_models"] = list(self.chat_models)
        if self.fixed_input_tokens:
            shown["fixed_input_tokens"] = dict(self.fixed_input_tokens)
        return shown


def _names(model: str, name: str) -> bool:
    """`model` is `name` or one of its snapshots (`gpt-4.1-mini-2025-04-14`)."""
    return model == name or (model.startswith(name + "-") and bool(_SNAPSHOT.search(model)))


DEFAULT_CONTAINER: Final = "1g"
REASONING: Final = "reasoning"
_TOOL_NUMBERS: Final = ("per_1k_calls", "reasoning_per_1k_calls", "per_gb_day")
_TOOL_FIELDS: Final = {
    *_TOOL_NUMBERS,
    "per_container",
    "chat_models",
    "fixed_input_tokens",
    "checked",
    "source",
    "note",
}


class PricesError(ValueError):
    """A price file that cannot be used; `str()` names the file and the entry."""


class Prices:
    def __init__(
        self, table: Mapping[str, ModelPrice], tools: Mapping[str, ToolPrice] | None = None
    ) -> None:
        self._table = dict(table)
        self.tools = dict(tools or {})
        self._names = sorted(self._table, key=len, reverse=True)
        self.lookup = lru_cache(maxsize=4096)(self._lookup)

    @property
    def table(self) -> Mapping[str, ModelPrice]:
        return self._table

    def _lookup(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        for candidate in (model, _SNAPSHOT.sub("", model)):
            if candidate in self._table:
                return self._table[candidate]
        for name in self._names:
            if model.startswith(name + "-"):
                return self._table[name]
        return None

    def cost(
        self,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None,
        tier: str | None = None,
        audio: tuple[int, int] | None = None,
    ) -> float | None:
        """None when nothing is known to price: no tokens reported, or a model not listed (or
        listed with no token prices). `tier` is the answer's `service_tier` (`flex`,
        `priority`); `audio` the input and output tokens that were audio, when the answer
        splits them, so text and audio take their own rates."""
        if input_tokens is None and output_tokens is None:
            return None
        price = self.lookup(model)
        if price is None or not price.bills_tokens:
            return None
        cached = min(cached_tokens or 0, input_tokens or 0)
        uncached = (input_tokens or 0) - cached
        output = output_tokens or 0
        if audio is None:
            input_price, cached_price, output_price = price.token_prices()
            dollars = uncached * input_price + cached * cached_price + output * output_price
        else:
            dollars = cached * price.token_prices()[1] + price.split_cost(uncached, output, audio)
        return dollars * _PER_TOKEN * tier_factor(price, tier)

    def tool_cost(self, calls: Sequence[ToolCall], model: str | None = None) -> float:
        """What built-in tool calls bill beyond the answer's tokens; a tool without a price
        costs $0. `model` is the answer's: some bill a fixed block of input tokens a call."""
        dollars = 0.0
        for call in calls:
            if call.tool == "image_generation":
                model = call.option or IMAGE_TOOL_MODEL
                dollars += self.images(model, 1, call.quality, call.size) or 0.0
                continue
            if call.tool == CHAT_SEARCH:
                tool = next((t for t in self.tools.values() if t.bills_chat(call.option)), None)
            else:
                tool = self.tools.get(call.tool)
            if tool is not None:
                dollars += tool.per_call(call.option) + self._fixed_input(tool, model)
        return dollars

    def _fixed_input(self, tool: ToolPrice, model: str | None) -> float:
        tokens = tool.fixed_input_for(model)
        if not tokens:
            return 0.0
        return self.cost(model, tokens, 0, 0) or 0.0

    def images(
        self, model: str | None, n: int, quality: str | None, size: str | None
    ) -> float | None:
        """`n` images, or None for a model without per-image prices."""
        price = self.lookup(model)
        each = price.image_price(quality, size) if price is not None else None
        return n * each if each is not None else None

    def characters(self, model: str | None, characters: int) -> float | None:
        price = self.lookup(model)
        if price is None or price.per_million_characters is None:
            return None
        return characters * price.per_million_characters * _PER_TOKEN

    def minutes(self, model: str | None, seconds: float) -> float | None:
        price = self.lookup(model)
        if price is None or price.per_minute is None:
            return None
        return seconds / 60 * price.per_minute


def tier_factor(price: ModelPrice, tier: str | None) -> float:
    if tier == "flex" and price.flex is not None:
        return price.flex
    if tier == "priority" and price.priority is not None:
        return price.priority
    return 1.0


def transcription_seconds(answer: object) -> float | None:
    """The audio's length an answer reports: `duration` (whisper-1's verbose_json) or a
    `usage` of `{"type": "duration", "seconds": ...}` (the newer transcription models)."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        seconds = usage.get("seconds")
    else:
        seconds = answer.get("duration")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return None
    return float(seconds)


def parse_prices(text: str, source: str) -> dict[str, ModelPrice]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"{source}: {exc}") from None
    unknown = set(document) - set(_SECTIONS) - {"tools"}
    if unknown:
        known = ", ".join(["models", *KINDS])
        raise PricesError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}: {known}")
    table: dict[str, ModelPrice] = {}
    for section, kind in _SECTIONS.items():
        if section not in document:
            continue
        part = document[section]
        if not isinstance(part, dict):
            raise PricesError(f"{source}: [{section}] must be a table")
        # `[text]` holds `models` and the section's defaults; `[models]` holds models only.
        models = part if section == "models" else part.get("models", {})
        defaults = {} if section == "models" else {k: v for k, v in part.items() if k != "models"}
        if not isinstance(models, dict):
            raise PricesError(f"{source}: [{section}.models] must be a table")
        for name, entry in models.items():
            where = f"{source}: {section}{'' if section == 'models' else '.models'}.{name}"
            if not isinstance(entry, dict):
                raise PricesError(f"{where} must be a table of prices")
            table[name] = _model_price({"kind": kind, **defaults, **entry}, where)
    return table


def _model_price(entry: dict[str, Any], where: str) -> ModelPrice:
    unknown = set(entry) - _FIELDS
    if unknown:
        raise PricesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = entry["kind"]
    if kind not in KINDS:
        raise PricesError(f"{where}.kind must be one of {', '.join(KINDS)}")
    values: dict[str, Any] = {"kind": kind}
    for name in (*_NUMBERS, *_TIER_FIELDS):
        if name in entry:
            values[name] = _number(entry[name], f"{where}.{name}")
    for name in _TEXT_FIELDS:
        if name in entry:
            if not isinstance(entry[name], str):
                raise PricesError(f"{where}.{name} must be a string")
            values[name] = entry[name]
    if "per_image" in entry:
        values["per_image"] = _per_image(entry["per_image"], f"{where}.per_image")
    if kind in ("text", "embedding"):
        for name in ("input", "output"):
            if name not in values:
                raise PricesError(f"{where}.{name} must be a number >= 0 (USD per 1M tokens)")
    elif not any(name in values for name in (*_NUMBERS, "per_image")):
        raise PricesError(
            f"{where}: give input and output (USD per 1M tokens), per_image, "
            "per_million_characters or per_minute"
        )
    if "input" in values:
        values.setdefault("cached_input", values["input"])
    return ModelPrice(**values)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PricesError(f"{where} must be a number >= 0 (US dollars)")
    return float(value)


def _per_image(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise PricesError(f'{where} must be a table like {{ "standard/1024x1024" = 0.04 }}')
    prices = {}
    for key, price in value.items():
        if key.count("/") != 1:
            raise PricesError(f'{where}: "{key}" must be "quality/size"')
        prices[key] = _number(price, f"{where}.{key}")
    return prices


def parse_tools(text: str, source: str) -> dict[str, ToolPrice]:
    """The `[tools]` section: a table per tool, laid over the section's `checked`/`source`."""
    section = tomllib.loads(text).get("tools", {})
    if not isinstance(section, dict):
        raise PricesError(f"{source}: [tools] must be a table")
    defaults = {k: v for k, v in section.items() if not isinstance(v, dict)}
    return {
        name: _tool_price({**defaults, **entry}, f"{source}: tools.{name}")
        for name, entry in section.items()
        if isinstance(entry, dict)
    }


def _tool_price(entry: dict[str, Any], where: str) -> ToolPrice:
    unknown = set(entry) - _TOOL_FIELDS
    if unknown:
        raise PricesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in _TOOL_NUMBERS:
        if name in entry:
            values[name] = _number(entry[name], f"{where}.{name}")
    for name in ("checked", "source", "note"):
        if name in entry:
            if not isinstance(entry[name], str):
                raise PricesError(f"{where}.{name} must be a string")
            values[name] = entry[name]
    if "per_container" in entry:
        table = entry["per_container"]
        if not isinstance(table, dict) or not table:
            raise PricesError(f'{where}.per_container must be a table like {{ "1g" = 0.03 }}')
        values["per_container"] = {
            str(k): _number(v, f"{where}.per_container.{k}") for k, v in table.items()
        }
    if "chat_models" in entry:
        models = entry["chat_models"]
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise PricesError(f"{where}.chat_models must be a list of model names")
        values["chat_models"] = tuple(models)
    if "fixed_input_tokens" in entry:
        table = entry["fixed_input_tokens"]
        if not isinstance(table, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in table.values()
        ):
            raise PricesError(f'{where}.fixed_input_tokens must be like {{ "gpt-4o-mini" = 8000 }}')
        values["fixed_input_tokens"] = dict(table)
    if not ({"per_1k_calls", "per_container"} & values.keys()):
        raise PricesError(f"{where}: give per_1k_calls or per_container (US dollars)")
    return ToolPrice(**values)


def load_prices(override: Path | str | None = None) -> Prices:
    """The shipped prices, overlaid with `override` or else the file RELAY_PRICES_FILE names."""
    shipped_text = (resources.files("teamrelay") / "data" / "prices.toml").read_text("utf-8")
    table = parse_prices(shipped_text, "teamrelay/data/prices.toml")
    tools = parse_tools(shipped_text, "teamrelay/data/prices.toml")
    path = override if override is not None else os.environ.get("RELAY_PRICES_FILE") or None
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PricesError(f"RELAY_PRICES_FILE: cannot read {path}: {exc.strerror}") from None
        where = f"RELAY_PRICES_FILE ({path})"
        table.update(parse_prices(text, where))
        tools.update(parse_tools(text, where))
    return Prices(table, tools)
