"""The rollups' own mechanics on a real PostgreSQL and DuckDB: the thin transactional
module, backfills that recompute exactly their days, data-quality checks as WARN
in Dagster, and the price sheet's version on every cost row. On both backends."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from assets import runs
from assets.rollups import QUALITY_CHECKS_ON, mart_key
from pipelines import databases, generator, postgres, rollups, warehouse, writes
from pipelines.marts import mart
from pipelines.settings import load
from pipelines.warehouse import Location
from test_extract import built_warehouse

pytestmark = pytest.mark.both_backends

END = dt.date(2026, 3, 31)
AS_OF = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)


# -- the thin transactional module ------------------------------------------------------------------------


def test_upsert_inserts_updates_only_changes_and_deletes(migrated):
    url = migrated.cheeko
    frame = pl.DataFrame({"mac_address": ["aa:aa:aa:aa:aa:01", "aa:aa:aa:aa:aa:02"], "current_streak_days": [1, 2],
                          "longest_streak_days": [3, 4], "total_active_days": [5, 6],
                          "as_of_date": [dt.date(2026, 3, 1)] * 2})
    with writes.transaction(url) as conn:
        first = writes.upsert(conn, "device_streaks", frame, ["mac_address"], delete_missing=True, schema="warehouse")
    assert (first.inserted, first.updated, first.unchanged, first.deleted) == (2, 0, 0, 0)
    with postgres.connect(url) as conn:
        stamps = dict(conn.execute("SELECT mac_address, updated_at FROM warehouse.device_streaks").fetchall())
    changed = frame.with_columns(pl.when(pl.col("mac_address").str.ends_with("02")).then(9).otherwise(pl.col("current_streak_days"))
                                 .alias("current_streak_days"))
    with writes.transaction(url) as conn:
        second = writes.upsert(conn, "device_streaks", changed, ["mac_address"], delete_missing=True, schema="warehouse")
    assert (second.inserted, second.updated, second.unchanged) == (0, 1, 1)
    with postgres.connect(url) as conn:
        after = dict(conn.execute("SELECT mac_address, updated_at FROM warehouse.device_streaks").fetchall())
    assert after["aa:aa:aa:aa:aa:01"] == stamps["aa:aa:aa:aa:aa:01"]  # untouched row keeps its updated_at
    assert after["aa:aa:aa:aa:aa:02"] > stamps["aa:aa:aa:aa:aa:02"]
    with writes.transaction(url) as conn:
        third = writes.upsert(conn, "device_streaks", changed.head(1), ["mac_address"], delete_missing=True, schema="warehouse")
    assert third.deleted == 1
    with writes.transaction(url) as conn:
        conn.execute("DELETE FROM warehouse.device_streaks")


@pytest.mark.parametrize(("error", "transient"), [
    (postgres.errors.SerializationFailure("could not serialize access"), True),
    (postgres.errors.DeadlockDetected("deadlock detected"), True),
    (postgres.errors.AdminShutdown("terminating connection"), True),
    (postgres.errors.ConnectionFailure("connection failure"), True),
    (postgres.errors.QueryCanceled("canceling statement due to statement timeout"), False),
    (postgres.errors.DiskFull("could not extend file"), False),
    (postgres.errors.UniqueViolation("duplicate key"), False),
    (ValueError("a bug, not a blip"), False),
])
def test_retries_transient_errors_only(error, transient):
    calls = []

    def work():
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "done"

    if transient:
        assert writes.with_retries(work, base_delay=0.001) == "done" and len(calls) == 3
    else:
        with pytest.raises(type(error)):
            writes.with_retries(work, base_delay=0.001)
        assert len(calls) == 1


def test_publishing_refuses_to_empty_the_published_tables(migrated, warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        con.execute("CREATE SCHEMA marts")
        for source in ("device_streaks", "device_progress", "learning_progress"):
            con.execute(f"CREATE TABLE marts.{source} (as_of_date DATE, mac_address VARCHAR, kid_id BIGINT)")
        with pytest.raises(ValueError, match="as-of marts are empty"):
            rollups.publish(con, migrated.cheeko)


# -- marts ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(make_databases, backend, tmp_path_factory):
    """A messy fleet, extracted and built for every day."""
    pair = make_databases()
    tmp = tmp_path_factory.mktemp("rollups")
    path, result = built_warehouse(pair, tmp, generator.Options(devices=25, days=10, seed=6, end=END, messy=True),
                                   as_of=AS_OF, first_day=END - dt.timedelta(days=9), last_day=END,
                                   where=backend.new(tmp))
    return pair, path, result


def snapshot(path: Location, mart: str, where: str = "true") -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(f"SELECT * FROM marts.{mart} WHERE {where} ORDER BY ALL").fetchall()


def test_a_backfill_recomputes_exactly_its_days(built):
    _, path, _ = built
    day = END - dt.timedelta(days=3)
    inside, outside = f"activity_date = DATE '{day}'", f"activity_date = DATE '{day - dt.timedelta(days=1)}'"
    expected_inside, expected_outside = snapshot(path, "daily_device_activity", inside), snapshot(path, "daily_device_activity", outside)
    with warehouse.connect(path) as con:
        con.execute(f"UPDATE marts.daily_device_activity SET user_turns = -1 WHERE {inside} OR {outside}")
        rollups.build(con, ["daily_device_activity"], as_of_time=AS_OF, first_day=day, last_day=day)
    assert snapshot(path, "daily_device_activity", inside) == expected_inside
    assert all(row[2] == -1 for row in snapshot(path, "daily_device_activity", outside))  # not in the range: untouched
    with warehouse.connect(path) as con:
        rollups.build(con, ["daily_device_activity"], as_of_time=AS_OF, first_day=day - dt.timedelta(days=1), last_day=day)
    assert snapshot(path, "daily_device_activity", outside) == expected_outside


def test_as_of_marts_hold_every_as_of_date_and_past_ones_are_stable(built):
    _, path, _ = built
    past = END - dt.timedelta(days=5)
    before = snapshot(path, "device_streaks", f"as_of_date = DATE '{past}'")
    assert before
    with warehouse.connect(path) as con:
        rollups.build(con, ["device_streaks"], as_of_time=AS_OF, first_day=END, last_day=END)
        dates = {d for (d,) in con.execute("SELECT DISTINCT as_of_date FROM marts.device_streaks").fetchall()}
    assert dates == {END - dt.timedelta(days=i) for i in range(10)}
    assert snapshot(path, "device_streaks", f"as_of_date = DATE '{past}'") == before


def test_every_cost_row_records_the_price_sheet_version(built):
    _, path, _ = built
    sheet = rollups.load_price_sheet()
    with warehouse.connect(path, read_only=True) as con:
        versions = {v for (v,) in con.execute("SELECT DISTINCT price_sheet_version FROM marts.token_usage_daily").fetchall()}
        priced = dict(con.execute("SELECT llm_model, count(*) FROM marts.token_usage_daily GROUP BY 1").fetchall())
        comments = con.execute("SELECT comment FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = 'fleet_daily' "
                               "AND column_name = 'p95_ttft_seconds'").fetchone()[0]
    assert versions == {sheet.version}
    assert "default" in priced and set(priced) - {"default"} <= set(sheet.models)
    assert "95th percentile" in comments


def test_quality_counts_match_the_faults_the_generator_planted(built):
    pair, path, result = built
    with warehouse.connect(path) as con:
        counts = rollups.quality_counts(con, as_of_time=AS_OF, cheeko_url=pair.cheeko)
    faults = result.faults
    assert counts["token_totals_mismatch"] == faults["token_total_mismatch"]
    assert counts["session_duration_disagree"] == faults["session_duration_mismatch"] > 0
    assert counts["timezone_unknown"] == faults["timezone_unknown"]
    assert counts["mac_unnormalisable"] == faults["mac_invalid"] + faults.get("device_mac_invalid", 0) > 0
    assert counts["future_timestamps"] == sum(v for k, v in faults.items() if k.startswith("future_"))
    assert counts["duplicate_events"] == sum(faults[f"duplicate_{t}"] for t in rollups.NATURAL_KEYS)


@pytest.mark.long_on_lake  # a whole Dagster run of its own (minutes on a lake); the engine steps run on both
def test_quality_checks_warn_in_dagster_and_the_run_goes_on(make_databases, warehouse_at, backend, dagster_instances,
                                                             tmp_path, monkeypatch):
    pair = make_databases()
    planted = generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=20, days=4, seed=9, end=END, messy=True),
                                 tmp_path / "gen", progress=lambda _: None).faults
    for name, value in (pair.environ() | {"WAREHOUSE_PSEUDONYM_KEY": "test-key"} | backend.environ(warehouse_at)).items():
        monkeypatch.setenv(name, value)
    dagster_instances.new(tmp_path)
    for name, value in dagster_instances.environ.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        # Every asset but the memory sync, which no mart or check reads: embedding the messy fleet's memories
        # took 38 s of this test's 57 (py-spy); the whole graph with the sync is run by the `materialized` fleet.
        summary = runs.materialize(load(), instance, selection="not key:memory_chunks", progress=lambda _: None)
        assert "cheeko_published_progress" in summary.rows and "memory_chunks" not in summary.rows
        flagged = {name.split(":")[1] for name in summary.failed_checks}
        source_of = {"mac_unnormalisable": "mac_invalid", "timezone_unknown": "timezone_unknown", "future_timestamps": "future_",
                     "duplicate_events": "duplicate_", "token_totals_mismatch": "token_total_mismatch",
                     "session_duration_disagree": "session_duration_mismatch", "app_counter_drift": "app_counter_drift"}
        expected = {check for check, fault in source_of.items() if sum(v for k, v in planted.items() if k.startswith(fault))}
        assert flagged == expected and len(expected) >= 6
        assert flagged <= {check for checks in QUALITY_CHECKS_ON.values() for check in checks}
        key = mart_key("daily_device_activity")
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, "mac_unnormalisable")])[dg.AssetCheckKey(key, "mac_unnormalisable")]
        assert evaluation.evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.evaluation.metadata["count"].value > 0 and evaluation.evaluation.metadata["samples"].value


@pytest.mark.long_on_lake  # a whole Dagster run of its own (minutes on a lake); the engine steps run on both
def test_day_by_day_runs_equal_one_backfill(make_databases, backend, dagster_instances, tmp_path, monkeypatch):
    """A scheduler runs one day at a time; local days west of UTC end after UTC midnight and
    sessions end after their day, so each run refreshes the day before. The result must equal
    one backfill of the whole range."""
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=15, days=3, seed=12, end=END),
                       tmp_path / "gen", progress=lambda _: None)
    for name, value in (pair.environ() | {"WAREHOUSE_PSEUDONYM_KEY": "test-key"}).items():
        monkeypatch.setenv(name, value)
    dagster_instances.new(tmp_path)
    for name, value in dagster_instances.environ.items():
        monkeypatch.setenv(name, value)
    selection = ("group:cheeko_raw or key:marts/daily_device_activity or key:marts/device_streaks "
                 "or key:marts/game_sessions or key:marts/fleet_daily or key:marts/token_usage_daily")
    days = [END - dt.timedelta(days=2) + dt.timedelta(days=i) for i in range(4)]  # the data reaches END+1 UTC
    marts = ("daily_device_activity", "device_streaks", "game_sessions", "fleet_daily")
    results = {}
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for label, ranges in (("daily", [(d, d) for d in days]), ("backfill", [(days[0], days[-1])])):
            path = backend.new(tmp_path, label)
            for name, value in backend.environ(path).items():
                monkeypatch.setenv(name, value)
            for start, end in ranges:
                runs.materialize(load(), instance, selection=selection, start=start, end=end, progress=lambda _: None)
            with warehouse.connect(path, read_only=True) as con:
                # Compare the days both runs cover fully (the first day has no day before it in the source).
                results[label] = {m: con.execute(f"SELECT * FROM marts.{m} WHERE {rollups.SCOPE_COLUMN[m]} BETWEEN ? AND ? "
                                                 f"ORDER BY ALL", [days[1], END]).fetchall() for m in marts}
    for m in marts:
        assert results["daily"][m] == results["backfill"][m], m
        assert results["daily"][m], m


def test_a_mart_built_by_an_older_definition_takes_the_new_columns_and_keeps_other_days(built, backend, tmp_path):
    """Money was DOUBLE and a column has gone since: the table is altered in place, the other days keep their rows."""
    _, path, _ = built
    copy = backend.copy(path, tmp_path, "older")
    with warehouse.connect(copy) as con:
        before = con.execute("SELECT count(*) FROM marts.token_usage_daily WHERE usage_date < ?", [END]).fetchone()[0]
        con.execute("ALTER TABLE marts.token_usage_daily ALTER est_cost_usd TYPE DOUBLE")
        con.execute("ALTER TABLE marts.token_usage_daily ADD COLUMN retired_column VARCHAR")
        rollups.build(con, ["token_usage_daily"], as_of_time=AS_OF, first_day=END, last_day=END)
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'marts' "
                                 "AND table_name = 'token_usage_daily'").fetchall())
        after = con.execute("SELECT count(*) FROM marts.token_usage_daily WHERE usage_date < ?", [END]).fetchone()[0]
    assert types["est_cost_usd"] == "DECIMAL(18,8)" and "retired_column" not in types
    assert after == before > 0


def test_a_rebuild_makes_no_catalog_change_and_puts_back_an_edited_comment(built, backend, tmp_path):
    """Rebuilding marts whose shape and comments are as the contract has them changes rows only: on a DuckLake a
    catalog change makes every connection's next query reload the catalog. Comments edited by hand are put back."""
    _, path, _ = built
    copy = backend.copy(path, tmp_path, "again")

    def schema_version(con) -> int | None:
        if not warehouse.is_lake(con):
            return None
        return con.execute(f"SELECT max(schema_version) FROM ducklake_snapshots('{warehouse.LAKE_ALIAS}')").fetchone()[0]

    with warehouse.connect(copy) as con:
        con.execute("COMMENT ON COLUMN marts.daily_device_activity.user_turns IS 'edited by hand'")
        con.execute("COMMENT ON TABLE marts.fleet_daily IS 'edited by hand'")
        rollups.build(con, as_of_time=AS_OF, first_day=END, last_day=END)
        comment = con.execute("SELECT comment FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = "
                              "'daily_device_activity' AND column_name = 'user_turns'").fetchone()[0]
        table_comment = con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'marts' "
                                    "AND table_name = 'fleet_daily'").fetchone()[0]
        before = schema_version(con)
        rollups.build(con, as_of_time=AS_OF, first_day=END, last_day=END)
        after = schema_version(con)
    assert comment == mart("daily_device_activity").columns["user_turns"]
    assert table_comment == mart("fleet_daily").description
    assert after == before


def test_marts_on_a_warehouse_without_their_raw_tables_name_what_is_missing(warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        con.execute("CREATE SCHEMA raw_cheeko; CREATE TABLE raw_cheeko.ai_device (id BIGINT)")
        with pytest.raises(rollups.MissingInputs, match=r"cannot build marts.fleet_daily: the warehouse holds no "
                                                        r"raw_cheeko.ai_agent, .*raw_cheeko.kid_profile.* Load the raw layer"):
            rollups.build(con, ["fleet_daily"], as_of_time=AS_OF, first_day=END, last_day=END)


@pytest.mark.long_on_lake  # two whole Dagster runs (minutes on a lake); test_raw_assets runs the whole graph on a lake once
def test_two_runs_of_the_whole_graph_are_bit_identical(materialized, backend, dagster_instances, tmp_path, monkeypatch):
    """The whole graph through Dagster twice over the same sources, into two warehouses (the session's
    materialized one, and a second run here): every mart row, every published progress row and every extract
    (the snapshot's Parquet marts, CSV cuts) is the same, byte for byte (money is decimal: no last-bit
    differences between two sums)."""
    from pipelines import analyst_extracts
    from pipelines.marts import MARTS

    for name, value in materialized.environ.items():
        monkeypatch.setenv(name, value)
    dagster_instances.new(tmp_path)
    outputs = []
    for label in ("first", "second"):
        if label == "second":
            for name, value in backend.environ(backend.new(tmp_path, label)).items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv("WAREHOUSE_HOME", str(tmp_path / f"{label}-home"))
            with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
                runs.materialize(load(), instance, progress=lambda _: None)
        settings = load()
        with warehouse.connect(databases.warehouse_location(settings, start_embedded=False), read_only=True) as con:
            marts = {m.name: con.execute(f"SELECT * FROM marts.{m.name} ORDER BY ALL").fetchall() for m in MARTS}
            published = {name: frame.sort(frame.columns).rows() for name, frame in
                         rollups.published_frames(con, rollups.latest_as_of(con)).items()}
        snapshot = analyst_extracts.latest_snapshot(settings.extracts).resolve()
        parquet = {p.name: p.read_bytes() for p in sorted((snapshot.parent / "marts").glob("*.parquet"))}
        csv = {}
        for m in MARTS:
            out = tmp_path / f"{label}-{m.name}.csv"
            analyst_extracts.custom_extract(snapshot, out, tables=[m.name])
            csv[m.name] = out.read_bytes()
        outputs.append({"marts": marts, "published": published, "parquet": parquet, "csv": csv})
    first, second = outputs
    assert all(first["marts"].values()) and len(first["parquet"]) == len(MARTS) == len(first["csv"])
    for part in ("marts", "published", "parquet", "csv"):
        for name in first[part]:
            assert second[part][name] == first[part][name], f"{part} {name} differs between two runs"
