"""Analyst extracts: atomic read-only snapshots, the data dictionary, custom extracts, privacy, readers while writing.
Published from either backend's warehouse; the snapshots and extracts themselves are always DuckDB files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import analyst_extracts, dictionary, generator, privacy, warehouse
from pipelines.analyst_extracts import ExtractError
from pipelines.marts import MARTS
from pipelines.source_tables import source_tables
from pipelines.warehouse import Location
from test_extract import built_warehouse

pytestmark = pytest.mark.both_backends
FILE_LOCK = "DuckDB's lock on the working file: a DuckLake has no such lock (readers and writers share the catalog)"

END = dt.date(2026, 3, 20)
AS_OF = dt.datetime(2026, 3, 21, 1, 0, tzinfo=dt.UTC)
PUBLISHED = dt.datetime(2026, 3, 21, 0, 30, tzinfo=dt.UTC)
DUCKDB_CLI = Path(sys.executable).with_name("duckdb")


@pytest.fixture(scope="module")
def built(make_databases, backend, tmp_path_factory):
    """A small fleet, extracted and built into a working warehouse."""
    pair = make_databases()
    tmp = tmp_path_factory.mktemp("extracts")
    path, _ = built_warehouse(pair, tmp, generator.Options(devices=8, days=10, seed=5, end=END, messy=True),
                              as_of=AS_OF, first_day=END - dt.timedelta(days=12), last_day=END, where=backend.new(tmp))
    return path


@pytest.fixture
def working(built, backend, tmp_path) -> Location:
    """A private copy of the working warehouse (publishing writes nothing to it, but tests may)."""
    return backend.copy(built, tmp_path, "warehouse")


@pytest.fixture(scope="module")
def published(built, backend, tmp_path_factory) -> analyst_extracts.Published:
    """One snapshot of the built warehouse, shared by the tests that only read a snapshot (a publish costs 2-4 s
    here): published from a copy, into a folder of its own. Its files are read-only, so no test can change it."""
    tmp = tmp_path_factory.mktemp("published")
    return _publish(backend.copy(built, tmp, "warehouse"), tmp / "extracts")


def _publish(path: Location, root: Path, at: dt.datetime = PUBLISHED, keep: int = 7) -> analyst_extracts.Published:
    with warehouse.connect(path) as con:
        return analyst_extracts.publish(con, root, published_at=at, keep=keep, run_id="test-run")


def _query(path: Location, sql: str, params=None) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_snapshot_holds_marts_and_raw_with_a_comment_on_every_table_and_column(published, built):
    root = published.folder.parent
    latest = analyst_extracts.latest_snapshot(root)
    assert latest == root / "latest.duckdb" and latest.resolve() == published.database.resolve()
    source = {f"{s}.{t}": n for s, t, n in _query(built, "SELECT schema_name, table_name, estimated_size "
                                                           "FROM duckdb_tables() WHERE schema_name IN ('marts', 'raw_cheeko', 'raw_cognova')")}
    copied = {f"{s}.{t}" for s, t in _query(latest, "SELECT schema_name, table_name FROM duckdb_tables() "
                                                    "WHERE schema_name IN ('marts', 'raw_cheeko', 'raw_cognova')")}
    assert copied == set(source) and len(copied) == len(MARTS) + len(source_tables())
    with warehouse.connect(built, read_only=True) as con:  # one connection: opening a lake's costs 0.2 s
        for qualified in copied:  # every row came along
            assert published.rows[qualified] == con.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0]
    # Every table and column of the file has a COMMENT, the snapshot's own main.snapshot_info and
    # main.data_dictionary included...
    assert {t for (t,) in _query(latest, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")} == {
        "snapshot_info", "data_dictionary"}
    assert _query(latest, "SELECT list(schema_name || '.' || table_name) FROM duckdb_tables() "
                          "WHERE comment IS NULL OR comment = ''") == [(None,)]
    assert _query(latest, "SELECT list(schema_name || '.' || table_name || '.' || column_name) FROM duckdb_columns() "
                          "WHERE NOT internal AND (comment IS NULL OR comment = '')") == [(None,)]
    # ...from the catalogue, the mart contract or the dictionary's own entries, not the fallback sentence.
    assert _query(latest, "SELECT list(table_name) FROM duckdb_tables() WHERE comment LIKE 'Not described%'") == [(None,)]
    assert _query(latest, "SELECT list(table_name || '.' || column_name) FROM duckdb_columns() "
                          "WHERE comment LIKE 'Not described%'") == [(None,)]
    assert _query(latest, "SELECT comment FROM duckdb_columns() WHERE table_name = 'snapshot_info' "
                          "AND column_name = 'run_id'") == [(dictionary.SNAPSHOT_INFO.columns["run_id"],)]
    # The comments are the contract's words: the UI shows the same.
    assert _query(latest, "SELECT comment FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = 'fleet_daily' "
                          "AND column_name = 'active_devices'") == [(dictionary.lookup()["marts.fleet_daily"].columns["active_devices"],)]
    assert _query(latest, "SELECT run_id, fleet_daily_through FROM snapshot_info") == [("test-run", END)]
    # The dictionary table holds every column of the file, its own and snapshot_info's too, with its COMMENT.
    assert _query(latest, "SELECT count(*) FROM data_dictionary d JOIN duckdb_columns() c ON (c.schema_name, "
                          "c.table_name, c.column_name, c.comment) = (d.table_schema, d.table_name, d.column_name, "
                          "d.description)")[0][0] == _query(latest, "SELECT count(*) FROM duckdb_columns() WHERE NOT internal")[0][0]


def test_the_pipelines_own_tables_are_not_published(published):
    schemas = {s for (s,) in _query(published.database, "SELECT DISTINCT schema_name FROM duckdb_tables()")}
    assert schemas == {"main", "marts", "raw_cheeko", "raw_cognova"}  # no _warehouse bookkeeping, no staging


def test_privacy_policy_holds_in_the_snapshot_parquet_and_custom_extracts(published, tmp_path):
    out = tmp_path / "custom.duckdb"
    analyst_extracts.custom_extract(published.database, out, tables=["raw_cheeko.*", "raw_cognova.*"])
    for path in (published.database, out):
        with warehouse.connect(path, read_only=True) as con:  # one connection for every column checked
            columns = set(con.execute("SELECT schema_name, table_name, column_name FROM duckdb_columns()").fetchall())
            for (database, table), rules in privacy.policy().items():
                schema = f"raw_{database}"
                for column, rule in rules.items():
                    if rule == "drop":
                        assert (schema, table, column) not in columns, f"{schema}.{table}.{column} must be dropped"
                    elif rule == "hash" and (schema, table, column) in columns:
                        values = [v for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM {schema}.{table} '
                                                            f'WHERE "{column}" IS NOT NULL LIMIT 20').fetchall()]
                        assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in values), f"{schema}.{table}.{column}"
    # Parquet holds the marts only, and they carry no personal columns.
    assert sorted(p.stem for p in (published.folder / "marts").glob("*.parquet")) == sorted(
        t.split(".")[1] for t in published.rows if t.startswith("marts."))
    emails = _query(published.database, "SELECT count(*) FROM raw_cheeko.parent_profile WHERE email LIKE '%@%'")
    assert emails == [(0,)]


def test_markdown_dictionary_lists_every_table_and_column(published):
    text = (published.folder / "data_dictionary.md").read_text()
    for schema, table, column, comment in _query(published.database,
                                                 "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
                                                 "WHERE NOT internal"):
        assert f"## {schema}.{table}" in text
        assert f"| `{column}` |" in text and comment.replace("|", "\\|") in text
    assert "Not in the warehouse (privacy policy): `password`" in text  # sys_user.password is dropped


def test_latest_switches_atomically_and_old_snapshots_are_pruned(working, tmp_path):
    root = tmp_path / "extracts"
    first = _publish(working, root, PUBLISHED)
    with warehouse.connect(analyst_extracts.latest_snapshot(root), read_only=True) as reader:
        second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1), keep=1)
        # The reader opened the first snapshot; it was pruned, yet the open file still answers.
        assert not first.folder.exists() and second.removed == [first.folder]
        assert reader.execute("SELECT run_id FROM snapshot_info").fetchone() == ("test-run",)
    assert os.readlink(root / "latest") == second.folder.name
    assert sorted(p.name for p in root.iterdir()) == [second.folder.name, "latest", "latest.duckdb"]
    # Published files are read-only.
    assert not os.stat(second.database).st_mode & 0o222


def test_a_snapshot_published_after_a_withdrawal_never_takes_a_withdrawn_name(working, tmp_path):
    """A tightened privacy rule withdraws every snapshot; the next publish, even in the same second, gets a name of
    its own (found in CI: two runs within one second reused it, so a noted path showed other data)."""
    root = tmp_path / "extracts"
    first = _publish(working, root, PUBLISHED)
    same_second = _publish(working, root, PUBLISHED + dt.timedelta(microseconds=1))
    assert same_second.folder.name == f"{first.folder.name}-2"
    assert analyst_extracts.withdraw(root) == [first.folder, same_second.folder]
    assert not first.folder.exists() and not (root / "latest").is_symlink()
    again = _publish(working, root, PUBLISHED)
    assert again.folder.name == f"{first.folder.name}-3"
    assert os.readlink(root / "latest") == again.folder.name


@pytest.mark.file_only(FILE_LOCK)
def test_a_snapshot_opens_while_a_run_holds_the_working_file(working, tmp_path):
    root = tmp_path / "extracts"
    _publish(working, root)
    with warehouse.connect(working) as writer:  # a run writing the warehouse
        writer.execute("CREATE TABLE marts.scratch AS SELECT 1 AS x")
        # Another process cannot open the working file at all...
        blocked = subprocess.run([str(DUCKDB_CLI), "-readonly", str(working), "-c", "SELECT 1"],
                                 capture_output=True, text=True)
        assert blocked.returncode != 0 and "lock" in (blocked.stderr + blocked.stdout).lower()
        # ...but opens the published snapshot with the duckdb command line, as an analyst would.
        shown = subprocess.run([str(DUCKDB_CLI), "-readonly", "-csv", str(root / "latest.duckdb"), "-c",
                                "SELECT count(*) FROM marts.fleet_daily"], capture_output=True, text=True, check=True)
        assert int(shown.stdout.split()[-1]) > 0


def test_custom_extract_cuts_tables_and_days(published, tmp_path):
    snapshot = published.database
    since = END - dt.timedelta(days=3)
    out = tmp_path / "cut.duckdb"
    result = analyst_extracts.custom_extract(snapshot, out, tables=["fleet_daily", "marts.device_streaks",
                                                                    "raw_cheeko.ai_agent_chat_history", "ai_device"],
                                             since=since)
    assert list(result.rows) == ["marts.fleet_daily", "marts.device_streaks", "raw_cheeko.ai_agent_chat_history",
                                 "raw_cheeko.ai_device"]  # in the order asked
    assert result.whole == ["raw_cheeko.ai_device"]
    assert _query(out, "SELECT min(day), max(day), count(*) FROM marts.fleet_daily") == [(since, END, 4)]
    assert _query(out, "SELECT min(as_of_date) >= ? FROM marts.device_streaks", [since]) == [(True,)]
    assert _query(out, "SELECT min(created_at) >= ?::TIMESTAMPTZ FROM raw_cheeko.ai_agent_chat_history",
                  [dt.datetime.combine(since, dt.time(), dt.UTC)]) == [(True,)]
    assert result.rows["raw_cheeko.ai_device"] == _query(snapshot, "SELECT count(*) FROM raw_cheeko.ai_device")[0][0]
    assert _query(out, "SELECT count(*) FROM duckdb_columns() WHERE schema_name IN ('marts', 'raw_cheeko', 'raw_cognova') AND comment IS NULL") == [(0,)]
    parquet = tmp_path / "fleet.parquet"
    analyst_extracts.custom_extract(snapshot, parquet, tables=["fleet_daily"], since=since)
    with warehouse.in_memory() as con:
        assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(parquet)]).fetchone() == (4,)


def _key_order(path: Path, table: str, key: tuple[str, ...]) -> list[tuple]:
    """The key columns of ``table`` (a query of one file, e.g. ``read_csv(?)``) in the order the rows are stored."""
    with warehouse.in_memory() as con:
        con.execute("SET threads = 1")  # rows come back in stored order
        return con.execute(f"SELECT {', '.join(key)} FROM {table}", [str(path)]).fetchall()


def _in_order(rows: list[tuple]) -> bool:
    return rows == sorted(rows, key=lambda row: tuple((v is None, v) for v in row))


@pytest.mark.long_on_lake  # the snapshot file's own behaviour, whatever the warehouse behind it
def test_extracts_are_sorted_by_grain_and_the_same_data_gives_the_same_bytes(published, working, tmp_path):
    first, second = published, _publish(working, tmp_path / "two")  # two copies of the same warehouse
    entries = dictionary.lookup()
    # Every published table has a grain, and it is made of its columns.
    columns: dict[str, set[str]] = {}
    for qualified, column in _query(first.database, "SELECT schema_name || '.' || table_name, column_name "
                                                    "FROM duckdb_columns()"):
        columns.setdefault(qualified, set()).add(column)
    for qualified in first.rows:
        assert entries[qualified].key and set(entries[qualified].key) <= columns[qualified], qualified
    # The Parquet marts of two snapshots of the same data are the same bytes, in key order.
    for mart in MARTS:
        one, two = (p.folder / "marts" / f"{mart.name}.parquet" for p in (first, second))
        assert one.read_bytes() == two.read_bytes(), mart.name
        assert _in_order(_key_order(one, "read_parquet(?)", mart.key)), mart.name
    # Two CSV (and Parquet) extracts of the same snapshot are the same bytes; the CSV's rows in key order.
    for table, key in (("raw_cheeko.ai_agent_chat_history", ("id",)), ("daily_device_activity", ("activity_date", "mac_address"))):
        for suffix, reader in ((".csv", "read_csv(?)"), (".parquet", "read_parquet(?)")):
            a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
            analyst_extracts.custom_extract(first.database, a, tables=[table])
            analyst_extracts.custom_extract(second.database, b, tables=[table])
            assert a.read_bytes() == b.read_bytes(), (table, suffix)
            rows = _key_order(a, reader, key)
            assert len(rows) > 10 and _in_order(rows), (table, suffix)
    # The tables of a .duckdb extract (and the snapshot's marts) are stored in key order.
    out = tmp_path / "cut.duckdb"
    analyst_extracts.custom_extract(first.database, out, tables=["marts.*", "raw_cheeko.analytics_game_attempts"])
    for path, tables in ((out, ("marts.learning_progress", "marts.game_daily", "raw_cheeko.analytics_game_attempts")),
                         (first.database, ("marts.learning_progress", "marts.game_daily"))):
        for qualified in tables:
            with warehouse.connect(path, read_only=True) as con:
                con.execute("SET threads = 1")
                rows = con.execute(f"SELECT {', '.join(entries[qualified].key)} FROM {qualified}").fetchall()
            assert rows and _in_order(rows), (path.name, qualified)


@pytest.mark.long_on_lake  # the snapshot file's own behaviour, whatever the warehouse behind it
@pytest.mark.parametrize("out, tables, message", [
    ("x.parquet", ["marts.*"], f"holds one table, and {len(MARTS)} were chosen"),
    ("x.duckdb", ["no_such_table"], "no table 'no_such_table' in the snapshot; choose from: marts."),
    ("x.duckdb", ["memory_chunks"], "'memory_chunks' is ambiguous: raw_cheeko.memory_chunks, raw_cognova.memory_chunks"),
    ("x.xlsx", None, "must end in .duckdb, .parquet or .csv"),
    ("x.duckdb", ["_warehouse.cursors"], "no table '_warehouse.cursors'"),
])
def test_custom_extract_errors_name_what_to_change(published, tmp_path, out, tables, message):
    snapshot = published.database
    with pytest.raises(ExtractError, match=re.escape(message)):
        analyst_extracts.custom_extract(snapshot, tmp_path / out, tables=tables)
    assert not (tmp_path / out).exists() and not list(tmp_path.glob(".x.*"))


@pytest.mark.file_only(FILE_LOCK)
def test_a_second_process_waits_for_the_working_file_then_names_it(working):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(float(sys.argv[2]))", str(working), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(warehouse.WarehouseBusy, match=re.escape(str(working))):
            with warehouse.connect(working, wait=0.5):
                pass
        began = time.monotonic()
        with warehouse.connect(working) as con:  # waits for the holder to finish instead of failing
            assert con.execute("SELECT count(*) FROM marts.fleet_daily").fetchone()[0] > 0
        assert time.monotonic() - began > 1
    finally:
        holder.kill()
        holder.wait()


def test_columns_the_policy_drops_today_are_never_published_and_odd_names_are_quoted(working, tmp_path, classify):
    # An older load kept a column the policy drops now; a source column has a quote in its name.
    classify("cognova", "account", 'odd"name; --')
    with warehouse.connect(working) as con:
        con.execute("ALTER TABLE raw_cheeko.sys_user ADD COLUMN password VARCHAR DEFAULT 'hunter2'")
        con.execute('ALTER TABLE raw_cognova.account ADD COLUMN "odd""name; --" INTEGER DEFAULT 7')
    published = _publish(working, tmp_path / "extracts")
    columns = {(t, c) for t, c in _query(published.database, "SELECT table_name, column_name FROM duckdb_columns() "
                                                             "WHERE schema_name IN ('raw_cheeko', 'raw_cognova')")}
    assert ("sys_user", "password") not in columns
    assert ("account", 'odd"name; --') in columns
    assert _query(published.database, 'SELECT DISTINCT "odd""name; --" FROM raw_cognova.account') == [(7,)]


def test_a_custom_extract_never_replays_a_stale_write_ahead_log(published, tmp_path):
    snapshot = published.database
    out = tmp_path / "mine.duckdb"
    (tmp_path / "mine.duckdb.wal").write_bytes(b"left by a session that crashed")
    with pytest.raises(ExtractError, match="mine.duckdb.wal exists beside it"):
        analyst_extracts.custom_extract(snapshot, out, tables=["fleet_daily"])
    assert not out.exists()


# -- incremental publishing: a snapshot starts from the previous one and replaces only what changed ----------------


def _as_read(path: Path) -> dict:
    """Everything a reader of a snapshot file sees but when it was published (its time, and on a lake the lake's
    version it was copied from, compared by ``_assert_same_as_a_full_copy``): tables and columns with their types and
    comments, the dictionary, snapshot_info, and every table's rows (a mart's in stored order)."""
    with warehouse.connect(path, read_only=True) as con:
        con.execute("SET threads = 1")  # rows come back in stored order
        seen = {
            "tables": con.execute("SELECT schema_name, table_name, comment FROM duckdb_tables() ORDER BY ALL").fetchall(),
            "columns": con.execute("SELECT schema_name, table_name, column_index, column_name, data_type, comment "
                                   "FROM duckdb_columns() ORDER BY ALL").fetchall(),
            "dictionary": con.execute("SELECT * FROM main.data_dictionary").fetchall(),
            "info": con.execute("SELECT * EXCLUDE (published_at, lake_version) FROM main.snapshot_info").fetchall(),
        }
        for schema, table, _ in seen["tables"]:
            if schema != "main":  # a raw table is stored as it comes (no order promised): compared sorted
                order = "" if schema == "marts" else "ORDER BY ALL"
                seen[f"{schema}.{table}"] = con.execute(f'SELECT * FROM "{schema}"."{table}" {order}').fetchall()
    return seen


def _files(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_same_as_a_full_copy(published: analyst_extracts.Published, working: Location, tmp_path: Path) -> None:
    """``published`` holds for a reader exactly what a full copy of ``working`` made now would hold."""
    full = _publish(working, tmp_path / f"full-{published.folder.name}")
    assert full.started_from is None
    assert _as_read(published.database) == _as_read(full.database)
    assert published.rows == full.rows
    # The lake's version each was copied from: none from the file; on a lake, the full copy's is as late or later
    # (a test may change the lake between the two, as a run would).
    versions = [_query(p.database, "SELECT lake_version FROM snapshot_info")[0][0] for p in (published, full)]
    if isinstance(working, Path):
        assert versions == [None, None]
    else:
        assert None not in versions and versions[0] <= versions[1], versions
    # The Parquet marts are the same bytes; the dictionary the same text but for its title.
    for mart in MARTS:
        name = f"marts/{mart.name}.parquet"
        assert (published.folder / name).read_bytes() == (full.folder / name).read_bytes(), name
    assert ((published.folder / "data_dictionary.md").read_text().split("\n", 1)[1]
            == (full.folder / "data_dictionary.md").read_text().split("\n", 1)[1])
    fingerprints = [json.loads((p.folder / analyst_extracts.STATE_FILE).read_text())["tables"] for p in (published, full)]
    assert fingerprints[0] == fingerprints[1]


def _sql(path: Location, *statements: str) -> None:
    with warehouse.connect(path) as con:
        for statement in statements:
            con.execute(statement)


def test_a_publish_rewrites_only_the_table_that_changed_and_equals_a_full_copy(working, tmp_path):
    root = tmp_path / "extracts"
    first = _publish(working, root)
    assert first.started_from is None and first.full_copy_reason == "no previous snapshot"
    assert set(first.copied) == set(first.rows) and not first.reused and not first.patched
    before = _files(first.folder)
    # One value of a table without days changes in place: the same number of rows.
    _sql(working, "UPDATE raw_cheeko.ai_device SET alias = 'renamed' WHERE id = (SELECT min(id) FROM raw_cheeko.ai_device)")
    second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1))
    assert second.started_from == first.folder
    assert second.copied == ["raw_cheeko.ai_device"] and not second.patched and not second.dropped
    assert set(second.reused) == set(second.rows) - {"raw_cheeko.ai_device"}
    assert second.parquet_reused == [f"marts.{m.name}" for m in MARTS]  # no mart changed: the same files
    for mart in MARTS:  # hard links to the previous snapshot's files, which stay read-only
        old, new = (p.folder / "marts" / f"{mart.name}.parquet" for p in (first, second))
        assert new.stat().st_ino == old.stat().st_ino and not new.stat().st_mode & 0o222
    assert second.metadata() == {"snapshot_mode": "incremental", "started_from": first.folder.name,
                                 "full_copy_reason": "", "tables_copied": 1, "tables_patched": 0, "days_replaced": 0,
                                 "tables_reused": len(second.rows) - 1, "tables_dropped": 0,
                                 "parquet_marts_reused": len(MARTS)}
    assert _query(second.database, "SELECT count(*) FROM raw_cheeko.ai_device WHERE alias = 'renamed'") == [(1,)]
    _assert_same_as_a_full_copy(second, working, tmp_path)
    # The snapshot started from is left as it was, byte for byte, and still read-only.
    assert _files(first.folder) == before and not os.stat(first.database).st_mode & 0o222
    # Nothing changed since: everything is reused.
    third = _publish(working, root, PUBLISHED + dt.timedelta(hours=2))
    assert not third.copied and not third.patched and set(third.reused) == set(third.rows)
    assert _query(third.database, "SELECT run_id FROM snapshot_info") == [("test-run",)]


@pytest.mark.long_on_lake  # the snapshot file's own behaviour; a rewrite from a lake is tested above
def test_changed_days_are_replaced_in_place_keeping_marts_in_key_order(working, tmp_path):
    root = tmp_path / "extracts"
    _publish(working, root)
    _sql(working,
         # A value changed in place in one day of a raw daily table: the same number of rows.
         "UPDATE raw_cheeko.ai_agent_chat_history SET content = content + 1 "
         "WHERE id = (SELECT min(id) FROM raw_cheeko.ai_agent_chat_history)",
         # A new day of a mart led by its day, and a changed value on its last day...
         "INSERT INTO marts.fleet_daily (day, active_devices) SELECT max(day) + 1, 3 FROM marts.fleet_daily",
         "UPDATE marts.token_usage_daily SET total_tokens = total_tokens + 1 "
         "WHERE usage_date = (SELECT max(usage_date) FROM marts.token_usage_daily)",
         # ...and a change in the middle of one: days inserted at its end would break its order.
         "UPDATE marts.daily_device_activity SET user_turns = user_turns + 1 "
         "WHERE activity_date = (SELECT min(activity_date) + 2 FROM marts.daily_device_activity)")
    second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1))
    assert second.patched == {"marts.fleet_daily": 1, "marts.token_usage_daily": 1,
                              "raw_cheeko.ai_agent_chat_history": 1}
    assert second.copied == ["marts.daily_device_activity"]
    assert second.how().startswith(f"from {second.started_from.name}: 1 tables written whole, 3 patched (3 days")
    entries = dictionary.lookup()
    for qualified in ("marts.fleet_daily", "marts.token_usage_daily", "marts.daily_device_activity"):
        with warehouse.connect(second.database, read_only=True) as con:
            con.execute("SET threads = 1")
            rows = con.execute(f"SELECT {', '.join(entries[qualified].key)} FROM {qualified}").fetchall()
        assert rows and _in_order(rows), qualified
    _assert_same_as_a_full_copy(second, working, tmp_path)


@pytest.mark.long_on_lake  # the snapshot file's own behaviour; a rewrite from a lake is tested above
def test_a_table_gone_is_dropped_and_a_new_one_added(working, tmp_path, classify):
    root = tmp_path / "extracts"
    _publish(working, root)
    classify("cognova", "reminders_v2", "id", "message")
    # A table nobody classified has nothing to publish: it is left out, not published empty.
    _sql(working, "DROP TABLE raw_cognova.reminders",
         "CREATE TABLE raw_cognova.reminders_v2 AS SELECT 1 AS id, 'soon' AS message",
         "CREATE TABLE raw_cognova.unreviewed AS SELECT 1 AS id, 'secret plans' AS note")
    second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1))
    assert second.dropped == ["raw_cognova.reminders"] and second.copied == ["raw_cognova.reminders_v2"]
    tables = {t for (t,) in _query(second.database, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw_cognova'")}
    assert "reminders" not in tables and "reminders_v2" in tables and "unreviewed" not in tables
    _sql(working, "DROP TABLE raw_cognova.unreviewed")  # a full copy (below) leaves it out the same way
    _assert_same_as_a_full_copy(second, working, tmp_path)


def test_schema_drift_and_a_changed_privacy_rule_rewrite_the_table(working, tmp_path, monkeypatch, classify):
    root = tmp_path / "extracts"
    classify("cheeko", "ai_device", "firmware")
    _publish(working, root)
    # A column the policy withholds is never published: the table is unchanged for readers and reused.
    _sql(working, "ALTER TABLE raw_cheeko.sys_user ADD COLUMN password VARCHAR DEFAULT 'hunter2'")
    second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1))
    assert "raw_cheeko.sys_user" in second.reused and not second.copied
    # A new column, a rule that now drops a column, and pseudonyms made with a new key (the same rows, other
    # values) change what is published: each written whole.
    _sql(working, "ALTER TABLE raw_cheeko.ai_device ADD COLUMN firmware VARCHAR DEFAULT 'v2'",
         "UPDATE raw_cheeko.sys_user SET email = sha256('new key' || email) WHERE email IS NOT NULL")
    policy = {key: dict(rules) for key, rules in privacy.policy().items()}
    policy.setdefault(("cheeko", "parent_profile"), {})["timezone"] = "drop"
    monkeypatch.setattr(privacy, "policy", lambda path=privacy.POLICY_FILE: policy)
    third = _publish(working, root, PUBLISHED + dt.timedelta(hours=2))
    assert sorted(third.copied) == ["raw_cheeko.ai_device", "raw_cheeko.parent_profile", "raw_cheeko.sys_user"]
    columns = set(_query(third.database, "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'raw_cheeko'"))
    assert ("ai_device", "firmware") in columns and ("parent_profile", "timezone") not in columns
    assert ("sys_user", "password") not in columns
    _assert_same_as_a_full_copy(third, working, tmp_path)


def _break_state(folder: Path, change) -> None:
    """Apply ``change`` to a published (read-only) snapshot folder."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644) if path.is_file() else None
    change(folder)


@pytest.mark.long_on_lake  # the snapshot file's own behaviour, whatever the warehouse behind it
@pytest.mark.parametrize("change, reason", [
    (lambda f: (f / analyst_extracts.STATE_FILE).unlink(), "published before snapshots were incremental"),
    (lambda f: (f / analyst_extracts.STATE_FILE).write_text(
        (f / analyst_extracts.STATE_FILE).read_text().replace(f'"layout": {analyst_extracts.LAYOUT}', '"layout": 0')),
     "is layout 0"),
    (lambda f: (f / analyst_extracts.STATE_FILE).write_text("{not json"), "is unreadable"),
    (lambda f: (f / analyst_extracts.SNAPSHOT_FILE).write_bytes(b"not a database" * 1000), "cannot be copied or opened"),
])
def test_a_previous_snapshot_that_cannot_be_started_from_gives_a_full_copy(working, tmp_path, change, reason):
    root = tmp_path / "extracts"
    first = _publish(working, root)
    _break_state(first.folder, change)
    _sql(working, "UPDATE raw_cheeko.ai_device SET alias = 'renamed'")
    second = _publish(working, root, PUBLISHED + dt.timedelta(hours=1))
    assert second.started_from is None and reason in second.full_copy_reason
    assert set(second.copied) == set(second.rows) and second.metadata()["snapshot_mode"] == "full copy"
    _assert_same_as_a_full_copy(second, working, tmp_path)


@pytest.mark.long_on_lake  # the snapshot file's own size, whatever the warehouse behind it
def test_the_file_stays_bounded_over_many_publishes_and_a_full_copy_comes_round(working, tmp_path, monkeypatch):
    root = tmp_path / "extracts"
    monkeypatch.setattr(analyst_extracts, "FULL_COPY_EVERY", 8)
    published = [_publish(working, root)]
    sizes = [published[0].database.stat().st_size]
    for n in range(1, 10):
        # Like a one-day run: the last day of a daily table redone and a new day, the marts' new day, a dimension.
        _sql(working,
             "UPDATE raw_cheeko.ai_agent_chat_history SET content = content + 1 WHERE id IN "
             "(SELECT id FROM raw_cheeko.ai_agent_chat_history ORDER BY created_at DESC LIMIT 3)",
             "INSERT INTO raw_cheeko.ai_agent_chat_history SELECT * REPLACE (uuid() AS id, "
             "created_at + INTERVAL 1 DAY AS created_at) FROM raw_cheeko.ai_agent_chat_history "
             "ORDER BY created_at DESC LIMIT 5",
             "INSERT INTO marts.fleet_daily (day, active_devices) SELECT max(day) + 1, 3 FROM marts.fleet_daily",
             f"UPDATE raw_cheeko.ai_device SET alias = 'run {n}'")
        published.append(_publish(working, root, PUBLISHED + dt.timedelta(hours=n), keep=2))
        sizes.append(published[-1].database.stat().st_size)
    modes = [p.metadata()["snapshot_mode"] for p in published]
    assert modes == ["full copy"] + ["incremental"] * 7 + ["full copy", "incremental"]
    assert "publishes since the last full copy" in published[8].full_copy_reason
    assert all("raw_cheeko.ai_agent_chat_history" in p.patched for p in published[1:8])
    # Seven incremental publishes on, the file is about the size of the full copy made one publish later.
    assert sizes[7] <= 1.25 * sizes[8], sizes
    _assert_same_as_a_full_copy(published[-1], working, tmp_path)
    # A file grown past MAX_GROWTH times the size of a full copy of its rows is not started from.
    assert sizes[9] > sizes[8]
    monkeypatch.setattr(analyst_extracts, "MAX_GROWTH", 1.0)
    again = _publish(working, root, PUBLISHED + dt.timedelta(hours=10), keep=2)
    assert again.started_from is None and "has grown to" in again.full_copy_reason
