"""The raw layer: one asset per operational table, declared in ``pipelines/source_tables.toml``, extracted by
one step per source database and partitioning (the way dagster-sling and dagster-dlt run a whole source as one
multi-asset). Groups ``cheeko_raw`` and ``cognova_raw``."""


import warnings

import dagster as dg

from assets.partitions import DAILY, DAILY_FRESHNESS, PARTITIONED_TAG, refresh_window
from assets.pools import writer_pool
from assets.resources import SourceDatabases, Warehouse
from pipelines import analyst_extracts, dictionary, extract, privacy
from pipelines import warehouse as warehouse_module
from pipelines.settings import DATABASES
from pipelines.source_tables import SourceTable, source_tables

# One check per table, not one per property: each check costs the run three stored events (a third of a daily
# run's events were the raw tables' checks when they were two per table).
MATCHES_SOURCE = "matches_source"
# Fails (WARN) while the source has columns privacy.toml does not classify: they are withheld until someone does.
COLUMNS_CLASSIFIED = "columns_classified"
RAW_OWNERS = ["team:data"]
# Single-run backfills are how a date range becomes one query; the parameter is
# marked beta, and its warning would repeat for each of the daily tables.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def raw_key(database: str, table: str) -> dg.AssetKey:
    """Asset key of a raw table, e.g. ``raw_cheeko/ai_device``."""
    return dg.AssetKey([f"raw_{database}", table])


def _description(table: SourceTable) -> str:
    how = {
        "full": "Full refresh each run (left as it is when change capture shows no source transaction touched "
                "it since): rows deleted at the source disappear here.",
        "incremental": ("Incremental by change capture: each run reads the rows written by source transactions since "
                        "the snapshot the previous run read (`xmin`), merged on the primary key, then compares the "
                        "key sets and reloads keys the warehouse lacks"
                        + ("; rows hard-deleted at the source are removed." if table.reconcile_deletes else
                           "; rows hard-deleted at the source are kept.")
                        + f" On a source without `pg_current_snapshot()` (PostgreSQL before 13) it falls back to "
                          f"{' / '.join(table.cursor)} with a {table.lookback_minutes}-minute lookback."),
        "daily": f"Partitioned by UTC day of `{' / '.join(table.event_time)}` (the first that is set); each partition is replaced whole, and each run "
                 f"refreshes the day before too (late rows, rows that change after their day).",
    }[table.load]
    return f"{table.description}\n\n{how} Source: `{table.database}.public.{table.name}`."


def _metadata(result: extract.LoadResult, preview: str) -> dict:
    table = result.table
    columns = [dg.TableColumn(p.name, p.warehouse_type, description=dictionary.raw_column_description(table, p.name))
               for p in result.columns if p.expression is not None]
    metadata = {
        "dagster/row_count": result.rows_total,
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "rows_written": result.rows_written,
        "rows_deleted": result.rows_deleted,
        "source_rows_in_scope": result.source_rows,
        "load": table.load,
        "source_snapshot": result.snapshot_id,
        "seconds": round(result.seconds, 3),
        "dropped_by_privacy_policy": [p.name for p in result.columns if p.rule == "drop"],
        "preview": dg.MetadataValue.md(preview),
    }
    if result.window:
        metadata["window"] = f"{result.window[0].isoformat()} .. {result.window[1].isoformat()}"
    if result.watermark:
        metadata["watermark"] = result.watermark.isoformat()
    if result.added_columns:
        metadata["columns_added_at_source"] = result.added_columns
    if result.withheld:
        metadata["withheld_columns"] = [name for name, _ in result.withheld]
    if result.tightened:
        metadata["rule_tightened"] = result.tightened  # the values loaded before were rewritten or removed
    if result.loosened:
        metadata["rule_loosened"] = result.loosened  # reloaded from the source for every row
    if result.capture:
        # "xmin", "full reconciliation: <why>", "cursor fallback: <why>", or that nothing changed (extract.UNCHANGED)
        metadata["capture"] = result.capture
    if table.load == "incremental":
        metadata["rows_repaired"] = result.rows_repaired
        if not table.reconcile_deletes:
            metadata["rows_kept_deleted_at_source"] = result.rows_kept
    return metadata


def _check(result: extract.LoadResult, key: dg.AssetKey) -> dg.AssetCheckResult:
    scope = "in the partition window" if result.window else "in the table"
    metadata = {"source_rows": result.source_rows, "warehouse_rows": result.warehouse_rows,
                "duplicate_keys": result.duplicate_keys, "scope": scope}
    if result.table.load == "incremental":
        # The load compared the key sets and reloaded what was missing: the check passes on a repaired table and
        # says how much was repaired. Rows kept after a hard delete (reconcile_deletes off) are not the source's.
        metadata |= {"rows_repaired": result.rows_repaired, "rows_kept_deleted_at_source": result.rows_kept}
    return dg.AssetCheckResult(
        asset_key=key, check_name=MATCHES_SOURCE,
        passed=result.duplicate_keys == 0 and result.source_rows == result.warehouse_rows - result.rows_kept,
        metadata=metadata)


def _classified(key: dg.AssetKey, withheld: list[tuple[str, str]], snapshot) -> dg.AssetCheckResult:
    """The ``columns_classified`` result: each withheld column with its type and how many rows hold a value (counted
    at the source in the run's snapshot, only when there are any; never a value)."""
    table = "(none)"
    if withheld:
        rows, non_null = snapshot.non_null(key.path[-1], [name for name, _ in withheld])
        table = "\n".join(["| column | type | rows holding a value |", "|---|---|---|",
                           *(f"| {name} | {type_} | {non_null[name]:,} of {rows:,} |" for name, type_ in withheld)])
    return dg.AssetCheckResult(
        asset_key=key, check_name=COLUMNS_CLASSIFIED, passed=not withheld, severity=dg.AssetCheckSeverity.WARN,
        metadata={"withheld_columns": dg.MetadataValue.md(table), "count": len(withheld)})


def _spec(table: SourceTable) -> dg.AssetSpec:
    return dg.AssetSpec(
        raw_key(table.database, table.name),
        group_name=f"{table.database}_raw",
        description=_description(table),
        kinds={"postgres", "duckdb"},
        owners=RAW_OWNERS,
        tags={"load": table.load, **(PARTITIONED_TAG if table.partitioned else {})},
        # Shown before the first run; each materialization records the columns and types it found.
        metadata={"dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(name, "see the latest materialization", description=text)
            for name, text in dictionary.raw_entry(table).columns.items()])},
        freshness_policy=DAILY_FRESHNESS,
        # A table that cannot load as declared is skipped (its check says why); what reads it is not run.
        skippable=True,
    )


def _check_spec(table: SourceTable) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        MATCHES_SOURCE, asset=raw_key(table.database, table.name),
        description="The warehouse holds exactly the source's rows (whole table, or the partition window) in the "
                    "run's snapshot: the same count, and no two rows sharing a primary key (metadata: both counts "
                    "and the duplicate keys). Incremental tables are repaired by the load before it is checked: keys "
                    "missing from the warehouse are reloaded (metadata `rows_repaired`), and rows hard-deleted at the "
                    "source but kept by the declaration are left out of the count (`rows_kept_deleted_at_source`). "
                    "Fails also when the table could not load as declared (metadata `error`).")


def _classified_spec(table: SourceTable) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        COLUMNS_CLASSIFIED, asset=raw_key(table.database, table.name),
        description="Every column of the source table has a rule in pipelines/privacy.toml. A column without one "
                    "(new at the source) is withheld: not read until someone classifies it. Fails (WARN) while any "
                    "is, listing them with their types and how many rows hold a value (never a value); "
                    "`warehouse privacy` lists them for every table at once.")


def _stopped(stopped: extract.LoadStopped) -> dg.Failure:
    """One line naming the database and the table (or the tables whose commit failed), for an error that is not
    about a table's declaration: typically the source database going away (a restart, the network). Its
    transaction (with the other tables since the last commit) was rolled back, so a re-run recovers exactly."""
    return dg.Failure(description=f"{stopped.where}: extraction stopped: {stopped.reason}", allow_retries=False)


def source_assets(database: str, partitioned: bool) -> dg.AssetsDefinition:
    """One step for all of ``database``'s tables of one partitioning: the daily tables (partitioned by UTC day) or
    the others (full and incremental). Subsettable, so one table can still be selected and backfilled on its own;
    every table keeps its own materialization, metadata, column schema and checks. The step reads one source
    snapshot through one warehouse connection."""
    tables = [t for t in source_tables() if t.database == database and t.partitioned == partitioned]
    by_key = {raw_key(t.database, t.name): t for t in tables}
    what = "daily-partitioned tables" if partitioned else "full and incremental tables"

    @dg.multi_asset(
        name=f"raw_{database}_{'daily' if partitioned else 'tables'}",
        description=f"Extracts {database}'s {what} into raw_{database}.",
        specs=[_spec(t) for t in tables],
        check_specs=[spec for t in tables for spec in (_check_spec(t), _classified_spec(t))],
        can_subset=True,
        partitions_def=DAILY if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool=writer_pool(f"{database}_raw"),
    )
    def _raw(context: dg.AssetExecutionContext, warehouse: Warehouse, sources: SourceDatabases):
        window = refresh_window(context.partition_time_window) if partitioned else None
        selected = {key: table for key, table in by_key.items() if key in context.selected_asset_keys}
        withdrawn: list = []
        with warehouse.connect() as con, sources.attached(con, database, "daily" if partitioned else "tables") as alias:
            snapshot = sources.snapshot(database)
            try:
                # Materializations are reported as their transaction commits: the tables of a daily or incremental
                # run of the source together, at the end of the step (extract.load_source).
                for table, outcome in extract.load_source(
                        con, list(selected.values()), snapshot, alias=alias, pseudonym_key=warehouse.pseudonym_key,
                        windows={t.key: window for t in selected.values()} if partitioned else None):
                    key = raw_key(table.database, table.name)
                    if isinstance(outcome, extract.ExtractionError):
                        # This table alone: its declaration no longer matches the source. The others go on.
                        context.log.error(str(outcome))
                        yield dg.AssetCheckResult(asset_key=key, check_name=MATCHES_SOURCE, passed=False,
                                                  metadata={"error": str(outcome)})
                        columns = snapshot.columns(table.name)
                        names = privacy.unclassified(database, table.name, [c.name for c in columns])
                        yield _classified(key, [(c.name, c.type) for c in columns if c.name in names], snapshot)
                        continue
                    metadata = _metadata(outcome, warehouse_module.preview(con, extract.target_name(table)))
                    if outcome.tightened and not withdrawn:
                        # Published snapshots hold what the policy no longer allows: removed; this run's publishes anew.
                        withdrawn = analyst_extracts.withdraw(warehouse.extracts) or [None]
                        metadata["withdrawn_snapshots"] = ", ".join(p.name for p in withdrawn if p) or "(none)"
                    yield dg.MaterializeResult(asset_key=key, metadata=metadata,
                                               check_results=[_check(outcome, key),
                                                              _classified(key, outcome.withheld, snapshot)])
            except extract.LoadStopped as stopped:  # said in one line; the step stops here
                raise _stopped(stopped) from stopped.error

    return _raw


RAW_ASSETS = [source_assets(database, partitioned) for database in DATABASES for partitioned in (False, True)]
