"""Extraction into the DuckDB raw layer, against a real PostgreSQL and a real warehouse (the DuckDB file, or a
DuckLake with --warehouse-backend=ducklake): exact types, every load strategy, backfills, idempotent re-runs,
interruption, schema drift, one snapshot per run, and the privacy policy."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipelines import extract, generator, postgres, warehouse
from pipelines.postgres import Snapshot
from pipelines.source_tables import SourceTable, source_table, source_tables
from pipelines.warehouse import Location

pytestmark = pytest.mark.both_backends

END = dt.date(2026, 3, 31)
ALL_DAYS = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
KEY = "test-pseudonym-key"


def run_sql(url: str, statement: str, params: tuple | dict = ()) -> None:
    with postgres.connect(url) as conn:
        conn.execute(statement, params)


def extract_tables(path: Location, urls: dict[str, str], tables, window=ALL_DAYS) -> dict[str, extract.LoadResult]:
    """Extract ``tables`` with one snapshot per database, as one run does; daily tables over ``window``."""
    tables = list(tables)
    return extract.extract_tables(path, urls, tables, pseudonym_key=KEY, windows={t.key: window for t in tables})


def built_warehouse(pair, folder: Path, options: generator.Options, *, as_of: dt.datetime, first_day: dt.date,
                    last_day: dt.date, where: Location | None = None) -> tuple[Location, generator.Result]:
    """Generate a fleet into ``pair``, extract every table of every day and build the marts: a warehouse
    (``where``, a new one on either backend; default the file ``folder/w.duckdb``)."""
    from pipelines import rollups

    result = generator.generate(pair.cheeko, pair.cognova, options, folder / "gen", progress=lambda _: None)
    path = folder / "w.duckdb" if where is None else where
    extract_tables(path, {"cheeko": pair.cheeko, "cognova": pair.cognova}, source_tables(),
                   window=(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)))
    with warehouse.connect(path) as con:
        rollups.build(con, as_of_time=as_of, first_day=first_day, last_day=last_day)
    return path, result


def content_hash(path: Location) -> dict[str, str]:
    """Order-independent hash of every raw table."""
    with warehouse.connect(path, read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name LIKE 'raw_%' ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": con.execute(f'SELECT count(*) || \':\' || coalesce(md5(string_agg(x::VARCHAR, \'|\' ORDER BY x::VARCHAR)), \'\') '
                                        f'FROM {s}."{t}" x').fetchone()[0] for s, t in tables}


def books(path: Location) -> dict[str, list[tuple]]:
    """Every row of the ``_warehouse`` bookkeeping, sorted."""
    with warehouse.connect(path, read_only=True) as con:
        return {book: sorted(con.execute(f"SELECT * FROM _warehouse.{book}").fetchall(), key=repr)
                for book in ("captures", "cursors", "loads", "source_columns")}


def scalar(path: Location, statement: str, params: list | dict | None = None):
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(statement, params or []).fetchone()[0]


@pytest.fixture
def fleet(make_databases, warehouse_at, tmp_path):
    """A freshly generated small fleet and an empty warehouse."""
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=20, days=7, seed=4, end=END),
                       tmp_path / "gen", progress=lambda _: None)
    return {"cheeko": pair.cheeko, "cognova": pair.cognova}, warehouse_at


# -- exact types ----------------------------------------------------------------------------------


def test_every_type_round_trips_exactly(make_databases, warehouse_at, classify):
    url = make_databases().cheeko
    classify("cheeko", "type_probe", "id", "u", "jb", "j", "tags", "ints", "exact", "money", "tiny", "at", "day", "r",
             "dp", "flag", "t", "vc", "small", "updated_at")
    run_sql(url, """CREATE TABLE type_probe (
        id bigint PRIMARY KEY, u uuid, jb jsonb, j json, tags text[], ints integer[], exact numeric(38,10),
        money numeric(10,3), tiny numeric(3,3), at timestamptz, day date, r real, dp double precision, flag boolean,
        t text, vc varchar(20), small smallint, updated_at timestamptz)""")
    probe_uuid = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
    rows = [
        (1, probe_uuid, json.dumps({"a": [1, 2, {"b": None}], "ü": "✓"}), '{"k": 1}', ["a", "b,c", 'quo"te', "ünï 🦖"], [1, -2],
         Decimal("1234567890123456789012345678.0123456789"), Decimal("-9999999.999"), Decimal("0.001"),
         dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))), dt.date(2024, 2, 29), 1.5, 2.0**-1074,
         True, "emoji 🦖 and 中文 and \u00e9", "x" * 20, -32768, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        (2, None, None, None, [], [], None, None, None, None, None, None, None, None, "", None, None, None),
    ]
    with postgres.connect(url) as conn:
        conn.cursor().executemany("INSERT INTO type_probe VALUES (" + ", ".join(["%s"] * 18) + ")", rows)
    table = SourceTable("cheeko", "type_probe", "full", "probe")
    path = warehouse_at
    extract_tables(path, {"cheeko": url}, [table])
    with warehouse.connect(path, read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'type_probe'").fetchall())
        got = con.execute("SELECT * FROM raw_cheeko.type_probe ORDER BY id").fetchall()
    assert types["exact"] == "DECIMAL(38,10)" and types["money"] == "DECIMAL(10,3)" and types["tiny"] == "DECIMAL(3,3)"
    assert types["jb"] == "JSON" and types["tags"] == "VARCHAR[]" and types["u"] == "UUID" and types["at"] == "TIMESTAMP WITH TIME ZONE"
    first, second = got
    assert first[1] == probe_uuid
    assert json.loads(first[2]) == {"a": [1, 2, {"b": None}], "ü": "✓"} and json.loads(first[3]) == {"k": 1}
    assert first[4] == ["a", "b,c", 'quo"te', "ünï 🦖"] and first[5] == [1, -2]
    assert first[6] == Decimal("1234567890123456789012345678.0123456789") and first[7] == Decimal("-9999999.999")
    assert first[8] == Decimal("0.001")
    assert first[9] == dt.datetime(2026, 3, 28, 20, 0, tzinfo=dt.UTC)  # converted to UTC
    assert first[10] == dt.date(2024, 2, 29) and first[11] == 1.5 and first[12] == 2.0**-1074 and first[13] is True
    assert first[14] == "emoji 🦖 and 中文 and \u00e9" and first[15] == "x" * 20 and first[16] == -32768
    assert second[4] == [] and second[5] == [] and second[14] == ""
    assert all(v is None for v in (second[1], second[2], second[6], second[9], second[13]))


def test_every_orm_type_spelling_extracts(make_databases, warehouse_at, classify):
    """The spellings Prisma and Drizzle produce: precision on times, naive timestamps (read as UTC), varchar ids,
    smallint flags, arrays, json and jsonb, and a pgvector column without a dimension (the policy drops it)."""
    url = make_databases().cheeko
    classify("cheeko", "orm_probe", "id", "at6", "at3", "naive", "at0", "flag", "tags", "doc", "raw", "day", "price",
             "clock", "blob")
    run_sql(url, """CREATE TABLE orm_probe (
        id varchar(36) PRIMARY KEY, at6 timestamp(6) with time zone, at3 timestamp(3), naive timestamp without time zone,
        at0 timestamptz(0), flag smallint, tags text[], doc jsonb, raw json, day date, price numeric(10,3), clock time(3),
        blob bytea)""")
    run_sql(url, "INSERT INTO orm_probe VALUES ('0f8fad5b-d9cb-469f-a165-70867728950e', '2026-03-29 01:30:00.123456+05:30', "
                 "'2026-03-29 01:30:00.123', '2024-02-29 23:59:59.999999', '2026-01-01 00:00:00.6+00', 1, '{a,b}', "
                 "'{\"k\": [1]}', '{\"j\": 2}', '2026-03-29', 1.5, '10:11:12.345', '\\x00ff')")
    run_sql(url, "ALTER TABLE memory_chunks ALTER COLUMN embedding TYPE vector")
    path = warehouse_at
    probe = SourceTable("cheeko", "orm_probe", "full", "probe")
    extract_tables(path, {"cheeko": url}, [probe, source_table("cheeko", "memory_chunks")])
    with warehouse.connect(path, read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'orm_probe'").fetchall())
        row = con.execute("SELECT * FROM raw_cheeko.orm_probe").fetchone()
        recorded = dict(con.execute("SELECT column_name, source_type FROM _warehouse.source_columns "
                                    "WHERE table_name = 'orm_probe'").fetchall())
    assert types["id"] == "VARCHAR" and types["flag"] == "SMALLINT" and types["tags"] == "VARCHAR[]"
    assert {types[c] for c in ("at6", "at3", "naive", "at0")} == {"TIMESTAMP WITH TIME ZONE"}
    assert types["doc"] == types["raw"] == "JSON" and types["price"] == "DECIMAL(10,3)" and types["clock"] == "TIME"
    assert row[1] == dt.datetime(2026, 3, 28, 20, 0, 0, 123456, tzinfo=dt.UTC)
    assert row[2] == dt.datetime(2026, 3, 29, 1, 30, 0, 123000, tzinfo=dt.UTC)  # naive: its wall time is UTC
    assert row[3] == dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert row[4] == dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)  # timestamptz(0) rounded at the source
    assert row[5] == 1 and row[6] == ["a", "b"] and json.loads(row[7]) == {"k": [1]} and row[12] == b"\x00\xff"
    # The exact spelling is what the bookkeeping records.
    assert recorded["at6"] == "timestamp(6) with time zone" and recorded["at3"] == "timestamp(3) without time zone"
    assert recorded["id"] == "character varying(36)"


def test_naive_timestamps_load_incrementally_and_by_day(make_databases, warehouse_at, classify):
    """Prisma's default timestamp(3) without a time zone as cursor and as event time: never compared with an aware value."""
    url = make_databases().cheeko
    classify("cheeko", "naive_dim", "id", "name", "updated_at")
    classify("cheeko", "naive_events", "id", "happened_at")
    run_sql(url, "CREATE TABLE naive_dim (id varchar(36) PRIMARY KEY, name text, updated_at timestamp(3))")
    run_sql(url, "CREATE TABLE naive_events (id bigint PRIMARY KEY, happened_at timestamp(3) NOT NULL)")
    run_sql(url, "INSERT INTO naive_dim VALUES ('a', 'one', '2026-03-01 10:00:00'), ('b', 'two', '2026-03-01 11:00:00')")
    run_sql(url, "INSERT INTO naive_events VALUES (1, '2026-03-01 23:59:59.999'), (2, '2026-03-02 00:00:00'), "
                 "(3, '2026-03-02 23:30:00')")
    dim = SourceTable("cheeko", "naive_dim", "incremental", "probe", cursor=("updated_at",), reconcile_deletes=True)
    events = SourceTable("cheeko", "naive_events", "daily", "probe", event_time=("happened_at",))
    path = warehouse_at
    day = (dt.datetime(2026, 3, 2, tzinfo=dt.UTC), dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    first = extract_tables(path, {"cheeko": url}, [dim, events], window=day)
    assert first[dim.key].watermark == dt.datetime(2026, 3, 1, 11, tzinfo=dt.UTC)
    loaded = first[events.key]
    assert loaded.rows_written == loaded.source_rows == loaded.warehouse_rows == 2  # UTC day 2 March: ids 2 and 3
    run_sql(url, "UPDATE naive_dim SET name = 'changed', updated_at = '2026-03-01 12:00:00' WHERE id = 'a'")
    run_sql(url, "DELETE FROM naive_dim WHERE id = 'b'")
    second = extract_tables(path, {"cheeko": url}, [dim], window=day)[dim.key]
    assert second.watermark == dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC) and second.rows_deleted == 1
    assert scalar_rows(path, "SELECT id, name FROM raw_cheeko.naive_dim") == [("a", "changed")]
    with Snapshot(url) as snapshot:
        assert snapshot.bounds("naive_events", ("happened_at",), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == (
            dt.datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 23, 30, tzinfo=dt.UTC))


def test_naive_event_times_in_one_window_read_as_utc_whatever_the_servers_time_zone(make_databases, warehouse_at,
                                                                                   classify):
    """Several naive event times are read in one query at the source (extract._at_source): compared as UTC
    instants, not in the session's time zone (here New York's, five hours from UTC in March)."""
    pair = make_databases()
    url = pair.cheeko
    run_sql(url, f"ALTER DATABASE \"{urlsplit(url).path.lstrip('/')}\" SET timezone TO 'America/New_York'")
    classify("cheeko", "naive_pairs", "id", "started_at", "logged_at")
    run_sql(url, "CREATE TABLE naive_pairs (id bigint PRIMARY KEY, started_at timestamp(3), logged_at timestamp(3) NOT NULL)")
    run_sql(url, "INSERT INTO naive_pairs VALUES (1, NULL, '2026-03-01 23:59:59.999'), (2, '2026-03-02 00:00:00', "
                 "'2026-03-01 12:00:00'), (3, NULL, '2026-03-02 23:30:00'), (4, '2026-03-03 00:00:00', "
                 "'2026-03-02 10:00:00'), (5, '2026-03-02 21:00:00', '2026-03-03 04:00:00')")
    pairs = SourceTable("cheeko", "naive_pairs", "daily", "probe", event_time=("started_at", "logged_at"))
    day = (dt.datetime(2026, 3, 2, tzinfo=dt.UTC), dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    result = extract_tables(warehouse_at, {"cheeko": url}, [pairs], window=day)[pairs.key]
    assert sorted(r[0] for r in scalar_rows(warehouse_at, "SELECT id FROM raw_cheeko.naive_pairs")) == [2, 3, 5]
    assert result.rows_written == result.source_rows == result.warehouse_rows == 3


def test_a_declared_column_the_source_lacks_fails_that_table_alone_in_one_line(make_databases, warehouse_at):
    pair = make_databases()
    run_sql(pair.cheeko, "ALTER TABLE rfid_scan_log RENAME COLUMN created_at TO scanned_at")
    path = warehouse_at
    urls = {"cheeko": pair.cheeko}
    with pytest.raises(extract.ExtractionError) as failed:
        extract_tables(path, urls, [source_table("cheeko", "rfid_scan_log")])
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("cheeko.rfid_scan_log: event_time created_at is not a column of the source table "
                              "(declared in pipelines/source_tables.toml [cheeko.rfid_scan_log]; the table has ")
    # The other tables are not held back by it.
    result = extract_tables(path, urls, [source_table("cheeko", "ai_device")])
    assert result["cheeko.ai_device"].rows_total == 0


@pytest.mark.parametrize(("column", "pg_type"), [("spot", "point"), ("loose", "numeric"), ("wide", "numeric(40,2)")])
def test_a_type_without_an_exact_mapping_is_refused_by_name(make_databases, warehouse_at, column, pg_type, classify):
    """Better a clear error than a silently rounded number (the extension reads bare numeric as DOUBLE)."""
    url = make_databases().cheeko
    classify("cheeko", "odd_probe", "id", column)
    run_sql(url, f"CREATE TABLE odd_probe (id bigint PRIMARY KEY, {column} {pg_type})")
    with pytest.raises(extract.ExtractionError, match=rf"cheeko.odd_probe.{column}: no exact warehouse type for '{re.escape(pg_type)}'"):
        extract_tables(warehouse_at, {"cheeko": url}, [SourceTable("cheeko", "odd_probe", "full", "probe")])


# -- strategies ---------------------------------------------------------------------------------------


def test_full_refresh_drops_rows_deleted_at_the_source(fleet):
    urls, path = fleet
    table = source_table("cheeko", "content_library")
    first = extract_tables(path, urls, [table])[table.key]
    run_sql(urls["cheeko"], "DELETE FROM content_library WHERE id IN (1, 2)")
    second = extract_tables(path, urls, [table])[table.key]
    assert second.rows_total == first.rows_total - 2
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.content_library WHERE id IN (1, 2)") == 0


def test_incremental_picks_up_inserts_updates_late_commits_and_hard_deletes(fleet):
    urls, path = fleet
    table = source_table("cheeko", "kid_profile")
    first = extract_tables(path, urls, [table])[table.key]
    watermark = first.watermark
    # An update, an insert, a late commit (stamped 30 minutes before the watermark) and one too late to see.
    run_sql(urls["cheeko"], "UPDATE kid_profile SET grade = 'Grade 9', updated_at = %s WHERE id = 1", (watermark + dt.timedelta(hours=1),))
    run_sql(urls["cheeko"], "INSERT INTO kid_profile (id, user_id, name, interests, updated_at) VALUES (9001, 101, 'New Kid', '{}', %s)",
            (watermark + dt.timedelta(hours=2),))
    run_sql(urls["cheeko"], "UPDATE kid_profile SET grade = 'Late' WHERE id = 2")
    run_sql(urls["cheeko"], "UPDATE kid_profile SET updated_at = %s WHERE id = 2", (watermark - dt.timedelta(minutes=30),))
    run_sql(urls["cheeko"], "UPDATE kid_profile SET grade = 'Too late', updated_at = %s WHERE id = 3", (watermark - dt.timedelta(hours=5),))
    run_sql(urls["cheeko"], "DELETE FROM kid_profile WHERE id = 4")
    second = extract_tables(path, urls, [table])[table.key]
    grades = dict(scalar_rows(path, "SELECT id, grade FROM raw_cheeko.kid_profile WHERE id IN (1, 2, 3, 9001)"))
    assert grades[1] == "Grade 9" and grades[2] == "Late" and 9001 in grades
    # Outside the cursor's lookback, yet written after the previous run: change capture reads by transaction.
    assert grades[3] == "Too late"
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.kid_profile WHERE id = 4") == 0
    assert second.rows_deleted == 1 and second.watermark == watermark + dt.timedelta(hours=2)
    assert (first.capture, second.capture) == ("full reconciliation: no source snapshot recorded for this table yet", "xmin")
    assert second.rows_written == 4 and second.rows_repaired == 0  # exactly the rows written since: 1, 2, 3, 9001
    assert scalar(path, "SELECT count(*) - count(DISTINCT id) FROM raw_cheeko.kid_profile") == 0


def scalar_rows(path: Location, statement: str) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(statement).fetchall()


def test_a_future_stamped_row_does_not_push_the_watermark_ahead(fleet):
    urls, path = fleet
    table = source_table("cheeko", "kid_profile")
    extract_tables(path, urls, [table])
    run_sql(urls["cheeko"], "UPDATE kid_profile SET updated_at = now() + interval '30 days' WHERE id = 1")
    result = extract_tables(path, urls, [table])[table.key]
    assert result.watermark <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    run_sql(urls["cheeko"], "UPDATE kid_profile SET grade = 'Found', updated_at = now() WHERE id = 2")
    extract_tables(path, urls, [table])
    assert scalar(path, "SELECT grade FROM raw_cheeko.kid_profile WHERE id = 2") == "Found"


def test_soft_deleted_rows_are_kept_with_their_flag(fleet):
    urls, path = fleet
    table = source_table("cognova", "tasks")
    extract_tables(path, urls, [table])
    task_id = scalar_rows(path, "SELECT id FROM raw_cognova.tasks WHERE deleted_at IS NULL LIMIT 1")[0][0]
    at = dt.datetime(2026, 4, 2, 12, tzinfo=dt.UTC)
    run_sql(urls["cognova"], "UPDATE tasks SET deleted_at = %s, modified_at = %s WHERE id = %s", (at, at, task_id))
    extract_tables(path, urls, [table])
    assert scalar(path, "SELECT deleted_at FROM raw_cognova.tasks WHERE id = ?", [task_id]) == at


def test_a_backfill_replaces_exactly_its_days(fleet):
    urls, path = fleet
    table = source_table("cheeko", "analytics_media_playback")
    extract_tables(path, urls, [table])
    before = dict(scalar_rows(path, "SELECT CAST(created_at AS DATE), count(*) FROM raw_cheeko.analytics_media_playback GROUP BY 1"))
    day = dt.date(2026, 3, 29)
    # At the source: one day loses its rows, the next day gains one. Backfill only the first day.
    run_sql(urls["cheeko"], "DELETE FROM analytics_media_playback WHERE created_at >= %s AND created_at < %s",
            (dt.datetime.combine(day, dt.time(0), dt.UTC), dt.datetime.combine(day, dt.time(0), dt.UTC) + dt.timedelta(days=1)))
    run_sql(urls["cheeko"], "INSERT INTO analytics_media_playback (mac_address, content_type, content_id, event_type, position_seconds, created_at) "
                            "VALUES ('aa:bb:cc:dd:ee:ff', 'story', 1, 'play', 0, %s)", (dt.datetime(2026, 3, 30, 12, tzinfo=dt.UTC),))
    window = (dt.datetime.combine(day, dt.time(0), dt.UTC), dt.datetime.combine(day, dt.time(0), dt.UTC) + dt.timedelta(days=1))
    result = extract_tables(path, urls, [table], window=window)[table.key]
    after = dict(scalar_rows(path, "SELECT CAST(created_at AS DATE), count(*) FROM raw_cheeko.analytics_media_playback GROUP BY 1"))
    assert after.get(day, 0) == 0 and result.rows_deleted == before[day]
    assert {d: n for d, n in after.items() if d != day} == {d: n for d, n in before.items() if d != day}  # 30th untouched
    assert result.source_rows == result.warehouse_rows == 0


def test_a_rerun_leaves_the_warehouse_identical(fleet):
    urls, path = fleet
    extract_tables(path, urls, source_tables())
    first = content_hash(path)
    extract_tables(path, urls, source_tables())
    assert content_hash(path) == first
    assert len(first) == len(source_tables())


def test_a_run_killed_mid_table_loses_nothing(fleet, backend, tmp_path):
    """A process that dies after writing rows but before committing leaves the last state; the next run completes it."""
    urls, path = fleet
    tables = [source_table("cheeko", "ai_agent_chat_history"), source_table("cheeko", "kid_profile")]
    extract_tables(path, urls, [tables[1]])
    before = content_hash(path)
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import PosixPath
from pipelines import postgres
from pipelines.warehouse import Lake
original = postgres.Snapshot.count
def die(self, *args, **kwargs):
    os._exit(9)  # like SIGKILL: rows inserted, transaction open, no cleanup
postgres.Snapshot.count = die
import test_extract
test_extract.extract_tables({path!r}, {urls!r}, [test_extract.source_table("cheeko", "ai_agent_chat_history")])
"""
    died = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1], env={**os.environ}, timeout=120)
    assert died.returncode == 9
    assert content_hash(path) == before  # nothing half-written, and the warehouse opens cleanly
    extract_tables(path, urls, tables)
    clean = backend.new(tmp_path, "clean")
    extract_tables(clean, urls, tables)
    assert content_hash(path) == content_hash(clean)


# -- schema drift ---------------------------------------------------------------------------------------


def test_a_new_source_column_appears_and_a_changed_type_fails_by_name(fleet, classify):
    urls, path = fleet
    classify("cheeko", "ai_device", "battery_level", "firmware_channel")  # reviewed: device telemetry, copied
    table = source_table("cheeko", "ai_device")
    extract_tables(path, urls, [table])
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ADD COLUMN battery_level smallint")
    run_sql(urls["cheeko"], "UPDATE ai_device SET battery_level = 87, update_date = now() WHERE mac_address = (SELECT min(mac_address) FROM ai_device)")
    result = extract_tables(path, urls, [table])[table.key]
    assert result.added_columns == ["battery_level"]
    assert scalar(path, "SELECT max(battery_level) FROM raw_cheeko.ai_device") == 87
    # Rows that did not change at the source get the new column too (the table is read whole once).
    run_sql(urls["cheeko"], "UPDATE ai_device SET battery_level = 50 WHERE battery_level IS NULL")
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ADD COLUMN firmware_channel text DEFAULT 'stable'")
    extract_tables(path, urls, [table])
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.ai_device WHERE firmware_channel IS DISTINCT FROM 'stable'") == 0
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.ai_device WHERE battery_level IS NULL") == 0
    # A wider varchar or another time precision holds the same values: the warehouse column stays as it is.
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ALTER COLUMN app_version TYPE varchar(80)")
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ALTER COLUMN update_date TYPE timestamptz(3)")
    extract_tables(path, urls, [table])
    assert scalar(path, "SELECT source_type FROM _warehouse.source_columns WHERE column_name = 'app_version' "
                        "AND table_name = 'ai_device'") == "character varying(80)"
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ALTER COLUMN sort TYPE varchar(10)")
    with pytest.raises(extract.SchemaDriftError, match=r"cheeko.ai_device.sort: source type changed from "
                                                       r"integer to character varying\(10\)"):
        extract_tables(path, urls, [table])


# -- the tables of a source in one transaction ---------------------------------------------------------


def _load_source(urls: dict[str, str], path: Location, tables: list[SourceTable]) -> list:
    """``extract.load_source`` over ``tables`` (Cheeko's), as the raw step runs it; the (table, outcome) pairs."""
    with Snapshot(urls["cheeko"]) as snapshot, warehouse.connect(path) as con:
        warehouse.attach_source(con, "src_cheeko", urls["cheeko"])
        return list(extract.load_source(con, tables, snapshot, alias="src_cheeko", pseudonym_key=KEY,
                                        windows={t.key: ALL_DAYS for t in tables}))


def test_a_sources_tables_commit_together_and_one_refused_is_left_as_it_was(fleet, classify):
    """The changed tables of a source are loaded in one transaction (DuckDB's now(), which every load records, is
    its start); a table whose source no longer matches is refused before it is changed, and the others commit."""
    urls, path = fleet
    names = ("kid_profile", "ai_device", "parent_profile", "analytics_game_sessions")
    tables = [source_table("cheeko", name) for name in names]
    extract_tables(path, urls, tables)
    before = content_hash(path)
    run_sql(urls["cheeko"], "UPDATE kid_profile SET nickname = 'Changed' WHERE id = (SELECT min(id) FROM kid_profile)")
    run_sql(urls["cheeko"], "UPDATE parent_profile SET display_name = 'Changed' WHERE id = (SELECT min(id) FROM parent_profile)")
    run_sql(urls["cheeko"], "ALTER TABLE ai_device ALTER COLUMN sort TYPE varchar(10)")
    # A rule changed on a column before the drifted one: applying it first (emptying `board`) and then refusing the
    # table would leave that change in the transaction the other tables commit.
    classify("cheeko", "ai_device", "board", rule="hash")
    outcomes = dict((table.name, outcome) for table, outcome in _load_source(urls, path, tables))
    assert isinstance(outcomes["ai_device"], extract.SchemaDriftError)
    assert all(isinstance(outcomes[n], extract.LoadResult) for n in names if n != "ai_device")
    assert outcomes["kid_profile"].rows_written == outcomes["parent_profile"].rows_written == 1
    after = content_hash(path)
    assert after["raw_cheeko.ai_device"] == before["raw_cheeko.ai_device"]
    assert after["raw_cheeko.kid_profile"] != before["raw_cheeko.kid_profile"]
    assert scalar(path, "SELECT count(*) FROM _warehouse.loads WHERE finished_at = "
                        "(SELECT max(finished_at) FROM _warehouse.loads)") == 3  # one moment, three loads
    assert scalar(path, "SELECT source_type || ' ' || (SELECT coalesce(rule, 'copy') FROM _warehouse.source_columns "
                        "WHERE table_name = 'ai_device' AND column_name = 'board') FROM _warehouse.source_columns "
                        "WHERE table_name = 'ai_device' AND column_name = 'sort'") == "integer copy"  # bookkeeping too


def test_a_load_that_fails_rolls_back_the_tables_of_its_transaction_and_names_its_table(fleet, monkeypatch):
    urls, path = fleet
    tables = [source_table("cheeko", name) for name in ("kid_profile", "parent_profile")]
    extract_tables(path, urls, tables)
    run_sql(urls["cheeko"], "UPDATE kid_profile SET nickname = 'Changed'")
    run_sql(urls["cheeko"], "UPDATE parent_profile SET display_name = 'Changed'")
    before, recorded = content_hash(path), books(path)
    real = extract.extract_table

    def fails_on_the_second(con, table, *args, **kwargs):
        result = real(con, table, *args, **kwargs)  # written, not committed
        if table.name == "parent_profile":
            raise OSError("disk full")
        return result

    monkeypatch.setattr(extract, "extract_table", fails_on_the_second)
    with pytest.raises(extract.LoadStopped, match="cheeko.parent_profile: disk full"):
        _load_source(urls, path, tables)
    assert content_hash(path) == before  # kid_profile's load, in the same transaction, was rolled back too
    assert books(path) == recorded  # and what it recorded: no capture, cursor or load row of it
    monkeypatch.setattr(extract, "extract_table", real)
    results = dict((table.name, outcome) for table, outcome in _load_source(urls, path, tables))
    assert results["kid_profile"].rows_written == scalar(path, "SELECT count(*) FROM raw_cheeko.kid_profile")


# -- one snapshot per run -----------------------------------------------------------------------------


def test_tables_of_one_run_see_one_snapshot(fleet):
    urls, path = fleet
    sessions, attempts = source_table("cheeko", "analytics_game_sessions"), source_table("cheeko", "analytics_game_attempts")
    with Snapshot(urls["cheeko"]) as snapshot, warehouse.connect(path) as con:
        warehouse.attach_source(con, "src_cheeko", urls["cheeko"])
        extract.extract_table(con, sessions, snapshot, alias="src_cheeko", pseudonym_key=KEY, window=ALL_DAYS)
        # Someone writes between the two tables of the run...
        run_sql(urls["cheeko"], "INSERT INTO analytics_game_attempts (session_id, mac_address, game_type, question_type, "
                                "is_correct, attempt_time) VALUES ('gs_new', 'aa:bb:cc:dd:ee:ff', 'math_tutor', 'addition', true, %s)",
                (dt.datetime(2026, 3, 30, tzinfo=dt.UTC),))
        result = extract.extract_table(con, attempts, snapshot, alias="src_cheeko", pseudonym_key=KEY, window=ALL_DAYS)
    # ...and the run does not see it: both tables are as of the same moment.
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.analytics_game_attempts WHERE session_id = 'gs_new'") == 0
    assert result.source_rows == result.warehouse_rows


def test_a_window_over_several_event_times_takes_each_row_by_its_first_time_to_the_microsecond(fleet):
    """analytics_game_attempts is read in one query at the source, its bounds written into the query's text
    (extract._at_source): each edge of a window that starts and ends off the second is kept exactly."""
    urls, path = fleet
    attempts = source_table("cheeko", "analytics_game_attempts")
    start = dt.datetime(2026, 3, 30, 10, 0, 0, 123457, tzinfo=dt.UTC)
    end, tick = start + dt.timedelta(days=1), dt.timedelta(microseconds=1)
    rows = {  # session_id: (attempt_time, answered_at, created_at), and whether its first time is in the window
        "edge_start": ((start, None, start - tick), True),
        "edge_before": ((start - tick, start, start), False),
        "edge_last": ((end - tick, None, end), True),
        "edge_end": ((end, start, start), False),
        "edge_answered_start": ((None, start, end), True),
        "edge_answered_end": ((None, end, start), False),
        "edge_created_last": ((None, None, end - tick), True),
        "edge_created_before": ((None, None, start - tick), False),
    }
    for session, (times, _) in rows.items():
        run_sql(urls["cheeko"], "INSERT INTO analytics_game_attempts (session_id, mac_address, game_type, attempt_time, "
                                "answered_at, created_at) VALUES (%s, 'aa:bb:cc:dd:ee:ff', 'math_tutor', %s, %s, %s)",
                (session, *times))
    result = extract_tables(path, urls, [attempts], window=(start, end))[attempts.key]
    loaded = {row[0] for row in scalar_rows(path, "SELECT session_id FROM raw_cheeko.analytics_game_attempts "
                                                  "WHERE session_id LIKE 'edge_%'")}
    assert loaded == {session for session, (_, inside) in rows.items() if inside}
    assert result.source_rows == result.warehouse_rows == result.rows_written


def test_the_source_transaction_is_read_only(fleet):
    urls, path = fleet
    with Snapshot(urls["cheeko"]) as snapshot, warehouse.connect(path) as con:
        warehouse.attach_source(con, "src_cheeko", urls["cheeko"])
        con.execute("BEGIN")
        warehouse.use_snapshot(con, "src_cheeko", snapshot.id)
        with pytest.raises(Exception, match="read-only transaction"):
            con.execute("CALL postgres_execute('src_cheeko', 'DELETE FROM sys_dict_data')")
        con.execute("ROLLBACK")


# -- privacy -------------------------------------------------------------------------------------------------

KNOWN = {
    "cheeko.sys_user.password": "KNOWN-SECRET-password-hash-7Qx",
    "cheeko.sys_user_token.token": "KNOWN-SECRET-session-token-9Zp",
    "cheeko.parent_profile.openclaw_token": "KNOWN-SECRET-openclaw-parent-3Rt",
    "cheeko.ai_device.openclaw_token": "KNOWN-SECRET-openclaw-device-5Wq",
    "cheeko.openclaw_pair_tokens.token": "KNOWNPAIRTOK77",
    "cheeko.ai_model_config.config_json": '{"api_key": "KNOWN-SECRET-provider-api-key-2Lm"}',
    "cognova.session.token": "KNOWN-SECRET-betterauth-session-8Yk",
    "cognova.account.access_token": "KNOWN-SECRET-oauth-access-1Hd",
    "cognova.account.refresh_token": "KNOWN-SECRET-oauth-refresh-4Gs",
    "cognova.account.id_token": "KNOWN-SECRET-oidc-id-6Fn",
    "cognova.account.password": "KNOWN-SECRET-credential-password-0Bv",
    "cognova.secrets.encrypted_value": "KNOWN-SECRET-aes-gcm-ciphertext-2Cx",
    "cognova.secrets.iv": "KNOWN-SECRET-iv-5Mz",
    "cognova.verification.value": "KNOWN-SECRET-verification-3Nq",
    "cheeko.sys_user.email": "known.person@example.org",
    "cheeko.sys_user.phone": "+15550100777",
    "cheeko.parent_profile.display_name": "Knownparent Surnameonly",
    "cheeko.kid_profile.name": "Knownchild Zyxwvut",
    "cognova.user.email": "known.owner@example.org",
    # Free text kept only as its length.
    "cheeko.ai_agent_chat_history.content": "KNOWN-TEXT my name is Zyxwvut and I live on Elm Street",
    "cheeko.device_memories.content": "KNOWN-TEXT Zyxwvut's best friend is Qwertyuiop",
    "cheeko.analytics_game_attempts.user_answer": "KNOWN-TEXT my answer is Zyxwvut's dog",
    "cognova.conversations.title": "KNOWN-TEXT planning the surprise party",
    "cognova.tasks.title": "KNOWN-TEXT call the cardiologist",
}


def test_no_secret_or_personal_value_reaches_the_warehouse(fleet, backend):
    urls, path = fleet
    for key, value in KNOWN.items():
        database, table, column = key.split(".")
        quoted = '"user"' if table == "user" else table
        cast = "::jsonb" if column == "config_json" else ""
        run_sql(urls[database], f"UPDATE {quoted} SET {column} = %s{cast} WHERE ctid = (SELECT min(ctid) FROM {quoted})", (value,))
    # The generated secrets and identifiers too: every value of every column the policy drops or hashes.
    from pipelines import privacy

    planted = {value for value in KNOWN.values()}
    # Internal keys are not personal data: BetterAuth's credential account_id is the user's id,
    # which every audit column references.
    with postgres.connect(urls["cognova"]) as conn:
        internal_ids = {user_id for (user_id,) in conn.execute('SELECT id FROM "user"')}
    for (database, table), rules in privacy.policy().items():
        quoted = '"user"' if table == "user" else table
        for column, rule in rules.items():
            if rule in ("drop", "hash"):
                with postgres.connect(urls[database]) as conn:
                    planted |= {str(v) for (v,) in conn.execute(f"SELECT DISTINCT {column}::text FROM {quoted} WHERE {column} IS NOT NULL")
                                if len(str(v)) >= 12}
    extract_tables(path, urls, source_tables())
    with warehouse.connect(path, read_only=True) as con:
        cells = []
        for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                         "WHERE database_name = current_database()").fetchall():
            for row in con.execute(f'SELECT * FROM {schema}."{table}"').fetchall():
                cells.extend(str(v) for v in row if v is not None)
    everything = "\x00".join(cells)
    leaked = sorted(value for value in planted - internal_ids if value in everything)
    assert leaked == []
    raw_bytes = backend.stored_bytes(path)
    assert [v for v in KNOWN.values() if v.encode() in raw_bytes] == []
    # Pseudonyms still join: the same email hashes alike in sys_user and parent_profile.
    assert scalar(path, "SELECT count(*) FROM raw_cheeko.sys_user u JOIN raw_cheeko.parent_profile p ON p.email = u.email") > 0
    assert scalar(path, "SELECT count(DISTINCT year(birth_date)) FILTER (WHERE month(birth_date) <> 1 OR day(birth_date) <> 1) "
                        "FROM raw_cheeko.kid_profile") == 0
