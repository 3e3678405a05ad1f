"""How the bench runs the relay: its environment, its configurations, the member's key, and
the upstream it forwards to."""

import os
import subprocess
import sys
from pathlib import Path

from bench import payloads
from bench.processes import Child

REPO = Path(__file__).resolve().parent.parent
RELAY_CMD = ".venv/bin/teamrelay serve --host 127.0.0.1 --port {port} --workers {workers}"
# The pass-through core: what issue 2 asks of the relay, without the ledger, metrics and
# request log lines that later issues add (each has its own switch).
CORE_ENV = (
    "RELAY_LEDGER_ENABLED=false",
    "RELAY_METRICS_ENABLED=false",
    "RELAY_REQUEST_LOG_ENABLED=false",
)
# A member's key (no admin scope, so per-key isolation applies) with rate limits high enough
# never to refuse: above 10,000 rpm the limiter is the sliding-window counter.
LIMITED_KEY_ARGS = ("--scopes", "api", "--rpm", "1000000", "--tpm", "1000000000000")


def relay_env(upstream_port: int, tmp: Path, extra: list[str]) -> dict[str, str]:
    """The bench's environment without OPENAI_* and RELAY_*, the upstream, a database in
    `tmp`, then `extra` (NAME=VALUE items)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RELAY_"))}
    env.update(
        OPENAI_API_KEY=payloads.UPSTREAM_KEY,
        OPENAI_BASE_URL=f"http://127.0.0.1:{upstream_port}/v1",
        RELAY_KEYS=payloads.RELAY_KEY,
        RELAY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/bench.db",
    )
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def member_key(env: dict[str, str], tmp: Path) -> str:
    """Creates the member's key in the database `env` names and returns its secret."""
    cli = Path(sys.executable).parent / "teamrelay"
    argv = [str(cli), "keys", "create", "--name", "bench-member", *LIMITED_KEY_ARGS]
    done = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, check=False)
    secret = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not secret.startswith("tr-"):
        raise RuntimeError(f"teamrelay keys create failed: {done.stderr or done.stdout}")
    return secret


def upstream_child(
    tmp: Path, port: int, options: tuple[str, ...] = (), cpus: set[int] | None = None
) -> Child:
    """The fast upstream (`bench.upstream`) on `port`, logging into `tmp`."""
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), *options]
    return Child("upstream", argv, tmp / "upstream.log", cpus=cpus, cwd=REPO)
