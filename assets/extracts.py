"""Analyst extracts (group ``extracts``): the read-only snapshot analysts open instead of the working file."""

import datetime as dt

import dagster as dg

from assets.partitions import DAILY_FRESHNESS
from assets.pools import writer_pool
from assets.raw import raw_key
from assets.resources import Warehouse
from assets.rollups import PUBLISHED_KEY, mart_key
from pipelines import analyst_extracts, warehouse as warehouse_module
from pipelines import settings as settings_module
from pipelines.marts import MARTS
from pipelines.source_tables import source_tables

ANALYST_SNAPSHOT_KEY = dg.AssetKey(["extracts", "analyst_snapshot"])


@dg.asset(
    key=ANALYST_SNAPSHOT_KEY,
    group_name="extracts",
    description=(
        "A read-only copy of the warehouse for analysts, published after each successful run (rewriting only the "
        "tables and days that changed since the previous copy): "
        "`$WAREHOUSE_HOME/extracts/<UTC time>/warehouse.duckdb` (the marts and the privacy-filtered raw layer, with "
        "COMMENT ON every table and column and a `main.data_dictionary` table), one Parquet file per mart, and "
        "`data_dictionary.md`. `extracts/latest` and `extracts/latest.duckdb` switch to the new copy in one rename, "
        "so readers never see half a snapshot and never block the pipeline. The newest WAREHOUSE_EXTRACTS_KEEP "
        "copies are kept. Open it with `duckdb -readonly .local/extracts/latest.duckdb`; cut smaller files with "
        "`warehouse extract`."
    ),
    kinds={"duckdb", "parquet"},
    owners=["team:data"],
    # Everything the snapshot copies, so a run that selects it with any of them runs it last.
    deps=[*(raw_key(t.database, t.name) for t in source_tables()), *(mart_key(m.name) for m in MARTS), PUBLISHED_KEY],
    pool=writer_pool("extracts"),
    freshness_policy=DAILY_FRESHNESS,
)
def analyst_snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    settings = settings_module.load()
    with warehouse.connect() as con:
        version = warehouse_module.lake_version(con)  # None on the DuckDB file
        published = analyst_extracts.publish(con, settings.extracts, published_at=dt.datetime.now(dt.UTC),
                                             keep=settings.extracts_keep, run_id=context.run.run_id,
                                             progress=context.log.info)
    marts = {q: n for q, n in published.rows.items() if q.startswith("marts.")}
    return dg.MaterializeResult(metadata={
        "snapshot": dg.MetadataValue.path(str(published.database)),
        "latest": dg.MetadataValue.path(str(settings.extracts / analyst_extracts.LATEST_DUCKDB)),
        "data_dictionary": dg.MetadataValue.path(str(published.folder / analyst_extracts.DICTIONARY_FILE)),
        "tables": len(published.rows),
        "dagster/row_count": sum(published.rows.values()),
        "mart_rows": dg.MetadataValue.md("| mart | rows |\n|---|---:|\n"
                                         + "\n".join(f"| {q} | {n:,} |" for q, n in marts.items())),
        "snapshots_removed": [p.name for p in published.removed],
        "seconds": round(published.seconds, 2),
        **published.metadata(),
        **({} if version is None else {
            "lake_version": version,
            "query_live": dg.MetadataValue.md(
                f"The same state in the DuckLake itself (`warehouse lake status` prints the read-only ATTACH): "
                f"`SELECT * FROM marts.fleet_daily AT (VERSION => {version})`")}),
    })


EXTRACT_ASSETS = [analyst_snapshot]
