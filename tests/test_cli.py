"""The ``warehouse`` command: the embedded server outlives a command, and the demo runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import postgres

ROOT = Path(__file__).resolve().parents[1]


def warehouse(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300, check=check)


@pytest.fixture
def home_env(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL")}
    env |= {"WAREHOUSE_HOME": str(tmp_path / "home"), "WAREHOUSE_PG_PORT": str(port)}
    yield env
    warehouse(env, "pg", "stop", check=False)


def test_pg_server_outlives_the_command_that_started_it(home_env):
    assert warehouse(home_env, "pg", "status", check=False).returncode == 3
    started = warehouse(home_env, "pg", "start")
    assert "running on 127.0.0.1" in started.stdout
    assert warehouse(home_env, "pg", "status").returncode == 0
    url = warehouse(home_env, "pg", "url", "--database", "cheeko").stdout.strip()
    with postgres.connect(url) as conn:
        assert conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()[0] == "0.8.6"
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.")
    assert warehouse(home_env, "pg", "start").returncode == 0  # idempotent
    assert "stopped" in warehouse(home_env, "pg", "stop").stdout
    assert warehouse(home_env, "pg", "status", check=False).returncode == 3


def test_demo_runs_from_nothing(home_env):
    result = warehouse(home_env, "demo", "--devices", "8", "--days", "4")
    assert "2/4 migrations" in result.stdout and "cheeko: at cheeko_0001" in result.stdout
    assert "wrote" in result.stdout and "planted facts" in result.stdout
    assert (Path(home_env["WAREHOUSE_HOME"]) / "generated" / "planted_facts.jsonl").exists()
    # A second demo replaces the data rather than doubling it.
    again = warehouse(home_env, "demo", "--devices", "8", "--days", "4")
    assert again.stdout.split("wrote ")[1].split(" rows")[0] == result.stdout.split("wrote ")[1].split(" rows")[0]


def test_errors_are_reported_without_a_traceback(home_env):
    result = warehouse(home_env | {"WAREHOUSE_PG_PORT": "nope"}, "config", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: WAREHOUSE_PG_PORT")
