"""`teamrelay serve` refuses what would quietly weaken a control, before it starts anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from teamrelay.cli import app


def test_several_workers_without_redis_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_REDIS_URL", raising=False)
    result = CliRunner().invoke(
        app, ["serve", "--workers", "3"], env={"OPENAI_API_KEY": "sk-test", "COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "--workers 3 needs RELAY_REDIS_URL" in result.stderr
    assert "3 times its limit" in result.stderr
