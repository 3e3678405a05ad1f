"""Policy: every operation decided on purpose, defaults from DESIGN.md, overridable by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamrelay.catalog.catalog import Catalog, Operation, load_catalog
from teamrelay.catalog.policy import Decision, PolicyError, load_policy


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_decide_every_operation(catalog: Catalog) -> None:
    policy = load_policy(catalog, env={})
    assert policy.undecided == ()
    assert policy.path is None
    assert all(policy.decide(op).decided for op in catalog.operations)


@pytest.mark.parametrize("family", ["organization", "projects", "fine_tuning", "evals"])
def test_defaults_block_the_admin_families(catalog: Catalog, family: str) -> None:
    policy = load_policy(catalog, env={})
    ops = [op for op in catalog.operations if op.family == family]
    assert ops
    for op in ops:
        decision = policy.decide(op)
        assert decision.blocked
        assert decision.label == "blocked"
        assert decision.surfaces == ()


def test_defaults_serve_the_model_facing_api_to_sdk_clients(catalog: Catalog) -> None:
    policy = load_policy(catalog, env={})
    for op_id in ["createFile", "downloadFile", "createTranscription", "x-realtimeWebSocket"]:
        decision = policy.decide(catalog.by_id[op_id])
        assert decision == Decision(False, sdk=True, source=decision.source)
    assert policy.decide(catalog.by_id["createResponse"]).label == "sdk+proxy"
    assert policy.decide(catalog.by_id["listModels"]).label == "sdk+proxy"
    assert policy.decide(catalog.by_id["deleteModel"]).blocked


def test_default_proxy_list_is_json_only_and_conservative(catalog: Catalog) -> None:
    policy = load_policy(catalog, env={})
    proxied = policy.proxy_operations
    assert 10 <= len(proxied) <= 40
    assert all(op.json_only for op in proxied)
    assert {op.method for op in proxied} <= {"GET", "POST"}
    assert policy.actions_operations == ()


def test_beta_variants_follow_their_plain_operation(catalog: Catalog) -> None:
    policy = load_policy(catalog, env={})
    beta = policy.decide(catalog.by_id["beta_createResponse"])
    assert beta.label == policy.decide(catalog.by_id["createResponse"]).label
    assert beta.source == "variant of createResponse"


def test_toml_file_overrides_by_family_and_operation(catalog: Catalog, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "policy.toml",
        '[families]\nfine_tuning = "sdk"\n[operations]\ncreateEval = ["sdk", "proxy"]\n',
    )
    policy = load_policy(catalog, path)
    assert policy.decide(catalog.by_id["createFineTuningJob"]).label == "sdk"
    assert policy.decide(catalog.by_id["createEval"]).label == "sdk+proxy"
    assert policy.decide(catalog.by_id["listEvals"]).blocked
    assert policy.decide(catalog.by_id["createEval"]).source == f"{path}: [operations] createEval"


def test_yaml_file_named_by_the_environment_is_read(catalog: Catalog, tmp_path: Path) -> None:
    path = _write(
        tmp_path, "policy.yaml", "families:\n  files: blocked\noperations:\n  listFiles: sdk\n"
    )
    policy = load_policy(catalog, env={"RELAY_POLICY_FILE": str(path)})
    assert policy.path == path
    assert policy.decide(catalog.by_id["createFile"]).blocked
    assert policy.decide(catalog.by_id["listFiles"]).label == "sdk"


def test_file_family_rule_beats_a_default_operation_rule(catalog: Catalog, tmp_path: Path) -> None:
    path = _write(tmp_path, "p.toml", '[families]\nresponses = "blocked"\n')
    policy = load_policy(catalog, path)
    assert policy.decide(catalog.by_id["createResponse"]).blocked
    assert policy.decide(catalog.by_id["beta_createResponse"]).blocked


def test_family_proxy_reaches_only_json_operations(catalog: Catalog, tmp_path: Path) -> None:
    path = _write(tmp_path, "p.toml", '[families]\nfiles = ["sdk", "proxy", "actions"]\n')
    policy = load_policy(catalog, path)
    assert policy.decide(catalog.by_id["deleteFile"]).label == "sdk+proxy+actions"
    assert policy.decide(catalog.by_id["createFile"]).label == "sdk+actions"
    assert policy.decide(catalog.by_id["downloadFile"]).label == "sdk+actions"


def test_empty_policy_file_keeps_the_defaults(catalog: Catalog, tmp_path: Path) -> None:
    policy = load_policy(catalog, _write(tmp_path, "p.yaml", ""))
    assert policy.undecided == ()
    assert policy.decide(catalog.by_id["listEvals"]).blocked


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("p.toml", '[families]\nfine_tunin = "sdk"\n', "'fine_tunin' is not a family"),
        ("p.toml", '[operations]\ncreateEvil = "sdk"\n', "'createEvil' is not an operationId"),
        ("p.toml", '[families]\nfiles = "open"\n', "unknown surface 'open'"),
        ("p.toml", '[families]\nfiles = ["proxy"]\n', 'must include "sdk"'),
        ("p.toml", '[families]\nfiles = ["blocked", "sdk"]\n', "unknown surface 'blocked'"),
        ("p.toml", "[families]\nfiles = 3\n", "expected"),
        ("p.toml", "[families]\nfiles = []\n", "expected"),
        ("p.toml", '[operations]\ncreateFile = ["sdk", "proxy"]\n', "JSON-only"),
        ("p.toml", '[operations]\nbeta_createResponse = "sdk"\n', "follows its plain operation"),
        ("p.toml", '[surfaces]\nx = "sdk"\n', "unknown table 'surfaces'"),
        ("p.toml", "[families\n", "not valid TOML"),
        ("p.yaml", "families: [unclosed\n  x", "not valid YAML"),
        ("p.yaml", "- just\n- a list\n", "expected tables"),
        ("p.json", "{}", "must end in .toml, .yaml or .yml"),
    ],
)
def test_invalid_policy_file_gives_one_line_naming_the_file(
    catalog: Catalog, tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(catalog, path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert problem in message
    assert "\n" not in message


def test_missing_policy_file_is_a_clear_error(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(catalog, tmp_path / "absent.toml")


def test_a_family_no_rule_covers_is_undecided_and_blocked(catalog: Catalog) -> None:
    novel = Operation(
        "createGizmo", "POST", "/gizmos", "gizmos", request_types=("application/json",)
    )
    bigger = Catalog([*catalog.operations, novel])
    policy = load_policy(bigger, env={})
    decision = policy.decide(novel)
    assert not decision.decided
    assert decision.blocked
    assert decision.label == "undecided"
    assert policy.undecided == (novel,)
