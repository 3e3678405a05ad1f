from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from teamrelay.config import ConfigError, load_settings


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings(_env_file=None)
    assert settings.openai_base_url == "https://api.openai.com/v1"
    # Anchored, unlike DESIGN.md's ./data: every command finds the same file (issue 18).
    assert settings.data_dir == tmp_path / "teamrelay"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/teamrelay/teamrelay.db"
    assert settings.relay_keys == ()
    assert settings.auth_enabled is True


def test_aliases_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("RELAY_KEY", " a , b,,c ")
    monkeypatch.setenv("RELAY_OPENAI_BETA", "assistants=v2")
    settings = load_settings(_env_file=None)
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.relay_keys == ("a", "b", "c")
    assert settings.openai_beta == ("assistants=v2",)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=sk-from-file\nRELAY_KEYS=k1,k2\n")
    settings = load_settings(_env_file=env_file)
    assert settings.openai_api_key.get_secret_value() == "sk-from-file"
    assert settings.relay_keys == ("k1", "k2")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPENAI_BASE_URL", "ftp://example"),
        ("RELAY_DATABASE_URL", "mysql://x"),
        ("RELAY_CONNECT_TIMEOUT", "-1"),
        ("RELAY_AUTH_ENABLED", "perhaps"),
        ("RELAY_MAX_BODY_BYTES", "lots"),
        ("RELAY_SEND_TIMEOUT", "0"),
        ("RELAY_UPSTREAM_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as caught:
        load_settings(_env_file=None)
    assert "\n" not in str(caught.value)


def test_a_missing_upstream_key_is_named() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is required"):
        load_settings(_env_file=None)


def test_serve_stops_with_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "teamrelay"), "serve"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "nope"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "OPENAI_BASE_URL" in lines[0]
    assert "sk-x" not in result.stderr
