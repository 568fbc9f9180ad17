"""The ``warehouse`` command: the embedded server outlives a command, and the demo runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import running_ui
from pipelines import migrate, postgres
from pipelines.marts import MARTS
from pipelines import warehouse as warehouse_module

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


def _fingerprint(url: str) -> str:
    with postgres.connect(url) as conn:
        return conn.execute("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ai_agent_chat_history t").fetchone()[0]


def test_demo_runs_from_nothing_and_again(home_env):
    result = warehouse(home_env, "demo", "--devices", "8", "--days", "4", "--end", "2026-03-31")
    assert "2/6 migrations" in result.stdout
    assert f"cheeko: at {', '.join(migrate.head('cheeko').values())}" in result.stdout
    assert "memory_chunks" in result.stdout and "6/6 memory search" in result.stdout
    # The admin report of the newest whole day lands in the outbox, one .eml per recipient.
    # (The data runs to 1 April UTC: local days end up to 12 hours after UTC midnight.)
    assert "5/6 email reports" in result.stdout and "admin report 2026-04-01: sent: 2/2 sent" in result.stdout
    sent = sorted((Path(home_env["WAREHOUSE_HOME"]) / "outbox").glob("admin_daily.20260401.*.eml"))
    assert len(sent) == 2 and b"Cheeko daily report for Wed 01 Apr 2026" in sent[0].read_bytes()
    assert "1. " in result.stdout and "memories/" in result.stdout  # the search found chunks
    assert "wrote" in result.stdout and "planted facts" in result.stdout
    assert (Path(home_env["WAREHOUSE_HOME"]) / "generated" / "planted_facts.jsonl").exists()
    assert (Path(home_env["WAREHOUSE_HOME"]) / "warehouse.duckdb").exists()
    # The closing summary reads the analyst snapshot the run published.
    latest = Path(home_env["WAREHOUSE_HOME"]) / "extracts" / "latest.duckdb"
    summary = result.stdout.split("Rows per layer", 1)[1]
    with warehouse_module.connect(latest, read_only=True) as con:
        day, active, turns = con.execute("SELECT day, active_devices, user_turns FROM marts.fleet_daily "
                                         "ORDER BY day DESC LIMIT 1").fetchone()
        names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()]
        marts = sum(con.execute(f"SELECT count(*) FROM marts.{n}").fetchone()[0] for n in names)
    assert f"{day}: {active} active devices" in summary and f"{turns:,} user turns" in summary
    assert f"  {'marts':<22} {marts:>10,} rows in {len(names)} tables" in summary and len(names) == len(MARTS)
    assert "analyst snapshot" in summary and "warehouse ui" in summary
    cut = Path(home_env["WAREHOUSE_HOME"]) / "fleet.csv"
    extracted = warehouse(home_env, "extract", "--out", str(cut), "--tables", "fleet_daily", "--since", str(day))
    assert "marts.fleet_daily" in extracted.stdout and cut.read_text().count("\n") == 2  # header and one day
    url = warehouse(home_env, "pg", "url", "--database", "cheeko").stdout.strip()
    first = _fingerprint(url)
    # A second demo replaces the data rather than doubling it.
    warehouse(home_env, "demo", "--devices", "8", "--days", "4", "--end", "2026-03-31")
    assert _fingerprint(url) == first


def test_extract_without_a_snapshot_says_what_to_run(home_env):
    result = warehouse(home_env, "extract", "--out", "x.duckdb", check=False)
    assert result.returncode == 2 and "no analyst snapshot" in result.stderr and "warehouse run" in result.stderr


def test_demo_refuses_configured_databases(home_env):
    result = warehouse(home_env | {"CHEEKO_DATABASE_URL": "postgresql://prod@db.example/cheeko"}, "demo", check=False)
    assert result.returncode == 2
    assert "runs only on the embedded server" in result.stderr and "CHEEKO_DATABASE_URL" in result.stderr


def test_append_days_takes_no_other_dataset_options(home_env):
    result = warehouse(home_env, "generate", "--append-days", "1", "--messy", check=False)
    assert result.returncode == 2 and "--append-days" in result.stderr


def test_stale_pid_file_is_not_trusted(home_env):
    """After a crash, postmaster.pid may name a reused pid: never report or signal it as our server."""
    warehouse(home_env, "pg", "start")
    pgdata = Path(home_env["WAREHOUSE_HOME"]) / "pgdata"
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        lines[0] = str(stranger.pid)
        (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
        assert warehouse(home_env, "pg", "status", check=False).returncode == 3
        assert "not running" in warehouse(home_env, "pg", "stop").stdout
        assert stranger.poll() is None  # the unrelated process is alive
        assert warehouse(home_env, "pg", "start").returncode == 0
    finally:
        stranger.kill()


def test_errors_are_reported_without_a_traceback(home_env):
    result = warehouse(home_env | {"WAREHOUSE_PG_PORT": "nope"}, "config", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: WAREHOUSE_PG_PORT")


def test_ui_serves_the_whole_graph_and_stops_cleanly(make_databases, tmp_path):
    from assets.definitions import defs

    pair = make_databases()
    env = {**os.environ, **pair.environ(), "WAREHOUSE_HOME": str(tmp_path / "home"), "WAREHOUSE_PSEUDONYM_KEY": "k"}
    with running_ui(env) as graphql:  # stopping it cleanly, with no process left, is checked on the way out
        nodes = graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
        assert len(nodes) == len(defs.resolve_asset_graph().get_all_asset_keys())
        assert {n["groupName"] for n in nodes} == {"cheeko_raw", "cognova_raw", "rollups", "memory", "reports", "extracts"}
        assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()  # the instance the CLI uses too
