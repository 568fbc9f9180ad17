"""The DuckLake backend on its own terms: how it is configured, moving a file warehouse into it, what a lake
allows that the file does not (a reader beside a writer, writers of different tables side by side, reading an
earlier version), compaction, the demo's reset, and the pools the asset definitions claim on each backend.

Every test runs against a real PostgreSQL catalog and real Parquet files. (The pipeline's own tests run on both
backends: ``--warehouse-backend=ducklake``.)
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest

from pipelines import cli, extract, generator, postgres, warehouse
from pipelines.databases import warehouse_location
from pipelines.settings import SettingsError, load, shown
from pipelines.postgres import Snapshot
from pipelines.source_tables import source_table, source_tables
from pipelines.warehouse import Lake

ROOT = Path(__file__).resolve().parents[1]
ALL_DAYS = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def lake(pg_admin_url: str, tmp_path: Path):
    """An empty DuckLake: a new catalog database on the test server, Parquet under ``tmp_path/lake``."""
    name = f"test_lake_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(pg_admin_url, name)
    yield Lake(postgres.with_database(pg_admin_url, name), str(tmp_path / "lake"))
    postgres.drop_database(pg_admin_url, name)


def parquet_files(lake: Lake) -> int:
    return sum(1 for _ in Path(lake.data_path).rglob("*.parquet"))


# --- configuration -------------------------------------------------------------------------------------------

def test_warehouse_catalog_chooses_the_backend(tmp_path: Path):
    home = {"WAREHOUSE_HOME": str(tmp_path)}
    file = load(home)
    assert not file.uses_lake and warehouse_location(file) == tmp_path / "warehouse.duckdb"

    named_file = load(home | {"WAREHOUSE_CATALOG": str(tmp_path / "other.duckdb")})
    assert not named_file.uses_lake and named_file.duckdb_path == tmp_path / "other.duckdb"

    embedded = load(home | {"WAREHOUSE_CATALOG": "ducklake"})
    assert embedded.uses_lake and embedded.lake_catalog_url is None and embedded.lake_data == str(tmp_path / "lake")

    own = load(home | {"WAREHOUSE_CATALOG": "ducklake:postgresql://etl:s3cret@db.internal:5432/lake_catalog",
                       "WAREHOUSE_LAKE_DATA": "s3://bucket/warehouse/"})
    assert warehouse_location(own) == Lake("postgresql://etl:s3cret@db.internal:5432/lake_catalog",
                                           "s3://bucket/warehouse/")
    printed = {row.variable: row.value for row in shown(own, home | {"WAREHOUSE_CATALOG": "x"})}
    assert "s3cret" not in printed["WAREHOUSE_CATALOG"] and "***" in printed["WAREHOUSE_CATALOG"]
    assert "s3cret" not in str(warehouse_location(own))


@pytest.mark.parametrize("value, says", [
    ("mysql://h/db", "WAREHOUSE_CATALOG must be"),
    ("ducklake:sqlite:/tmp/x.db", "catalog's PostgreSQL URL"),
])
def test_a_catalog_setting_the_project_cannot_use_is_refused(tmp_path: Path, value: str, says: str):
    with pytest.raises(SettingsError, match=says):
        load({"WAREHOUSE_HOME": str(tmp_path), "WAREHOUSE_CATALOG": value})


def test_two_different_warehouse_files_are_refused(tmp_path: Path):
    with pytest.raises(SettingsError, match="two different warehouse files"):
        load({"WAREHOUSE_CATALOG": str(tmp_path / "a.duckdb"), "WAREHOUSE_DUCKDB_PATH": str(tmp_path / "b.duckdb")})


def test_a_catalog_url_becomes_libpq_keywords_with_odd_characters_quoted():
    assert warehouse.libpq_keywords("postgresql://u:p%27w%20x@10.0.0.5:6432/lake?sslmode=require") == (
        "host=10.0.0.5 port=6432 dbname=lake user=u password='p\\'w x' sslmode=require")


# --- what a lake allows -----------------------------------------------------------------------------------

def test_a_reader_in_another_process_queries_the_lake_while_a_writer_holds_a_transaction(lake: Lake):
    """On the file a second process may not even open it read-only while a writer holds it; on a lake it reads
    the last committed state."""
    reader = ("import sys; from pipelines import warehouse; lake = warehouse.Lake(sys.argv[1], sys.argv[2])\n"
              "with warehouse.connect(lake, read_only=True) as con:\n"
              "    print(con.execute('SELECT list(v ORDER BY v) FROM marts.t').fetchone()[0])")
    with warehouse.connect(lake) as writer:
        writer.execute("CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT 1 AS v")
        writer.execute("BEGIN TRANSACTION; INSERT INTO marts.t VALUES (2)")
        during = subprocess.run([sys.executable, "-c", reader, lake.catalog_url, lake.data_path], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert during.returncode == 0, during.stderr
        assert during.stdout.strip() == "[1]"
        writer.execute("COMMIT")
    after = subprocess.run([sys.executable, "-c", reader, lake.catalog_url, lake.data_path], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert after.stdout.strip() == "[1, 2]", after.stderr


def test_a_process_shares_one_duckdb_across_its_lake_connections_and_each_finds_it_clean(lake: Lake, make_databases,
                                                                                         pg_admin_url: str):
    """Lake connections borrow the process's one DuckDB, whose extensions are loaded once
    (``warehouse._SharedEngine``). Given back, it holds nothing of the borrower: no open transaction (its writes
    rolled back, as closing a connection does), no temporary table, no attached source (nor its connection to the
    source database). The lake itself stays attached for the next borrower, who sees what another DuckDB committed
    meanwhile; the same lake read-only, or another lake, is attached afresh. A connection opened while another is
    lent gets a DuckDB of its own and works the same."""
    import time

    def sessions(url: str) -> int:
        """Sessions on ``url``'s database, once those closed have left (a backend exits a moment after)."""
        database = urlsplit(url).path.lstrip("/")
        deadline = time.monotonic() + 10
        while True:
            with postgres.connect(pg_admin_url) as admin:
                n = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()[0]
            if n == 0 or time.monotonic() > deadline:
                return n
            time.sleep(0.1)

    def attached(con) -> set[str]:
        return {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()}

    with warehouse.connect(lake) as con:
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT 1 AS v")
    source = make_databases().cheeko
    with warehouse.connect(lake) as first:
        warehouse.attach_source(first, "src_cheeko", source)
        first.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS v")
        first.execute("BEGIN TRANSACTION; INSERT INTO marts.t VALUES (2)")  # left open: rolled back
        with warehouse.connect(lake, read_only=True) as nested:  # the shared DuckDB is lent: one of its own
            assert nested.execute("SELECT sum(v) FROM marts.t").fetchone()[0] == 1
            assert "src_cheeko" not in attached(nested)
            nested.execute("SELECT 1")
        with warehouse.connect(lake) as other_writer:  # another DuckDB commits while the lake stays attached
            other_writer.execute("INSERT INTO marts.t VALUES (5)")
    assert sessions(source) == 0
    with warehouse.connect(lake) as second:
        assert attached(second) == {"memory", warehouse.LAKE_ALIAS}
        assert second.execute("SELECT sum(v) FROM marts.t").fetchone()[0] == 6  # the other DuckDB's row, not ours
        with pytest.raises(duckdb.CatalogException):
            second.execute("SELECT * FROM scratch")
        assert second.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"
    engine = warehouse._LAKE_ENGINE._engine
    assert engine is not None and {r[0] for r in engine.execute(
        "SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()} >= {"postgres_scanner", "ducklake"}
    with warehouse.connect(lake, read_only=True) as reader:  # attached again, read-only
        with pytest.raises(duckdb.Error, match="(?i)read.only"):
            reader.execute("INSERT INTO marts.t VALUES (7)")
    name = f"test_lake_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(pg_admin_url, name)
    try:
        another = Lake(postgres.with_database(pg_admin_url, name), lake.data_path + "-another")
        with warehouse.connect(another) as con:  # the first lake detached, this one attached
            assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts'").fetchone()[0] == 0
        assert sessions(lake.catalog_url) == 0  # the first lake's catalog connections closed with its detach
    finally:
        postgres.drop_database(pg_admin_url, name)
    assert warehouse._LAKE_ENGINE._engine is engine  # one engine throughout


def test_writers_of_different_tables_commit_side_by_side_and_of_one_table_conflict(lake: Lake):
    """Why the pools on a lake are per group of tables (assets/pools.py): two transactions that each delete from
    and insert into the same table cannot both commit; two that write different tables can."""
    with warehouse.connect(lake) as setup:
        setup.execute("CREATE SCHEMA marts; CREATE TABLE marts.a AS SELECT range AS v FROM range(5); "
                      "CREATE TABLE marts.b AS SELECT range AS v FROM range(5)")
    with warehouse.connect(lake) as one, warehouse.connect(lake) as two:
        one.execute("BEGIN TRANSACTION; DELETE FROM marts.a WHERE v = 0; INSERT INTO marts.a VALUES (10)")
        two.execute("BEGIN TRANSACTION; DELETE FROM marts.b WHERE v = 0; INSERT INTO marts.b VALUES (10)")
        one.execute("COMMIT")
        two.execute("COMMIT")
        assert one.execute("SELECT (SELECT sum(v) FROM marts.a), (SELECT sum(v) FROM marts.b)").fetchone() == (20, 20)

        # What every load does: delete the rows it replaces, insert the new ones.
        one.execute("BEGIN TRANSACTION; DELETE FROM marts.a WHERE v = 1; INSERT INTO marts.a VALUES (11)")
        two.execute("BEGIN TRANSACTION; DELETE FROM marts.a WHERE v = 2; INSERT INTO marts.a VALUES (12)")
        one.execute("COMMIT")
        with pytest.raises(duckdb.Error, match="(?i)conflict"):
            two.execute("COMMIT")


def test_a_commit_refused_by_a_conflict_names_its_tables_and_the_rerun_completes(lake: Lake, make_databases,
                                                                                   tmp_path: Path, monkeypatch):
    """A source's loads share a transaction (extract.load_source); when another writer of the same table commits
    first, DuckLake refuses the commit: the error names the tables committed, nothing of them is kept, and the next
    load completes them."""
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=5, days=3, seed=4, end=dt.date(2026, 3, 31)),
                       tmp_path / "gen", progress=lambda _: None)
    tables = [source_table("cheeko", "kid_profile"), source_table("cheeko", "parent_profile")]
    extract.extract_tables(lake, {"cheeko": pair.cheeko}, tables, pseudonym_key="k")
    with postgres.connect(pair.cheeko) as conn:
        conn.execute("UPDATE kid_profile SET nickname = 'Changed'")
        conn.execute("UPDATE parent_profile SET display_name = 'Changed'")
    real = extract.extract_table

    def and_someone_else_writes_it_first(con, table, *args, **kwargs):
        result = real(con, table, *args, **kwargs)
        with warehouse.connect(lake) as other:
            other.execute("DELETE FROM raw_cheeko.kid_profile WHERE id = (SELECT min(id) FROM raw_cheeko.kid_profile)")
        return result

    monkeypatch.setattr(extract, "extract_table", and_someone_else_writes_it_first)
    with Snapshot(pair.cheeko) as snapshot, warehouse.connect(lake) as con:
        warehouse.attach_source(con, "src_cheeko", pair.cheeko)
        with pytest.raises(extract.LoadStopped, match=r"^commit of cheeko.kid_profile, cheeko.parent_profile: ") as refused:
            list(extract.load_source(con, tables, snapshot, alias="src_cheeko", pseudonym_key="k"))
        assert "conflict" in str(refused.value.error).lower()
        assert con.execute("SELECT count(*) FROM _warehouse.loads").fetchone()[0] == 2  # the first load's two only
    monkeypatch.setattr(extract, "extract_table", real)
    again = extract.extract_tables(lake, {"cheeko": pair.cheeko}, tables, pseudonym_key="k")
    assert all(r.source_rows == r.warehouse_rows and r.duplicate_keys == 0 for r in again.values())


def test_an_earlier_version_stays_readable_through_compaction_within_the_kept_days(lake: Lake, tmp_path: Path):
    with warehouse.connect(lake) as con:
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT range AS v FROM range(100)")
        published = warehouse.lake_version(con)
        con.execute("DELETE FROM marts.t WHERE v < 50")
        assert con.execute(f"SELECT count(*) FROM marts.t AT (VERSION => {published})").fetchone()[0] == 100
        assert con.execute("SELECT count(*) FROM marts.t").fetchone()[0] == 50
    with warehouse.connect(tmp_path / "w.duckdb") as file:
        assert warehouse.lake_version(file) is None  # the file keeps no versions

    done = warehouse.compact(lake)  # keeps a week of snapshots
    assert done["snapshots_expired"] == 0
    with warehouse.connect(lake, read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM marts.t AT (VERSION => {published})").fetchone()[0] == 100


def test_compaction_merges_the_files_of_many_loads_and_deletes_the_unread_ones(lake: Lake):
    with warehouse.connect(lake) as con:
        con.execute("CREATE SCHEMA raw_cheeko; CREATE TABLE raw_cheeko.t (id BIGINT, payload VARCHAR)")
        for load in range(12):  # one file per load, as the daily extraction writes
            con.execute("INSERT INTO raw_cheeko.t SELECT range + $o, repeat('x', 20) FROM range(5000)",
                        {"o": load * 5000})
        con.execute("DELETE FROM raw_cheeko.t WHERE id % 2 = 0")
        before = con.execute("SELECT count(*), sum(id) FROM raw_cheeko.t").fetchone()
    on_disk = parquet_files(lake)

    done = warehouse.compact(lake, keep=dt.timedelta(0))

    assert done["files_before"] >= 12 and done["files_after"] < done["files_before"]
    assert done["snapshots_expired"] > 0 and done["files_deleted"] > 0
    assert parquet_files(lake) < on_disk
    with warehouse.connect(lake, read_only=True) as con:
        assert con.execute("SELECT count(*), sum(id) FROM raw_cheeko.t").fetchone() == before


def test_the_demo_reset_empties_a_lake_and_its_data_folder(lake: Lake):
    with warehouse.connect(lake) as con:
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT range AS v FROM range(10000)")
    assert parquet_files(lake) > 0

    assert warehouse.discard(lake)

    assert parquet_files(lake) == 0
    with warehouse.connect(lake, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                           "AND schema_name = 'marts'").fetchone()[0] == 0


# --- moving a file warehouse into a lake -----------------------------------------------------------------

def test_migrate_copies_the_file_into_the_lake_and_the_next_load_continues_from_it(configured, lake: Lake,
                                                                                     monkeypatch, capsys):
    env, _home = configured
    urls = {"cheeko": env["CHEEKO_DATABASE_URL"], "cognova": env["COGNOVA_DATABASE_URL"]}
    file = Path(env["WAREHOUSE_DUCKDB_PATH"])
    tables = source_tables()
    extract.extract_tables(file, urls, tables, pseudonym_key=env["WAREHOUSE_PSEUDONYM_KEY"],
                           windows={t.key: ALL_DAYS for t in tables})
    with warehouse.connect(file) as con:
        con.execute("COMMENT ON TABLE raw_cheeko.ai_device IS 'one row per device'")
        con.execute("COMMENT ON COLUMN raw_cheeko.ai_device.mac_address IS 'pseudonymised MAC'")
        in_file = _shape(con)
    monkeypatch.setenv("WAREHOUSE_CATALOG", f"ducklake:{lake.catalog_url}")
    monkeypatch.setenv("WAREHOUSE_LAKE_DATA", lake.data_path)

    assert cli.main(["lake", "migrate"]) == 0
    assert "copied" in capsys.readouterr().out
    with warehouse.connect(lake, read_only=True) as con:
        assert _shape(con) == in_file
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE database_name = current_database() AND "
                           "schema_name = 'raw_cheeko' AND table_name = 'ai_device'").fetchone()[0] == "one row per device"
        assert con.execute("SELECT comment FROM duckdb_columns() WHERE database_name = current_database() AND "
                           "schema_name = 'raw_cheeko' AND table_name = 'ai_device' AND column_name = 'mac_address'"
                           ).fetchone()[0] == "pseudonymised MAC"

    assert cli.main(["lake", "migrate"]) == 2  # never into a lake that holds rows
    assert "already holds rows" in capsys.readouterr().err
    assert cli.main(["lake", "status"]) == 0  # how analysts reach it live
    status = capsys.readouterr().out
    assert "READ_ONLY)" in status and "AT (VERSION => " in status

    # The bookkeeping came along: change capture finds nothing new, so no full or incremental table is read again.
    again = extract.extract_tables(lake, urls, [t for t in tables if not t.partitioned],
                                   pseudonym_key=env["WAREHOUSE_PSEUDONYM_KEY"])
    assert {k: r.rows_written for k, r in again.items() if r.rows_written} == {}
    assert all(r.capture == extract.UNCHANGED for r in again.values()), {k: r.capture for k, r in again.items()}


def _shape(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """Every table's columns with their types, and its row count."""
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = "
                         "current_database() ORDER BY 1, 2").fetchall()
    return {f"{s}.{t}": (con.execute("SELECT list((column_name, data_type) ORDER BY column_index) FROM "
                                     "duckdb_columns() WHERE database_name = current_database() AND schema_name = $s "
                                     "AND table_name = $t", {"s": s, "t": t}).fetchone()[0],
                         con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]) for s, t in tables}


def test_lake_commands_refuse_the_file_backend_in_one_line(configured, capsys):
    assert cli.main(["lake", "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WAREHOUSE_CATALOG=ducklake" in err


# --- pools and maintenance in the asset definitions ------------------------------------------------------

def _definitions(env: dict[str, str]) -> dict:
    """Pools per group, and the job names, of the definitions as a code location loads them under ``env``."""
    script = ("import json, assets.definitions as d\n"
              "repo = d.defs.get_repository_def(); graph = repo.asset_graph\n"
              "pools = {}\n"
              "for key in graph.get_all_asset_keys():\n"
              "    node = graph.get(key)\n"
              "    pools.setdefault(node.group_name, set()).update(node.pools or {'(none)'})\n"
              "print(json.dumps({'pools': {g: sorted(p) for g, p in pools.items()},\n"
              "                  'jobs': sorted(j.name for j in repo.get_all_jobs())}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pools_are_one_for_the_file_and_per_group_of_tables_on_a_lake(monkeypatch):
    import os

    base = {k: v for k, v in os.environ.items() if k != "WAREHOUSE_CATALOG"}
    on_file = _definitions(base)
    writers = {g: p for g, p in on_file["pools"].items() if g != "memory"}
    assert all(p == ["warehouse_writer"] for p in writers.values()), writers
    assert "lake_maintenance" not in on_file["jobs"]

    on_lake = _definitions(base | {"WAREHOUSE_CATALOG": "ducklake"})
    assert on_lake["pools"]["cheeko_raw"] == on_lake["pools"]["cognova_raw"] == ["warehouse_raw"]
    assert on_lake["pools"]["rollups"] == on_lake["pools"]["staging"] == on_lake["pools"]["extracts"] == [
        "warehouse_rollups"]
    assert on_lake["pools"]["reports"] == ["warehouse_reports"]
    assert on_lake["pools"]["memory"] == on_file["pools"]["memory"]
    assert "lake_maintenance" in on_lake["jobs"]


def test_the_maintenance_job_compacts_the_lake(lake: Lake, monkeypatch):
    from assets.maintenance import lake_maintenance

    with warehouse.connect(lake) as con:
        con.execute("CREATE SCHEMA raw_cheeko; CREATE TABLE raw_cheeko.t (id BIGINT)")
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.m (id BIGINT)")
        for load in range(6):
            con.execute("INSERT INTO raw_cheeko.t SELECT range FROM range(3000)")
            con.execute("INSERT INTO marts.m SELECT range FROM range(3000)")
    monkeypatch.setenv("WAREHOUSE_CATALOG", f"ducklake:{lake.catalog_url}")
    monkeypatch.setenv("WAREHOUSE_LAKE_DATA", lake.data_path)

    result = lake_maintenance.execute_in_process()

    assert result.success
    with warehouse.connect(lake, read_only=True) as con:
        files = con.execute(f"SELECT count(*) FROM __ducklake_metadata_{warehouse.LAKE_ALIAS}.ducklake_data_file "
                            "WHERE end_snapshot IS NULL").fetchone()[0]
        assert files == 2  # one per table
        assert con.execute("SELECT (SELECT count(*) FROM raw_cheeko.t), (SELECT count(*) FROM marts.m)").fetchone() == (
            18000, 18000)


# --- the data on an object store ----------------------------------------------------------------------------

def test_a_lake_keeps_its_parquet_on_an_s3_object_store(lake: Lake, tmp_path: Path):
    """Production puts the data path on an object store. Here a real S3 server on loopback (moto's) stands in;
    the credentials are a DuckDB persistent secret, as README's "Warehouse backends" tells production to make
    once (DuckDB loads ~/.duckdb/stored_secrets on every connection, so the project's code sets nothing)."""
    import os
    import socket
    import time

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="warehouse")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        home = tmp_path / "home"
        home.mkdir()
        script = (
            "import sys, duckdb\n"
            "from pipelines import warehouse\n"
            "setup = duckdb.connect(); warehouse.load_extension(setup, 'httpfs')\n"
            f"setup.execute(\"CREATE PERSISTENT SECRET store (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1', "
            f"ENDPOINT '127.0.0.1:{port}', URL_STYLE 'path', USE_SSL false)\"); setup.close()\n"
            "lake = warehouse.Lake(sys.argv[1], 's3://warehouse/lake/')\n"
            "with warehouse.connect(lake) as con:\n"
            "    con.execute('CREATE SCHEMA marts; CREATE TABLE marts.t AS SELECT range AS v FROM range(50000)')\n"
            "with warehouse.connect(lake, read_only=True) as con:\n"
            "    print(con.execute('SELECT count(*), sum(v) FROM marts.t').fetchone())\n")
        done = subprocess.run([sys.executable, "-c", script, lake.catalog_url], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=os.environ | {"HOME": str(home)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == str((50000, sum(range(50000))))
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="warehouse").get("Contents", [])]
        assert any(k.startswith("lake/marts/t/") and k.endswith(".parquet") for k in keys), keys
    finally:
        server.terminate()
        server.wait(timeout=30)
