"""Runs the gates in order against one deployment and collects their outcomes."""

from __future__ import annotations

from collections.abc import Callable

from teamrelay.check.gates import GATES
from teamrelay.check.probe import Outcome, Probe, root_of, run_gate


def gate_names(*, slow: bool) -> list[str]:
    return [gate.name for gate in GATES if slow or not gate.slow]


def run_checks(
    base_url: str,
    key: str,
    *,
    slow: bool = False,
    model: str | None = None,
    timeout: float = 30.0,
    batch_wait: float = 900.0,
    on_gate: Callable[[str], None] = lambda name: None,
) -> list[Outcome]:
    """Every gate's outcome, in order; a gate that fails does not stop the ones after it."""
    probe = Probe(root_of(base_url), key, timeout=timeout, batch_wait=batch_wait, model=model)
    outcomes = []
    try:
        for gate in GATES:
            if gate.slow and not slow:
                outcomes.append(Outcome(gate.name, "skip", "runs with --slow", 0.0))
                continue
            on_gate(gate.name)
            outcomes.append(run_gate(gate.name, gate.run, probe))
    finally:
        probe.close()
    return outcomes
