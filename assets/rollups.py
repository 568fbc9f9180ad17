"""The staging tables (group ``staging``), the marts of metrics.md (group ``rollups``), their data-quality
checks, and the exact progress values published to Cheeko's ``warehouse`` schema. One asset per SQL file in
``sql/`` and ``sql/staging/``; each one's upstream assets are the tables its SQL reads (``pipelines.lineage``)."""

import datetime as dt

import dagster as dg

from assets.partitions import DAILY, DAILY_FRESHNESS, PARTITIONED_TAG, refresh_window
from assets.pools import writer_pool
from assets.raw import raw_key
from assets.resources import SourceDatabases, Warehouse
from pipelines import lineage, rollups
from pipelines.warehouse import preview, tables as warehouse_tables
from pipelines.marts import MARTS, RULES, Mart

ROLLUP_OWNERS = ["team:data"]
PUBLISHED_KEY = dg.AssetKey(["cheeko_published_progress"])
# Which mart carries which data-quality check (each a count of rows left out or suspect).
QUALITY_CHECKS_ON = {
    "daily_device_activity": ("mac_unnormalisable", "timezone_unknown", "future_timestamps", "duplicate_events"),
    "token_usage_daily": ("token_totals_mismatch",),
    "game_sessions": ("session_duration_disagree",),
    "app_counter_drift": ("app_counter_drift",),
}
QUALITY_DESCRIPTIONS = {
    "mac_unnormalisable": "Event, token usage and ai_device rows whose MAC cannot be normalised; left out of every "
                          "device metric.",
    "timezone_unknown": "Kid and parent profiles whose time zone is not an IANA name; those devices count in UTC.",
    "future_timestamps": "Events dated more than 5 minutes after the run's as-of time (counted at the source); excluded.",
    "duplicate_events": "Event rows repeating another's natural key; counted once.",
    "token_totals_mismatch": "device_token_usage rows whose total_tokens differs from input + output; sums use them as stored.",
    "session_duration_disagree": "Game sessions whose stored duration_seconds differs from ended_at - started_at by "
                                 "more than 1 second (both set); the computed duration wins.",
    "app_counter_drift": "Devices whose running counters in the app's analytics_user_progress differ from the "
                         "warehouse's exact values; metadata: how many, and the largest drift of each counter.",
}


STAGING_DESCRIPTIONS = {
    "prices": "The price sheet (pipelines/price_sheet.toml) as a table; model NULL holds the default price.",
    "streaks": "The table macro streaks_as_of(first_day, last_day, cutoff): gaps and islands over the qualifying "
               "events (sql/staging/streaks.sql).",
}


def mart_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def staging_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", name])


def keys_of(tables) -> list[dg.AssetKey]:
    """Asset keys of warehouse tables named ``schema.table`` (what ``pipelines.lineage`` returns)."""
    return [dg.AssetKey(lineage.key_path(t)) for t in sorted(tables)]


def _staging_description(name: str) -> str:
    if name in STAGING_DESCRIPTIONS:
        return STAGING_DESCRIPTIONS[name]
    first = rollups.staging_sql(name).splitlines()[0]
    return first.removeprefix("-- ").strip() + f" SQL: `sql/staging/{name}.sql`."


@dg.multi_asset(
    name="staging",
    description="Brings the staging tables the marts share (normalised MACs, local days, deduplicated events, "
                "priced usage) up to date with the raw layer in one transaction: only the event rows of the windows "
                "the daily loads replaced when that is exact, everything when a dimension changed, or the staging SQL "
                "or the price sheet did.",
    specs=[dg.AssetSpec(staging_key(name), deps=keys_of(lineage.staging_inputs()[name]), group_name="staging",
                        description=_staging_description(name), kinds={"duckdb", "sql"}, owners=ROLLUP_OWNERS,
                        freshness_policy=DAILY_FRESHNESS, tags=PARTITIONED_TAG)
           for name in lineage.staging_tables()],
    # Daily, as the raw tables it reads and the marts that read it: a backfill of a range from the UI then runs
    # raw, staging and marts in lineage order (an unpartitioned layer between partitioned ones breaks the chain:
    # the daemon left the marts out). A run brings staging up to date with what the raw layer loaded, whatever
    # its range says.
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # Subsettable so a backfill may target its tables over different days (the dimensions and the event tables
    # map differently from their raw inputs); the step brings every staging table up to date in any case.
    can_subset=True,
    pool=writer_pool("rollups"),
)
def staging(context: dg.AssetExecutionContext, warehouse: Warehouse):
    with warehouse.connect() as con:
        rebuilt = rollups.prepare(con)
        done = rollups.last_pass(con)
        tables = {table for _, table in warehouse_tables(con, "staging")}
        counts = {name: con.execute("SELECT count(*) FROM query_table(?)", [f"staging.{name}"]).fetchone()[0]
                  for name in lineage.staging_tables() if name in tables}
    for name in lineage.staging_tables():
        if staging_key(name) not in context.selected_asset_keys:
            continue
        metadata = {"rebuilt": rebuilt}
        if rebuilt and done:
            metadata["pass"] = done.kind
            if done.window_start and done.window_end:
                metadata["window"] = f"{done.window_start.isoformat()} .. {done.window_end.isoformat()}"
            if done.reason:
                metadata["why_whole"] = done.reason
        if name in counts:
            metadata["dagster/row_count"] = counts[name]
        yield dg.MaterializeResult(asset_key=staging_key(name), metadata=metadata)


def _days(context: dg.AssetExecutionContext, definition: Mart) -> tuple[dt.date, dt.date]:
    """The days (or as-of dates) this run covers; a whole mart is built up to the last complete day."""
    if definition.grain == "whole":
        last = dt.date.fromisoformat(DAILY.get_last_partition_key())
        return last, last
    start, end = refresh_window(context.partition_time_window)
    return start.date(), (end - dt.timedelta(days=1)).date()


def mart_asset(definition: Mart) -> dg.AssetsDefinition:
    """The asset that (re)builds one mart for its partition window."""
    key = mart_key(definition.name)
    grain = {"local_day": "Partitioned by the device-local date (each run refreshes the day before too).",
             "utc_day": "Partitioned by UTC date (each run refreshes the day before too).",
             "as_of": "Partitioned by as-of date: partition D holds the values as of the end of local day D.",
             "whole": "Rebuilt whole each run."}[definition.grain]

    @dg.asset(
        key=key,
        group_name="rollups",
        description=f"{definition.description}\n\n{grain} SQL: `sql/{definition.name}.sql`.",
        kinds={"duckdb", "sql"},
        owners=ROLLUP_OWNERS,
        tags={"grain": definition.grain, **(PARTITIONED_TAG if definition.grain != "whole" else {})},
        deps=keys_of(lineage.mart_inputs()[definition.name]),
        partitions_def=None if definition.grain == "whole" else DAILY,
        backfill_policy=None if definition.grain == "whole" else dg.BackfillPolicy.single_run(),
        metadata={"dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, "see runtime schema", description=text) for name, text in definition.columns.items()])},
        pool=writer_pool("rollups"),
        freshness_policy=DAILY_FRESHNESS,
    )
    def _mart(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        first_day, last_day = _days(context, definition)
        as_of_time = dt.datetime.now(dt.UTC)
        with warehouse.connect() as con:
            written = rollups.build(con, [definition.name], as_of_time=as_of_time, first_day=first_day, last_day=last_day)
            name = definition.name
            total = con.execute("SELECT count(*) FROM query_table(?)", [f"marts.{name}"]).fetchone()[0]
            columns = con.execute("SELECT column_name, data_type, comment FROM duckdb_columns() "
                                  "WHERE schema_name = 'marts' AND table_name = ? ORDER BY column_index", [name]).fetchall()
            sample = preview(con, f"marts.{name}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "rows_written": written[name],
                "days": f"{first_day} .. {last_day}",
                "as_of_time": as_of_time.isoformat(),
                "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(c, t, description=d or "") for c, t, d in columns]),
                "preview": dg.MetadataValue.md(sample),
            },
        )

    return _mart


QUALITY_CHECK_SPECS = [dg.AssetCheckSpec(name, asset=mart_key(mart), description=QUALITY_DESCRIPTIONS[name])
                       for mart, names in QUALITY_CHECKS_ON.items() for name in names]


@dg.multi_asset_check(
    name="data_quality",
    description="Every data-quality check of the marts, computed once per run (pipelines.rollups.quality_report).",
    specs=QUALITY_CHECK_SPECS,
    can_subset=True,
    pool=writer_pool("rollups"),
)
def data_quality(context: dg.AssetCheckExecutionContext, warehouse: Warehouse, sources: SourceDatabases):
    """Counts of the rows each check finds, with samples; WARN: the marts leave those rows out or flag them."""
    selected = {key.name for key in context.selected_asset_check_keys}
    as_of_time = dt.datetime.now(dt.UTC)
    with warehouse.connect() as con:
        report = rollups.quality_report(con, as_of_time=as_of_time, cheeko_url=sources.url("cheeko")) \
            if selected - {"app_counter_drift"} else {}
        drift = rollups.drift_summary(con) if "app_counter_drift" in selected else None
    for spec in QUALITY_CHECK_SPECS:
        if spec.name not in selected:
            continue
        if spec.name == "app_counter_drift":
            passed, metadata = drift["devices_drifting"] == 0, {"count": drift["devices_drifting"],
                                                                "largest": drift["largest"], "samples": drift["samples"]}
        else:
            count, samples = report[spec.name]
            passed, metadata = count == 0, {"count": count, "samples": samples}
        yield dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=passed,
                                  severity=dg.AssetCheckSeverity.WARN, metadata=metadata)


@dg.asset(
    key=PUBLISHED_KEY,
    group_name="rollups",
    description=(
        "Cheeko's warehouse.device_streaks, warehouse.device_progress and warehouse.learning_progress: the latest "
        "as-of values of the marts of the same names, for the app to read (one transaction, through "
        "pipelines.writes; rows whose values did not change keep their updated_at). The app's own "
        "analytics_streaks, analytics_user_progress and kid_learning_progress are never written. " + RULES["as_of"]
    ),
    kinds={"postgres"},
    owners=ROLLUP_OWNERS,
    deps=[mart_key(name) for name in rollups.PUBLISHED],
    pool=writer_pool("rollups"),
    freshness_policy=DAILY_FRESHNESS,
)
def cheeko_published_progress(warehouse: Warehouse, sources: SourceDatabases) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        as_of = rollups.latest_as_of(con)
        results = rollups.publish(con, sources.url("cheeko"), as_of_date=as_of)
    metadata: dict = {"as_of_date": str(as_of)}
    for table, result in results.items():
        metadata[f"{table}.inserted"] = result.inserted
        metadata[f"{table}.updated"] = result.updated
        metadata[f"{table}.unchanged"] = result.unchanged
        metadata[f"{table}.deleted"] = result.deleted
    metadata["dagster/row_count"] = sum(r.inserted + r.updated + r.unchanged for r in results.values())
    return dg.MaterializeResult(metadata=metadata)


ROLLUP_ASSETS = [staging, *(mart_asset(definition) for definition in MARTS), cheeko_published_progress]
ROLLUP_CHECKS = [data_quality]
