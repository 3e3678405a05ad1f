"""An operator runs `teamrelay` commands wherever their shell is: every command reads the
settings `serve` reads (the environment, then `.env`), the default SQLite database does not
move with the working directory, and a database that cannot be reached is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai

from fakeupstream import FakeUpstream
from servers import relay_process

TEAMRELAY = str(Path(sys.executable).parent / "teamrelay")


def _run(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RELAY_", "OPENAI_", "XDG_"))
    }
    env |= {"HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [TEAMRELAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _secret(created: subprocess.CompletedProcess[str]) -> str:
    assert created.returncode == 0, created.stderr
    return next(line for line in created.stdout.split() if line.startswith("tr-"))


def test_keys_made_with_settings_in_dotenv_are_the_ones_the_server_accepts(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    database = f"sqlite+aiosqlite:///{tmp_path}/team/relay.db"
    (project / ".env").write_text(f"RELAY_DATABASE_URL={database}\n")
    secret = _secret(_run(project, home, "keys", "create", "--name", "alice"))
    listed = _run(project, home, "keys", "list")
    assert "alice" in listed.stdout, listed.stdout + listed.stderr
    info = _run(project, home, "db", "info")
    assert f"database: {database}" in info.stdout, info.stdout + info.stderr
    with (
        relay_process(upstream.base_url, RELAY_DATABASE_URL=database) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secret, max_retries=0) as sdk,
    ):
        assert sdk.models.list().data


def test_the_default_database_is_the_same_from_every_directory(tmp_path: Path) -> None:
    home, here, there = tmp_path / "home", tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    _secret(_run(here, home, "keys", "create", "--name", "bob"))
    listed = _run(there, home, "keys", "list")
    assert "bob" in listed.stdout, listed.stdout + listed.stderr
    info = _run(there, home, "db", "info")
    assert f"data directory: {home}/.local/share/teamrelay" in info.stdout, info.stdout
    assert not (here / "data").exists()
    assert not (there / "data").exists()


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text(
        "RELAY_DATABASE_URL=postgresql+asyncpg://relay:hunter2@127.0.0.1:1/relay\n"
    )
    for command in (["keys", "list"], ["keys", "create", "--name", "x"], ["usage"], ["db", "info"]):
        failed = _run(tmp_path, tmp_path, *command)
        assert failed.returncode == 1, (command, failed.stderr)
        assert failed.stdout == ""
        [line] = failed.stderr.splitlines()
        assert line.startswith("teamrelay: cannot reach the database postgresql+asyncpg://relay:")
        assert "127.0.0.1:1/relay" in line
        assert "refused" in line.lower()
        assert "hunter2" not in line
