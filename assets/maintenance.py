"""DuckLake maintenance (only with ``WAREHOUSE_CATALOG=ducklake``): a weekly job that compacts the lake.

Every load adds Parquet files and every delete leaves a thinned one behind; a lake left alone reads more and
more small files. The job rewrites and merges them table by table, then expires the snapshots older than a
week (``AT (VERSION => n)`` reaches back that far) and deletes the files no snapshot reads any more
(``pipelines.warehouse.compact``, also ``warehouse lake compact``). Compacting a table rewrites its files, so
each step claims the pool of the tables it compacts: it never races a load of them.
"""

import datetime as dt

import dagster as dg

from assets.pools import lake_configured, writer_pool
from pipelines import settings as settings_module
from pipelines import warehouse
from pipelines.databases import warehouse_location
from pipelines.warehouse import RAW_SCHEMAS

KEEP_DAYS = 7


def _compact(context: dg.OpExecutionContext, schemas: tuple[str, ...] | None, *, expire: bool) -> None:
    done = warehouse.compact(warehouse_location(settings_module.load()), schemas=schemas,
                             keep=dt.timedelta(days=KEEP_DAYS) if expire else None)
    context.log.info(f"compacted {done['tables']} tables: data files {done['files_before']} -> "
                     f"{done['files_after']}; {done['snapshots_expired']} snapshots expired, "
                     f"{done['files_deleted']} unread files deleted")
    context.add_output_metadata(done)


@dg.op(pool=writer_pool("cheeko_raw"), description="Rewrite and merge the raw tables' Parquet files.")
def compact_raw(context: dg.OpExecutionContext) -> None:
    _compact(context, tuple(RAW_SCHEMAS.values()), expire=False)


@dg.op(ins={"after": dg.In(dg.Nothing)}, pool=writer_pool("rollups"),
       description=f"Rewrite and merge every other table's files, expire snapshots older than {KEEP_DAYS} days, "
                   "delete the files no snapshot reads.")
def compact_rest(context: dg.OpExecutionContext) -> None:
    raw = set(RAW_SCHEMAS.values())
    with warehouse.connect(warehouse_location(settings_module.load()), read_only=True) as con:
        schemas = tuple(s for (s,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables() WHERE "
                                                  "database_name = current_database()").fetchall() if s not in raw)
    _compact(context, schemas, expire=True)


@dg.job(description="Compact the DuckLake: merge small files, expire snapshots older than a week, delete unread "
                    "files (`warehouse lake compact` does the same by hand).")
def lake_maintenance():
    compact_rest(after=compact_raw())


lake_maintenance_schedule = dg.ScheduleDefinition(
    job=lake_maintenance, cron_schedule="0 4 * * 0", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays at 04:00 UTC, after the daily run and away from the report peaks.")

# Only a lake has anything to compact; on the DuckDB file the job would be noise in the UI.
MAINTENANCE_JOBS = [lake_maintenance] if lake_configured() else []
MAINTENANCE_SCHEDULES = [lake_maintenance_schedule] if lake_configured() else []
