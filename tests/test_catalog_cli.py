"""`teamrelay coverage` and `teamrelay policy` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from teamrelay.catalog import cli
from teamrelay.catalog.catalog import Catalog, Operation, load_catalog

runner = CliRunner()


def test_coverage_json_lists_every_spec_operation_decided() -> None:
    result = runner.invoke(cli.app, ["coverage", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    operations = document["operations"]
    assert len(operations) == 288
    assert all(op["path"].startswith("/v1/") for op in operations)
    assert all(op["decision"] != "undecided" for op in operations)
    listed = {(op["method"], op["path"]): op["decision"] for op in operations}
    assert listed[("GET", "/v1/models")] == "sdk+proxy"
    assert listed[("GET", "/v1/evals")] == "blocked"
    assert listed[("POST", "/v1/responses?beta=true")] == "sdk+proxy"
    assert document["undecided"] == []
    counts = document["counts"]
    assert counts["families"]["organization"] == {"blocked": 106}
    assert sum(counts["surfaces"][k] for k in ("blocked", "sdk")) == 288
    assert {op["path"] for op in document["extra_operations"]} >= {"/v1/realtime"}


def test_coverage_table_summarises_surfaces_and_families() -> None:
    result = runner.invoke(cli.app, ["coverage"])
    assert result.exit_code == 0, result.output
    assert "288 spec operations" in result.output
    assert "organization" in result.output
    assert "undecided 0" in result.output


def test_coverage_fails_when_an_operation_is_undecided(monkeypatch: pytest.MonkeyPatch) -> None:
    novel = Operation("createGizmo", "POST", "/gizmos", "gizmos")
    bigger = Catalog([*load_catalog().operations, novel])
    monkeypatch.setattr(cli, "load_catalog", lambda: bigger)
    result = runner.invoke(cli.app, ["coverage", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["undecided"] == ["createGizmo"]
    assert runner.invoke(cli.app, ["coverage"]).exit_code == 1


def test_coverage_follows_the_policy_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[families]\nevals = "sdk"\n')
    monkeypatch.setenv("RELAY_POLICY_FILE", str(path))
    document = json.loads(runner.invoke(cli.app, ["coverage", "--json"]).output)
    listed = {(op["method"], op["path"]): op["decision"] for op in document["operations"]}
    assert listed[("GET", "/v1/evals")] == "sdk"


def test_invalid_policy_file_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[families]\nnope = "sdk"\n')
    monkeypatch.setenv("RELAY_POLICY_FILE", str(path))
    for command in (["coverage"], ["policy"]):
        result = runner.invoke(cli.app, command)
        assert result.exit_code == 2
        assert str(path) in result.output
        assert "'nope' is not a family" in result.output


def test_policy_prints_the_effective_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = runner.invoke(cli.app, ["policy"])
    assert result.exit_code == 0, result.output
    assert "built-in defaults" in result.output
    path = tmp_path / "policy.yaml"
    path.write_text("operations:\n  createEval: [sdk, proxy]\n")
    monkeypatch.setenv("RELAY_POLICY_FILE", str(path))
    result = runner.invoke(cli.app, ["policy", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["file"] == str(path)
    assert document["operations"]["createEval"]["decision"] == "sdk+proxy"
    assert document["operations"]["listEvals"]["decision"] == "blocked"
    table = runner.invoke(cli.app, ["policy"])
    assert "createEval" in table.output
