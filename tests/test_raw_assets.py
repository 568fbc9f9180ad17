"""The raw layer as Dagster assets, on a real Dagster instance: every table, its
checks and partitions, one snapshot per run, and ``warehouse run``. On both backends."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets import runs
from assets.definitions import defs
from assets.raw import MATCHES_SOURCE, raw_key
from pipelines import warehouse
from pipelines.settings import load
from pipelines.source_tables import source_tables
from conftest import CONFIGURED_FLEET_END

END = CONFIGURED_FLEET_END
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.both_backends


def test_one_asset_per_source_table_in_two_groups():
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {raw_key(t.database, t.name) for t in source_tables()} <= keys
    for table in source_tables():
        node = graph.get(raw_key(table.database, table.name))
        assert node.group_name == f"{table.database}_raw"
        assert (node.partitions_def is not None) == table.partitioned
        assert {"postgres", "duckdb"} <= set(node.kinds)
        assert table.description.split(".")[0] in (node.description or "")


def test_everything_materializes_with_checks_passing(materialized):
    summary = materialized.summary
    with dg.DagsterInstance.from_config(str(materialized.home)) as instance:
        assert (summary.start, summary.end) == (END - dt.timedelta(days=4), END + dt.timedelta(days=1))
        assert len(summary.rows) == len(defs.resolve_asset_graph().materializable_asset_keys)
        assert len(summary.run_ids) == 1  # one user action, one run
        assert {raw_key(t.database, t.name).to_user_string() for t in source_tables()} <= set(summary.rows)
        # Clean data: every data-quality check passes but the reconciliation of the app's own counters, which
        # drift as real apps' do (the generator plants it in every fleet).
        assert summary.failed_checks == ["marts/app_counter_drift:app_counter_drift"]
        chat = raw_key("cheeko", "ai_agent_chat_history")
        partitions = instance.get_materialized_partitions(chat)
        assert partitions >= {(END - dt.timedelta(days=i)).isoformat() for i in range(5)}
        event = instance.get_latest_materialization_event(raw_key("cheeko", "ai_device"))
        metadata = event.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 12 and "mac_address" in metadata["preview"].value
        assert "openclaw_token" in metadata["dropped_by_privacy_policy"].value
        # One snapshot per database for the whole run.
        snapshots: dict[str, set[str]] = {}
        for table in source_tables():
            latest = instance.get_latest_materialization_event(raw_key(table.database, table.name)).asset_materialization
            if latest.metadata.get("source_snapshot"):  # daily tables too: every run of the command shares it
                snapshots.setdefault(table.database, set()).add(latest.metadata["source_snapshot"].value)
        assert {db: len(ids) for db, ids in snapshots.items()} == {"cheeko": 1, "cognova": 1}
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(chat, MATCHES_SOURCE)])
        evaluation = checks[dg.AssetCheckKey(chat, MATCHES_SOURCE)].evaluation
        assert evaluation.passed and evaluation.metadata["duplicate_keys"].value == 0
        assert evaluation.metadata["source_rows"].value == evaluation.metadata["warehouse_rows"].value > 0


@pytest.mark.long_on_lake  # a second whole-graph copy; the graph itself runs on a lake above
def test_a_backfill_range_leaves_the_incremental_cursors_alone(on_materialized, backend):
    env, home = on_materialized
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with warehouse.connect(backend.location(env), read_only=True) as con:
            cursors = con.execute("SELECT * FROM _warehouse.cursors ORDER BY ALL").fetchall()
        lines: list[str] = []
        summary = runs.materialize(load(), instance, selection="group:cheeko_raw and kind:duckdb", start=END - dt.timedelta(days=1),
                                   end=END, progress=lines.append)
        assert any("for 2026-03-30 .. 2026-03-31" in line for line in lines)
        assert summary.failed_checks == []
        daily = [k for k in summary.rows if k.startswith("raw_cheeko/")]
        assert "raw_cheeko/ai_agent_chat_history" in daily
        with warehouse.connect(backend.location(env), read_only=True) as con:
            after = con.execute("SELECT * FROM _warehouse.cursors ORDER BY ALL").fetchall()
        # The incremental tables ran again (same watermarks, nothing new) and daily tables did not touch cursors.
        assert [c[:4] for c in after] == [c[:4] for c in cursors]


def test_warehouse_run_command_selects_and_reports(configured):
    env, home = configured
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--select", "key:raw_cognova/token_usage", "--start", "2026-03-30", "--end", "2026-03-31"],
        cwd=ROOT, env={**os.environ, **env}, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "raw_cognova/token_usage" in result.stdout and "materialized 2 asset(s) for 2026-03-30 .. 2026-03-31" in result.stdout  # and the analyst snapshot
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--select", "key:nothing/here"], cwd=ROOT,
                         env={**os.environ, **env}, text=True, capture_output=True, timeout=120)
    assert bad.returncode == 2 and "matches no asset" in bad.stderr
