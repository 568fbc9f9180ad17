"""What starts runs without a person: the daily warehouse run, the hourly report tick (``assets.reports``),
the memory sensor, and publishing the analyst snapshot after runs launched by hand.

The daily run is a schedule, not a set of ``AutomationCondition``s. One scheduled run materializes every raw
table, mart and the snapshot for yesterday's partition in one process: its assets read one exported snapshot
of each source database (so the marts of a day agree with each other), and the DuckDB file has one writer from
start to end. Declarative automation would start a run per asset or partition as each becomes eligible: each
with its own source snapshot, each queueing for the single ``warehouse_writer`` slot, and the day's marts
built from raw tables read at different moments.
"""

import datetime as dt

import dagster as dg

from assets.extracts import ANALYST_SNAPSHOT_KEY
from assets.memory import MEMORY_CHUNKS_KEY
from assets.reports import EMAIL_REPORTS_KEY
from assets.resources import SourceDatabases
from pipelines import embedding, memory_sync
from pipelines import settings as settings_module

DAILY_GROUPS = ("cheeko_raw", "cognova_raw", "staging", "rollups", "extracts")
# Runs that do not write the warehouse file, or publish the snapshot themselves, need no publishing after.
NOT_WAREHOUSE_WRITES = {MEMORY_CHUNKS_KEY, EMAIL_REPORTS_KEY}
BACKFILLS_LOOKED_AT = 20

warehouse_daily_job = dg.define_asset_job(
    "warehouse_daily",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS),
    description="Yesterday's UTC day end to end: every raw table (the daily ones for yesterday and the day before, "
                "the others incrementally), every mart, the exact progress published to Cheeko, and a new analyst snapshot. "
                "One process, one source snapshot per database.",
)

warehouse_daily_schedule = dg.build_schedule_from_partitioned_job(
    warehouse_daily_job,
    name="warehouse_daily_0030_utc",
    hour_of_day=0,
    minute_of_hour=30,  # the UTC day has closed; rows committed in its last minutes have landed
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 00:30 UTC, for the UTC day that just ended. The hourly report tick then finds "
                "the day in the warehouse; backfills of older days are separate runs (see README, Backfills).",
)

memory_sync_job = dg.define_asset_job(
    "memory_sync", selection=dg.AssetSelection.assets(MEMORY_CHUNKS_KEY),
    description="Chunk and embed the device memories that are new or changed since the last sync.",
)

analyst_snapshot_job = dg.define_asset_job(
    "publish_analyst_snapshot", selection=dg.AssetSelection.assets(ANALYST_SNAPSHOT_KEY),
    description="Publish a new read-only analyst snapshot of the warehouse.",
)


IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
# With no change for this long, a sync still runs: it confirms memory_chunks is whole (its checks) and keeps
# the asset's freshness policy (26 hours) honest on a quiet fleet.
CONFIRM_AFTER = dt.timedelta(hours=24)


@dg.sensor(
    name="device_memories_changed",
    job=memory_sync_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 2 minutes: asks Cheeko whether any device_memories row is new, changed in content (found by "
                "its xmin and an md5, whatever updated_at says) or deleted since the last sync, and starts one memory_sync run if so (never while one is queued or "
                "running; the same pending changes never start two). With no change for 24 hours it starts one "
                "anyway, to re-check memory_chunks.",
)
def device_memories_changed(context: dg.SensorEvaluationContext, sources: SourceDatabases):
    in_flight = context.instance.get_runs(dg.RunsFilter(job_name=memory_sync_job.name, statuses=IN_FLIGHT), limit=1)
    if in_flight:
        return dg.SkipReason(f"memory_sync run {in_flight[0].run_id} is queued or running")
    backend = settings_module.load().embed_backend
    waiting = memory_sync.pending(sources.url("cheeko"), model_name=embedding.model_name(backend))
    if waiting.any:
        if waiting.fingerprint == context.cursor:
            return dg.SkipReason(f"a run for these changes was already requested ({waiting.fingerprint})")
        context.update_cursor(waiting.fingerprint)
        return dg.RunRequest(tags={"warehouse/memory_changes": f"{waiting.changed} changed, {waiting.deleted} deleted"})
    latest = context.instance.get_latest_materialization_event(MEMORY_CHUNKS_KEY)
    if latest is None or dt.datetime.fromtimestamp(latest.timestamp, dt.UTC) < dt.datetime.now(dt.UTC) - CONFIRM_AFTER:
        return dg.RunRequest(tags={"warehouse/memory_changes": "none: the daily re-check"})
    return dg.SkipReason("every device memory is synced")


@dg.run_status_sensor(
    name="publish_snapshot_after_runs",
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=analyst_snapshot_job,
    # Also runs started outside the daemon (`dagster asset materialize --partition-range ...`).
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a run that wrote the warehouse succeeds (one launched from the UI, a backfill from the "
                "command line), publish a new analyst snapshot, unless the run published one itself. A backfill "
                "launched from the UI publishes once, when it completes (publish_snapshot_after_backfills).",
)
def publish_snapshot_after_runs(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    selected = set(run.asset_selection or ())
    if "dagster/backfill" in run.tags:
        return dg.SkipReason(f"part of backfill {run.tags['dagster/backfill']}: published when it completes")
    if not selected:
        # A whole job ran: warehouse_daily publishes itself; the other jobs do not write the warehouse file.
        return dg.SkipReason(f"job {run.job_name} ran whole: it published itself or wrote no warehouse table")
    if ANALYST_SNAPSHOT_KEY in selected:
        return dg.SkipReason("the run published a snapshot itself")
    if selected <= NOT_WAREHOUSE_WRITES:
        return dg.SkipReason("the run did not write the warehouse file")
    return dg.RunRequest(run_key=f"after-{run.run_id}", tags={"warehouse/after_run": run.run_id})


@dg.sensor(
    name="publish_snapshot_after_backfills",
    job=analyst_snapshot_job,
    # As often as the run-status sensor beside it (Dagster's default, 30 s): one query of the latest backfills.
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 seconds: when a backfill launched from the UI has completed, publish one analyst "
                "snapshot (not one per run of the backfill: between its runs the raw layer would be ahead of the "
                "marts).",
)
def publish_snapshot_after_backfills(context: dg.SensorEvaluationContext):
    requests = []
    for backfill in context.instance.get_backfills(limit=BACKFILLS_LOOKED_AT):
        selected = set(backfill.asset_selection or ())
        if not backfill.status.value.startswith("COMPLETED") or not selected:
            continue
        if ANALYST_SNAPSHOT_KEY in selected or selected <= NOT_WAREHOUSE_WRITES:
            continue
        # run_key: one snapshot per backfill, however often this looks at it.
        requests.append(dg.RunRequest(run_key=f"backfill-{backfill.backfill_id}",
                                      tags={"warehouse/after_backfill": backfill.backfill_id}))
    return requests or dg.SkipReason("no backfill that wrote the warehouse has completed")


AUTOMATION_JOBS = [warehouse_daily_job, memory_sync_job, analyst_snapshot_job]
AUTOMATION_SCHEDULES = [warehouse_daily_schedule]
AUTOMATION_SENSORS = [device_memories_changed, publish_snapshot_after_runs, publish_snapshot_after_backfills]
