"""The Dockerfile and render.yaml start the relay the way the package expects.

No container engine runs in the test environment, so these read the files: the start
commands, the health check, and every environment variable against the settings' names.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import AliasChoices

from teamrelay.cli import app
from teamrelay.config import Settings

ROOT = Path(__file__).resolve().parents[1]
RENDER_OWN_VARIABLES = {"PYTHON_VERSION"}
SECRETS = {"OPENAI_API_KEY", "RELAY_KEYS"}


def _setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif alias is not None:
            names.add(str(alias))
    return names


def _serve_options(command: list[str]) -> dict[str, Any]:
    """The options `teamrelay serve` parses from a command line, without running it."""
    assert command[:2] == ["teamrelay", "serve"]
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    serve = group.commands["serve"]
    with serve.make_context("serve", command[2:]) as context:
        return {name: context.params[name] for name in ("host", "port")}


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    [web] = [s for s in blueprint["services"] if s["type"] == "web"]
    return dict(web)


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """Instruction → arguments of each occurrence, with continued lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.setdefault(keyword.upper(), []).append(" ".join(arguments.split()))
    return instructions


def test_render_builds_with_the_pinned_constraints_and_starts_teamrelay_serve(
    service: dict[str, Any],
) -> None:
    assert service["runtime"] == "python"
    assert service["buildCommand"] == "pip install -c constraints.txt ."
    assert service["startCommand"] == "teamrelay serve --host 0.0.0.0 --port $PORT"
    command = shlex.split(service["startCommand"].replace("$PORT", "10000"))
    assert _serve_options(command) == {"host": "0.0.0.0", "port": 10000}
    assert service["healthCheckPath"] == "/health"


def test_render_variables_are_the_relays_own_and_secrets_are_not_in_the_file(
    service: dict[str, Any],
) -> None:
    variables = {entry["key"]: entry for entry in service["envVars"]}
    assert set(variables) - RENDER_OWN_VARIABLES <= _setting_names()
    assert {"OPENAI_API_KEY", "RELAY_KEYS", "RELAY_DATABASE_URL", "RELAY_PUBLIC_URL"} <= set(
        variables
    )
    for name in SECRETS:
        assert variables[name] == {"key": name, "sync": False}


def test_render_keeps_the_sqlite_database_on_the_disk(service: dict[str, Any]) -> None:
    variables = {entry["key"]: entry for entry in service["envVars"]}
    database = variables["RELAY_DATABASE_URL"]["value"]
    mount = service["disk"]["mountPath"]
    assert database == f"sqlite+aiosqlite:///{mount}/teamrelay.db"
    Settings(_env_file=None, OPENAI_API_KEY="sk-test-upstream-0000", RELAY_DATABASE_URL=database)  # type: ignore[call-arg]


def test_dockerfile_runs_teamrelay_serve_as_a_non_root_user(
    dockerfile: dict[str, list[str]],
) -> None:
    assert dockerfile["FROM"] == ["python:3.11-slim"]
    assert any(run.startswith("pip install -c constraints.txt .") for run in dockerfile["RUN"])
    [user] = dockerfile["USER"]
    assert user not in {"root", "0"}
    assert any("useradd" in run and user in run for run in dockerfile["RUN"])
    assert dockerfile["EXPOSE"] == ["8000"]
    assert json.loads(dockerfile["CMD"][0]) == [
        "teamrelay",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert _serve_options(dockerfile_cmd := json.loads(dockerfile["CMD"][0])) == {
        "host": "0.0.0.0",
        "port": 8000,
    }
    assert dockerfile_cmd[0] == "teamrelay"


def test_dockerfile_healthcheck_probes_health_with_python(
    dockerfile: dict[str, list[str]],
) -> None:
    [healthcheck] = dockerfile["HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    program = json.loads(command)
    assert program[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8000/health" in program[2]
    compile(program[2], "HEALTHCHECK", "exec")


def test_dockerfile_keeps_data_in_a_volume_and_secrets_out_of_the_image(
    dockerfile: dict[str, list[str]],
) -> None:
    assert json.loads(dockerfile["VOLUME"][0]) == ["/app/data"]
    assert dockerfile["WORKDIR"] == ["/app"]
    settings: dict[str, str] = {}
    for env in dockerfile.get("ENV", []):
        for pair in shlex.split(env):
            name, _, value = pair.partition("=")
            if name in _setting_names():
                settings[name] = value
    # The only setting baked in: the default database's folder is the volume.
    assert settings == {"RELAY_DATA_DIR": "/app/data"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "data", "tests"} <= set(ignored)
