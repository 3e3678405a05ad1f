"""Which surfaces each operation is served on, decided ahead of time for every operation.

Rules come from `data/policy.default.toml`, then from the file named by `RELAY_POLICY_FILE`
(TOML or YAML). Precedence, strongest first: file operation, file family, default operation,
default family. A `?beta=true` variant shares the decision of its plain operation, because
requests are routed by path alone.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import yaml

from teamrelay.catalog.catalog import Catalog, Operation

POLICY_ENV: Final = "RELAY_POLICY_FILE"
SURFACES: Final = ("sdk", "proxy", "actions")
_TABLES: Final = ("families", "operations")


class PolicyError(ValueError):
    """A policy file the relay refuses to start with; the message is one line."""


@dataclass(frozen=True, slots=True)
class Decision:
    blocked: bool
    sdk: bool = False
    proxy: bool = False
    actions: bool = False
    source: str = ""

    @property
    def decided(self) -> bool:
        return self.source != "undecided"

    @property
    def surfaces(self) -> tuple[str, ...]:
        flags = (self.sdk, self.proxy, self.actions)
        return tuple(name for name, on in zip(SURFACES, flags, strict=True) if on)

    @property
    def label(self) -> str:
        if not self.decided:
            return "undecided"
        return "blocked" if self.blocked else "+".join(self.surfaces)


UNDECIDED: Final = Decision(blocked=True, source="undecided")


@dataclass(frozen=True, slots=True)
class _Rule:
    surfaces: frozenset[str]
    where: str

    @property
    def blocked(self) -> bool:
        return not self.surfaces


def _parse_rule(value: Any, where: str) -> _Rule:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise PolicyError(f'{where}: expected "blocked", "sdk" or a list of surfaces')
    chosen = set(names)
    if chosen == {"blocked"}:
        return _Rule(frozenset(), where)
    unknown = chosen - set(SURFACES)
    if unknown:
        raise PolicyError(
            f"{where}: unknown surface {sorted(unknown)[0]!r} "
            f'(use "blocked" or any of {", ".join(SURFACES)})'
        )
    if "sdk" not in chosen:
        raise PolicyError(f'{where}: an allowed operation must include "sdk"')
    return _Rule(frozenset(chosen), where)


@dataclass(frozen=True, slots=True)
class _RuleSet:
    families: dict[str, _Rule]
    operations: dict[str, _Rule]


def _parse_rules(document: Any, origin: str, catalog: Catalog) -> _RuleSet:
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise PolicyError(f"{origin}: expected tables [families] and [operations]")
    extra = set(document) - set(_TABLES)
    if extra:
        raise PolicyError(
            f"{origin}: unknown table {sorted(extra)[0]!r} (use families, operations)"
        )
    known_families = {op.family for op in catalog.operations}
    families: dict[str, _Rule] = {}
    for name, value in (document.get("families") or {}).items():
        if name not in known_families:
            raise PolicyError(f"{origin}: [families] {name!r} is not a family of the catalog")
        families[name] = _parse_rule(value, f"{origin}: [families] {name}")
    operations: dict[str, _Rule] = {}
    for op_id, value in (document.get("operations") or {}).items():
        op = catalog.by_id.get(op_id)
        if op is None:
            raise PolicyError(f"{origin}: [operations] {op_id!r} is not an operationId")
        where = f"{origin}: [operations] {op_id}"
        if op.variant is not None:
            raise PolicyError(f"{where}: a ?{op.variant} variant follows its plain operation")
        rule = _parse_rule(value, where)
        if "proxy" in rule.surfaces and not op.json_only:
            raise PolicyError(f"{where}: proxy carries JSON-only operations; this one is not")
        operations[op_id] = rule
    return _RuleSet(families, operations)


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file ({exc.strerror})") from exc
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        problem = " ".join(str(exc).split())
        raise PolicyError(f"{path}: not valid {path.suffix[1:].upper()}: {problem}") from exc
    raise PolicyError(f"{path}: policy file must end in .toml, .yaml or .yml")


def _decision(op: Operation, rule: _Rule) -> Decision:
    if rule.blocked:
        return Decision(blocked=True, source=rule.where)
    return Decision(
        blocked=False,
        sdk=True,
        proxy="proxy" in rule.surfaces and op.json_only,
        actions="actions" in rule.surfaces,
        source=rule.where,
    )


class Policy:
    """A decision for every operation of a catalog, computed once; `decide` is a dict lookup."""

    def __init__(self, catalog: Catalog, layers: Iterable[_RuleSet], path: Path | None) -> None:
        self.catalog = catalog
        self.path = path
        stack = list(layers)[::-1]
        self._stack = stack
        self._by_id: dict[str, Decision] = {}
        plain: dict[tuple[str, str], Operation] = {}
        for op in catalog.operations:
            if op.variant is None:
                plain[(op.method, op.path)] = op
                self._by_id[op.operation_id] = self._decide(op, stack)
        for op in catalog.operations:
            if op.variant is not None:
                base = plain.get((op.method, op.path))
                if base is None:
                    self._by_id[op.operation_id] = UNDECIDED
                else:
                    decision = self._by_id[base.operation_id]
                    source = f"variant of {base.operation_id}"
                    self._by_id[op.operation_id] = _with_source(decision, source)

    @staticmethod
    def _decide(op: Operation, stack: list[_RuleSet]) -> Decision:
        for layer in stack:
            rule = layer.operations.get(op.operation_id)
            if rule is None:
                rule = layer.families.get(op.family)
            if rule is not None:
                return _decision(op, rule)
        return UNDECIDED

    def decide(self, op: Operation) -> Decision:
        return self._by_id[op.operation_id]

    def family_blocked(self, family: str) -> bool:
        """For paths the catalog does not know: under a blocked family they are refused as such."""
        for layer in self._stack:
            rule = layer.families.get(family)
            if rule is not None:
                return rule.blocked
        return False

    def _routed(self, surface: str) -> tuple[Operation, ...]:
        return tuple(
            op
            for op in self.catalog.operations
            if op.variant is None and getattr(self._by_id[op.operation_id], surface)
        )

    @property
    def proxy_operations(self) -> tuple[Operation, ...]:
        """Routable operations with the `proxy` surface (variants share their plain route)."""
        return self._routed("proxy")

    @property
    def actions_operations(self) -> tuple[Operation, ...]:
        """The hook for the Actions schema: routable operations with the `actions` surface."""
        return self._routed("actions")

    @property
    def undecided(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.catalog.operations if not self.decide(op).decided)


def _with_source(decision: Decision, source: str) -> Decision:
    return Decision(decision.blocked, decision.sdk, decision.proxy, decision.actions, source)


def default_rules(catalog: Catalog) -> _RuleSet:
    text = files("teamrelay").joinpath("data/policy.default.toml").read_text(encoding="utf-8")
    return _parse_rules(tomllib.loads(text), "default", catalog)


def load_policy(
    catalog: Catalog, path: str | Path | None = None, env: Mapping[str, str] = os.environ
) -> Policy:
    """Defaults plus the file at `path` (or `$RELAY_POLICY_FILE`); raises `PolicyError`."""
    if path is None:
        path = env.get(POLICY_ENV) or None
    layers = [default_rules(catalog)]
    if path is None:
        return Policy(catalog, layers, None)
    file_path = Path(path)
    layers.append(_parse_rules(_read_document(file_path), str(file_path), catalog))
    return Policy(catalog, layers, file_path)
