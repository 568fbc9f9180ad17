"""Automation and backfills on a real Dagster instance and real databases: the daily schedule's run, a
partition-range backfill from Dagster's own command line, the memory sensor, and publishing after runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from assets import runs
from assets.automation import (
    analyst_snapshot_job,
    device_memories_changed,
    memory_sync_job,
    publish_snapshot_after_runs,
    warehouse_daily_job,
)
from assets.definitions import defs
from assets.extracts import ANALYST_SNAPSHOT_KEY
from assets.memory import MEMORY_CHUNKS_KEY
from assets.raw import raw_key
from assets.resources import SourceDatabases
from pipelines import analyst_extracts, memory_sync, postgres, warehouse
from pipelines.settings import load
from conftest import CONFIGURED_FLEET_END as END
from conftest import running_ui

ROOT = Path(__file__).resolve().parents[1]

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _cursors(path: Path) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute("SELECT database, table_name, watermark, watermark_key FROM _warehouse.cursors ORDER BY ALL").fetchall()


def _fake_embed(texts):
    """Deterministic unit vectors: the sensor is under test here, not the model (tests/test_memory_sync.py)."""
    rows = [np.frombuffer(hashlib.sha512(t.encode()).digest() * 6, dtype=np.uint8)[:384].astype(np.float32) - 127.5
            for t in texts]
    vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 384)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_daily_schedule_runs_yesterday_end_to_end(configured):
    env, home = configured
    schedule = defs.resolve_schedule_def("warehouse_daily_0030_utc")
    tick = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(0, 30), dt.UTC)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        requests = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
        [request] = requests.run_requests
        assert request.partition_key == END.isoformat()  # the UTC day that just closed
        job = defs.resolve_job_def(warehouse_daily_job.name)
        result = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                        run_config=QUIET)
        assert result.success
        done = {e.asset_key for e in result.get_asset_materialization_events()}
        graph = defs.resolve_asset_graph()
        assert done == {k for k in graph.get_all_asset_keys() if graph.get(k).group_name in
                        ("cheeko_raw", "cognova_raw", "staging", "rollups", "extracts")}
        snapshot = analyst_extracts.latest_snapshot(load().extracts)
        with warehouse.connect(snapshot, read_only=True) as con:
            # The run refreshed END and the day before (late rows); the mart holds exactly those days.
            assert con.execute("SELECT min(day), max(day) FROM marts.fleet_daily").fetchone() == (END - dt.timedelta(days=1), END)
            assert con.execute("SELECT run_id FROM snapshot_info").fetchone() == (result.run_id,)
        # It published in the run, so the sensor does not publish again after it.
        assert isinstance(publish_snapshot_after_runs(_success_context(instance, result.run_id)), dg.SkipReason)


def test_a_partition_range_backfill_from_the_dagster_cli_is_one_run_and_leaves_cursors_alone(configured):
    env, home = configured
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # The warehouse the backfill runs over. The memory sync writes only PostgreSQL; loading its model and
        # embedding took 22 of this test's 40 s (py-spy). tests/test_memory_sync.py covers it.
        runs.materialize(load(), instance, selection="not group:memory", progress=lambda _: None)
        before_runs = len(instance.get_run_records())
    path = Path(env["WAREHOUSE_DUCKDB_PATH"])
    cursors = _cursors(path)
    first, last = END - dt.timedelta(days=3), END - dt.timedelta(days=1)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "assets.definitions",
         "--select", "tag:partitioned=daily", "--partition-range", f"{first}...{last}"],
        cwd=ROOT, env={**os.environ, **env, "DAGSTER_HOME": str(home)}, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        assert len(records) == before_runs + 1  # the whole range, every daily asset: one run
        run = records[0].dagster_run
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            first.isoformat(), last.isoformat())
        chat = raw_key("cheeko", "ai_agent_chat_history")
        materialized = {e.partition_key for e in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=chat, storage_ids=None), limit=100).records
            if e.run_id == run.run_id}
        assert materialized == {(first + dt.timedelta(days=i)).isoformat() for i in range(3)}
    assert _cursors(path) == cursors


def test_the_memory_sensor_asks_for_a_sync_only_when_memories_change(configured):
    env, _home = configured
    url = env["CHEEKO_DATABASE_URL"]
    sources = SourceDatabases()
    with dg.DagsterInstance.ephemeral() as instance:
        def evaluate(cursor):
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"sources": sources}) as context:
                return device_memories_changed(context), context.cursor

        first, cursor = evaluate(None)
        assert isinstance(first, dg.RunRequest) and cursor
        assert first.tags["warehouse/memory_changes"].endswith("changed, 0 deleted")
        again, _ = evaluate(cursor)  # nothing synced yet, but this work was already asked for
        assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message
        memory_sync.sync(url, _fake_embed, count_tokens=lambda text: len(text.split()))
        # Synced, but memory_chunks was never materialized in this instance: the daily re-check asks for a run.
        recheck, _ = evaluate(cursor)
        assert isinstance(recheck, dg.RunRequest) and "re-check" in recheck.tags["warehouse/memory_changes"]
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=MEMORY_CHUNKS_KEY))
        synced, _ = evaluate(cursor)
        assert isinstance(synced, dg.SkipReason) and "every device memory is synced" in synced.skip_message
        with postgres.connect(url) as conn:
            conn.execute("UPDATE device_memories SET content = content || %s, updated_at = now() "
                         "WHERE id = (SELECT id FROM device_memories ORDER BY id LIMIT 1)", ("\n- One more thing.\n",))
            conn.commit()
        changed, new_cursor = evaluate(cursor)
        assert isinstance(changed, dg.RunRequest) and new_cursor != cursor
        assert changed.tags["warehouse/memory_changes"] == "1 changed, 0 deleted"
        with postgres.connect(url) as conn:
            conn.execute("DELETE FROM device_memories WHERE id = (SELECT id FROM device_memories ORDER BY id DESC LIMIT 1)")
            conn.commit()
        deleted, _ = evaluate(new_cursor)
        assert isinstance(deleted, dg.RunRequest) and deleted.tags["warehouse/memory_changes"] == "1 changed, 1 deleted"
        # While a sync is queued or running, no second one is asked for (it would only fail on the sync's lock).
        instance.add_run(dg.DagsterRun(job_name=memory_sync_job.name, run_id="a" * 36,
                                       status=dg.DagsterRunStatus.STARTED))
        busy, _ = evaluate(None)
        assert isinstance(busy, dg.SkipReason) and "queued or running" in busy.skip_message
    assert memory_sync_job.name == device_memories_changed.job_name


def _success_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunStatusSensorContext:
    run = instance.get_run_by_id(run_id)
    [record] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
    return dg.build_run_status_sensor_context(sensor_name=publish_snapshot_after_runs.name,
                                              dagster_event=record.event_log_entry.dagster_event,
                                              dagster_instance=instance, dagster_run=run)


def test_a_successful_run_that_wrote_the_warehouse_is_followed_by_a_snapshot(configured):
    env, home = configured
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        wrote = job.execute_in_process(instance=instance, asset_selection=[raw_key("cognova", "account")], run_config=QUIET)
        request = publish_snapshot_after_runs(_success_context(instance, wrote.run_id))
        assert isinstance(request, dg.RunRequest) and request.run_key == f"after-{wrote.run_id}"
        # Runs of a UI backfill (published when the backfill completes) are not followed by a snapshot each;
        # `warehouse run` selects the snapshot itself, so its run publishes last.
        for tag in ({"dagster/backfill": "abcdefgh"},):
            tagged = job.execute_in_process(instance=instance, asset_selection=[raw_key("cognova", "account")],
                                            tags=tag, run_config=QUIET)
            assert isinstance(publish_snapshot_after_runs(_success_context(instance, tagged.run_id)), dg.SkipReason)
        published = defs.resolve_job_def(analyst_snapshot_job.name).execute_in_process(instance=instance, run_config=QUIET)
        assert published.success
        again = publish_snapshot_after_runs(_success_context(instance, published.run_id))
        assert isinstance(again, dg.SkipReason)  # the snapshot run does not trigger itself
    snapshot = analyst_extracts.latest_snapshot(load().extracts)
    with warehouse.connect(snapshot, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_cognova.account").fetchone()[0] > 0


def test_warehouse_run_publishes_a_snapshot_last(configured):
    env, home = configured
    lines: list[str] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        summary = runs.materialize(load(), instance, selection="group:cognova_raw", start=END - dt.timedelta(days=2),
                                   end=END, progress=lines.append)
        # Over a range of days, one "planned" event per asset, not one per asset and day (a third of a full
        # history's time went there); Dagster's switch is set only while the run is created.
        planned = instance.get_records_for_run(summary.run_ids[0], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                               limit=1000).records
        assert len(planned) == len(summary.rows)
        assert runs.PLANNED_AS_RANGE not in os.environ
    assert ANALYST_SNAPSHOT_KEY.to_user_string() in summary.rows
    # One run for the whole selection, its progress printed per asset, the snapshot last.
    assert len([line for line in lines if line.startswith("running")]) == 1 and len(summary.run_ids) == 1
    assets_done = [line.split()[0] for line in lines if line.startswith("  ") and " rows" in line]
    assert assets_done[-1] == ANALYST_SNAPSHOT_KEY.to_user_string() and len(assets_done) == len(summary.rows)
    assert analyst_extracts.latest_snapshot(load().extracts) is not None


@pytest.mark.parametrize("selection", ["group:cheeko_raw", "tag:partitioned=daily"])
def test_partitioned_assets_backfill_as_single_runs(selection):
    graph = defs.resolve_asset_graph()
    for key in dg.AssetSelection.from_string(selection).resolve(graph):
        node = graph.get(key)
        if node.partitions_def is not None:
            assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
            assert node.tags.get("partitioned") == "daily", key


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
RUN_ORIGIN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status repositoryOrigin { repositoryLocationName } } } }"
BACKFILL_STATUS = "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"


def test_a_backfill_from_the_ui_runs_each_layer_once_and_publishes_once(on_materialized):
    """The UI's path end to end: the daemon runs the backfill, the sensors publish one snapshot after it."""
    env, _home = on_materialized
    first, last = END - dt.timedelta(days=2), END
    # The raw tables, the staging between them and the mart (one selects the layers, as in dbt).
    graph = defs.resolve_asset_graph()
    staging = sorted(dg.AssetSelection.groups("staging").resolve(graph), key=lambda k: k.path)
    mart = dg.AssetKey(["marts", "daily_device_activity"])
    keys = [raw_key("cheeko", "ai_agent_chat_history"), raw_key("cheeko", "ai_device"), *staging, mart]
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(3)]
    # A warehouse built once (the session's materialized fleet, copied), as any warehouse that is backfilled;
    # the UI's instance is a new one.
    home = Path(env["WAREHOUSE_HOME"]) / "dagster"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with running_ui({**os.environ, **env}) as graphql:
        launched = graphql(LAUNCH_BACKFILL, params={"assetSelection": [{"path": k.path} for k in keys],
                                                    "partitionNames": days, "fromFailure": False})
        backfill_id = launched["launchPartitionBackfill"]["backfillId"]
        # With the UI up, `warehouse run` submits its one run there: queued like the backfill's runs (it is started
        # now, while the daemon's ticks space those out, and followed to its end below).
        ran_cli = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--select", "group:cognova_raw",
                                    "--start", END.isoformat(), "--end", END.isoformat()],
                                   cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 420
            published = []
            while not published:
                assert time.monotonic() < deadline, "the backfill and its snapshot did not finish in 7 minutes"
                time.sleep(3)
                status = graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]["status"]
                assert status in ("REQUESTED", "COMPLETED_SUCCESS", "COMPLETED"), status
                with dg.DagsterInstance.from_config(str(Path(env["WAREHOUSE_HOME"]) / "dagster")) as instance:
                    runs_ = instance.get_runs()
                    published = [r for r in runs_ if r.tags.get("warehouse/after_backfill") == backfill_id
                                 and r.status == dg.DagsterRunStatus.SUCCESS]
            backfill_runs = [r for r in runs_ if r.tags.get("dagster/backfill") == backfill_id]
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in backfill_runs)
            # Each layer once, the daily ones each in one run for the whole range, in lineage order.
            ranges = sorted((r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
                            for r in backfill_runs if "dagster/asset_partition_range_start" in r.tags)
            assert ranges and set(ranges) == {(first.isoformat(), last.isoformat())}, [
                (sorted(k.to_user_string() for k in r.asset_selection or () if k.path[0] != "staging"),
                 {k: v for k, v in r.tags.items() if "partition" in k}) for r in backfill_runs]
            ran = {key: [r for r in backfill_runs if key in (r.asset_selection or ())] for key in keys}
            assert all(len(found) == 1 for found in ran.values()), {k.to_user_string(): len(v) for k, v in ran.items()}
            with dg.DagsterInstance.from_config(str(Path(env["WAREHOUSE_HOME"]) / "dagster")) as instance:
                def window(run):
                    record = instance.get_run_record_by_id(run.run_id)
                    return record.start_time, record.end_time
                chat, staged, built = (window(ran[k][0]) for k in (keys[0], staging[0], mart))
            # In lineage order: in later runs, or in the same run (whose steps follow the dependencies).
            assert chat[0] <= staged[0] <= built[0] and chat[1] <= staged[1] <= built[1]
            # Exactly one snapshot for the backfill, none per run.
            assert len(published) == 1
            assert not [r for r in runs_ if r.tags.get("warehouse/after_run") in {b.run_id for b in backfill_runs}]
            # `warehouse run`, submitted through the UI: followed to its end, and in the overview timeline, which shows
            # only runs that have a code location (repositoryOrigin). It was not part of the backfill, nor published by it.
            said, _ = ran_cli.communicate(timeout=300)
            assert ran_cli.returncode == 0, said
            submitted = re.search(r"\(run ([0-9a-f-]{36}), through http://127\.0\.0\.1:\d+\)", said)
            assert submitted, said
            assert "raw_cognova/account" in said  # progress per asset, read from the shared instance
            assert submitted.group(1) not in {r.run_id for r in backfill_runs}
            run = graphql(RUN_ORIGIN, id=submitted.group(1))["runOrError"]
            assert run["status"] == "SUCCESS" and run["repositoryOrigin"]["repositoryLocationName"], run
        finally:
            if ran_cli.poll() is None:  # the test failed before it ended: not left behind
                ran_cli.kill()
                ran_cli.communicate()
    snapshot = analyst_extracts.latest_snapshot(Path(env["WAREHOUSE_HOME"]) / "extracts")
    with warehouse.connect(snapshot) as con:
        assert con.execute("SELECT count(DISTINCT activity_date) FROM marts.daily_device_activity").fetchone()[0] >= 3
