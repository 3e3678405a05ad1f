"""Per-model token prices, and the estimated cost of one request.

The shipped table (`teamrelay/data/prices.toml`) is a snapshot of a public price list; an
operator's file named by RELAY_PRICES_FILE is laid over it model by model, so a new model or a
negotiated price needs no release. Costs are estimates: the invoice is the truth.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_PER_TOKEN = 1e-6


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per 1M tokens."""

    input: float
    cached_input: float
    output: float


class PricesError(ValueError):
    """A price file that cannot be used; `str()` names the file and the entry."""


class Prices:
    def __init__(self, table: Mapping[str, ModelPrice]) -> None:
        self._table = dict(table)
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
    ) -> float | None:
        """None when nothing is known to price: no tokens reported, or a model not listed."""
        if input_tokens is None and output_tokens is None:
            return None
        price = self.lookup(model)
        if price is None:
            return None
        cached = min(cached_tokens or 0, input_tokens or 0)
        uncached = (input_tokens or 0) - cached
        output = output_tokens or 0
        dollars = uncached * price.input + cached * price.cached_input + output * price.output
        return dollars * _PER_TOKEN


def parse_prices(text: str, source: str) -> dict[str, ModelPrice]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"{source}: {exc}") from None
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise PricesError(f"{source}: [models] must be a table")
    return {name: _model_price(entry, f"{source}: models.{name}") for name, entry in models.items()}


def _model_price(entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict):
        raise PricesError(f"{where} must be a table with input and output")
    unknown = set(entry) - {"input", "cached_input", "output"}
    if unknown:
        raise PricesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, float] = {}
    for field in ("input", "cached_input", "output"):
        value = entry.get(field, entry.get("input") if field == "cached_input" else None)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PricesError(f"{where}.{field} must be a number >= 0 (USD per 1M tokens)")
        values[field] = float(value)
    return ModelPrice(**values)


def load_prices(override: Path | str | None = None) -> Prices:
    """The shipped prices, overlaid with `override` or else the file RELAY_PRICES_FILE names."""
    shipped = resources.files("teamrelay") / "data" / "prices.toml"
    table = parse_prices(shipped.read_text(encoding="utf-8"), "teamrelay/data/prices.toml")
    path = override if override is not None else os.environ.get("RELAY_PRICES_FILE") or None
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PricesError(f"RELAY_PRICES_FILE: cannot read {path}: {exc.strerror}") from None
        table.update(parse_prices(text, f"RELAY_PRICES_FILE ({path})"))
    return Prices(table)
