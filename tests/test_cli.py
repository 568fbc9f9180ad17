"""The ``warehouse`` command: the embedded server outlives a command, and the demo runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import running_ui
from pipelines import cli, dagster_home, memory_sync, migrate, postgres, writes
from pipelines.marts import MARTS
from pipelines.summary import counted
from pipelines import warehouse as warehouse_module
from pipelines.settings import load, variables
from pipelines.source_tables import source_tables

ROOT = Path(__file__).resolve().parents[1]


def warehouse(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300, check=check)


@pytest.fixture
def home_env(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The embedded defaults: no configured database, and no Dagster instance of the developer's.
    env = {k: v for k, v in os.environ.items() if k not in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL",
                                                             "DAGSTER_HOME", dagster_home.EVENT_BATCH_SIZE[0])}
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
    assert f"{day}: {counted(active, 'active device')}" in summary and counted(turns, "user turn") in summary
    assert f"  {'marts':<22} {marts:>10,} rows in {len(names)} tables" in summary and len(names) == len(MARTS)
    assert "analyst snapshot" in summary and "warehouse ui" in summary
    cut = Path(home_env["WAREHOUSE_HOME"]) / "fleet.csv"
    extracted = warehouse(home_env, "extract", "--out", str(cut), "--tables", "fleet_daily", "--since", str(day))
    assert "marts.fleet_daily" in extracted.stdout and cut.read_text().count("\n") == 2  # header and one day
    url = warehouse(home_env, "pg", "url", "--database", "cheeko").stdout.strip()
    # The Dagster instance keeps its runs in a database of its own on the embedded server, not in SQLite files.
    instance = Path(home_env["WAREHOUSE_HOME"]) / "dagster"
    assert "postgresql+psycopg2" in (instance / "dagster.yaml").read_text() and not list(instance.rglob("*.db"))
    with postgres.connect(postgres.with_database(url, dagster_home.DAGSTER_DATABASE)) as conn:
        materialized = conn.execute("SELECT count(DISTINCT asset_key) FROM event_logs "
                                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'").fetchone()[0]
    assert f"materialized {materialized} asset(s)" in result.stdout and materialized > 80
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


def test_an_instance_kept_in_sqlite_files_moves_to_the_embedded_server_said_once(home_env, monkeypatch, capsys):
    """On the embedded defaults the instance's storage is the embedded server's `dagster` database. An instance
    that kept its runs in SQLite files in the same folder before is left there, and that is said once."""
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage

    home = Path(home_env["WAREHOUSE_HOME"]) / "dagster"
    (home / "history").mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())  # as `warehouse` wrote it before
    for name in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL", "DAGSTER_HOME", "WAREHOUSE_PARTITIONS_START",
                 dagster_home.EVENT_BATCH_SIZE[0]):
        # Set, then unset: monkeypatch restores only what it changed, and _dagster_home sets some of these itself.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name in ("WAREHOUSE_HOME", "WAREHOUSE_PG_PORT"):
        monkeypatch.setenv(name, home_env[name])

    assert cli._dagster_home(load()) == home
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "not carried over" in said and str(home / "history") in said
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert instance.get_runs() == []
    assert os.environ[dagster_home.EVENT_BATCH_SIZE[0]] == dagster_home.EVENT_BATCH_SIZE[1]
    cli._dagster_home(load())
    assert capsys.readouterr().err == ""  # once
    # DAGSTER_HOME pointed at this instance by hand (as the README's `dagster dev` line does) is still this one.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    assert cli._dagster_home(load()) == home and dagster_home.on_postgres((home / "dagster.yaml").read_text())


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


@pytest.mark.skipif(os.geteuid() != 0, reason="the system user is created only when the server is started as root")
def test_servers_started_at_once_as_root_agree_on_one_system_user(tmp_path):
    """The test workers' servers start together on a fresh machine: each asks for the system user at once, and all
    must get the account that stays (two concurrent useradd runs once left a pgdata owned by a uid that no longer
    existed). Run with a throwaway account name, removed afterwards."""
    name = f"cw_test_{os.getpid()}"
    go = tmp_path / "go"
    script = ("import sys, time, pathlib\nfrom pipelines import embedded\n"
              "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.001)\n"
              "print(embedded.system_user(sys.argv[2]).pw_uid)")
    workers = [subprocess.Popen([sys.executable, "-c", script, str(go), name], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE) for _ in range(6)]
    try:
        time.sleep(1.0)  # every interpreter started and waiting
        go.touch()
        uids = {int(worker.communicate(timeout=60)[0]) for worker in workers}
        entries = [line for line in Path("/etc/passwd").read_text().splitlines() if line.startswith(f"{name}:")]
        assert len(entries) == 1 and uids == {int(entries[0].split(":")[2])}
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_a_dagster_webserver_that_does_not_answer_is_a_configuration_error(home_env):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    result = warehouse(home_env | {"WAREHOUSE_DAGSTER_URL": f"http://127.0.0.1:{closed}"}, "run", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: WAREHOUSE_DAGSTER_URL: no Dagster webserver answers at http://127.0.0.1:{closed}"


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
        assert {n["groupName"] for n in nodes} == {"cheeko_raw", "cognova_raw", "staging", "rollups", "memory", "reports", "extracts"}
        assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()  # the instance the CLI uses too


def test_config_prints_every_setting_with_where_it_came_from_and_no_secret(home_env):
    env = home_env | {"CHEEKO_DATABASE_URL": "postgresql://etl:hunter2@db.example/cheeko",
                      "SMTP_URL": "smtps://reports:mailpass@mail.example:465", "WAREHOUSE_PSEUDONYM_KEY": "key-of-my-own",
                      "WAREHOUSE_EXTRACTS_KEEP": "9"}
    env.pop("COGNOVA_DATABASE_URL", None)
    env.pop("WAREHOUSE_REPORT_CATCHUP_DAYS", None)
    out = warehouse(env, "config").stdout
    printed = {line.split()[0]: line.split(maxsplit=2)[1:] for line in out.splitlines()}
    # Every variable of the contract (the fields of Settings), in its order, and nothing else.
    assert list(printed) == [f.metadata["variable"] for f in variables()]
    assert printed["CHEEKO_DATABASE_URL"] == ["set", "postgresql://etl:***@db.example/cheeko"]
    assert printed["COGNOVA_DATABASE_URL"][0] == "embedded" and "/cognova" in printed["COGNOVA_DATABASE_URL"][1]
    assert printed["WAREHOUSE_EXTRACTS_KEEP"] == ["set", "9"]
    assert printed["WAREHOUSE_REPORT_CATCHUP_DAYS"] == ["default", "3"]
    assert printed["WAREHOUSE_PSEUDONYM_KEY"] == ["set", "a key of your own (not shown)"]
    assert not any(secret in out for secret in ("hunter2", "mailpass", "key-of-my-own"))


# -- where the daily partitions start ---------------------------------------------------------------


def _events(settings, start: dt.datetime, end: dt.datetime) -> int:
    """Rows of every daily source table whose event time is in [start, end)."""
    total = 0
    for database in ("cheeko", "cognova"):
        with postgres.Snapshot(settings.database_url(database)) as snapshot:
            total += sum(snapshot.count(t.name, t.event_time, start, end)
                         for t in source_tables() if t.database == database and t.partitioned)
    return total


def test_configured_databases_start_the_partitions_the_day_before_their_first_event(configured, monkeypatch):
    _, home = configured
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("WAREHOUSE_PARTITIONS_START", "")  # unset (and restored afterwards)
    settings = load()
    cli._dagster_home(settings)
    start = dt.date.fromisoformat(os.environ["WAREHOUSE_PARTITIONS_START"])
    first_event_day = dt.datetime.combine(start + dt.timedelta(days=1), dt.time(0), dt.UTC)
    assert _events(settings, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), first_event_day) == 0
    assert _events(settings, first_event_day, first_event_day + dt.timedelta(days=1)) > 0
    # A value set by hand always wins.
    monkeypatch.setenv("WAREHOUSE_PARTITIONS_START", "2025-06-01")
    cli._dagster_home(load())
    assert os.environ["WAREHOUSE_PARTITIONS_START"] == "2025-06-01"


def test_an_unreachable_database_leaves_the_default_start_with_one_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("WAREHOUSE_PARTITIONS_START", "")
    settings = load({"CHEEKO_DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/cheeko",
                     "COGNOVA_DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/cognova", "WAREHOUSE_PSEUDONYM_KEY": "k"})
    cli._dagster_home(settings)  # does not raise
    assert os.environ["WAREHOUSE_PARTITIONS_START"] == ""  # the default (2024-01-01) stays
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "partitions start at 2024-01-01" in err and "could not read" in err


# -- warehouse search ---------------------------------------------------------------------------------

SYNCED, NO_FILES, UNSYNCED, UNKNOWN = "24:0a:c4:00:00:a1", "24:0a:c4:00:00:a2", "24:0a:c4:00:00:a3", "24:0a:c4:00:00:a4"


def _fake_embed(texts):
    """Unit vectors from each text's hash: the sync needs vectors, not a model (the search loads the real one)."""
    vectors = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=384)
                        for t in texts]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _remember(url: str, mac: str, content: str) -> None:
    with writes.transaction(url) as conn:
        conn.execute("INSERT INTO device_memories (mac_id, file_type, file_date, content) VALUES (%s, 'daily', %s, %s)",
                     (mac, dt.date(2026, 3, 1), content))


@pytest.fixture(scope="module")
def memories(make_databases, tmp_path_factory) -> dict[str, str]:
    """The environment of a Cheeko with four devices: memories synced; an ai_device row without memory files;
    memory files (and no ai_device row) not synced yet; nothing at all."""
    pair = make_databases()
    with writes.transaction(pair.cheeko) as conn:
        conn.execute("INSERT INTO ai_device (mac_address) VALUES (%s), (%s)", (SYNCED.upper(), NO_FILES))
    _remember(pair.cheeko, SYNCED.replace(":", "-"), "# Daily memory\n\n## Pets\nHas a turtle called Bubbles.\n")
    memory_sync.sync(pair.cheeko, _fake_embed)
    _remember(pair.cheeko, UNSYNCED, "# Daily memory\n\n## Food\nLoves mango ice cream.\n")
    return {**os.environ, **pair.environ(), "WAREHOUSE_HOME": str(tmp_path_factory.mktemp("home"))}


def test_search_refuses_a_mac_that_is_not_one_before_any_work(memories):
    result = warehouse(memories, "search", "pets", "--device", "not-a-mac", check=False)
    assert result.returncode == 2 and "--device 'not-a-mac' is not a MAC address" in result.stderr
    assert "loading" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("device", "code", "says"), [
    (UNKNOWN, 2, f"Cheeko has no device {UNKNOWN}: no ai_device row and no memory files"),
    (NO_FILES.upper(), 1, f"device {NO_FILES} has an ai_device row but no memory files in device_memories"),
    (UNSYNCED, 1, "1 not synced to memory_chunks yet: run the memory sync (warehouse run --select memory_chunks)"),
])
def test_search_says_why_a_device_has_nothing_to_search(memories, device, code, says):
    result = warehouse(memories, "search", "pets", "--device", device, check=False)
    assert result.returncode == code and says in result.stderr, result.stderr
    assert "has memory_chunks been materialized" not in result.stderr
    assert "loading the embedding model" not in result.stderr and result.stdout == ""  # no model for nothing


def test_search_of_an_empty_fleet_says_so(make_databases, tmp_path):
    env = {**os.environ, **make_databases().environ(), "WAREHOUSE_HOME": str(tmp_path)}
    result = warehouse(env, "search", "pets", check=False)
    assert result.returncode == 1 and "device_memories is empty: nothing to search" in result.stderr


def test_search_says_it_is_loading_the_model_before_the_results(memories):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "search", "what pet does the child have?",
                             "--device", SYNCED.replace(":", "").upper(), "-k", "3"], cwd=ROOT, env=memories, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out
    loading = out.index("loading the embedding model (all-MiniLM-L6-v2) ...")
    assert loading < out.index("loaded the embedding model in") < out.index("1. ") < out.index("Bubbles")
