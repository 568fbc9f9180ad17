"""The Dagster code location loads offline, fast, without touching a database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_are_loadable():
    from assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert set(defs.resources) == {"warehouse", "sources", "embedding_model"}


def test_code_location_loads_in_a_fresh_process_without_databases(tmp_path):
    # Embedded defaults in an empty home: loading must neither start the server nor open the warehouse.
    env = {k: v for k, v in os.environ.items() if k not in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL", "WAREHOUSE_DUCKDB_PATH")}
    env["WAREHOUSE_HOME"] = str(tmp_path)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys, dagster as dg; from assets.definitions import defs; dg.Definitions.validate_loadable(defs); "
                    "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'a model library loaded'"],
                   cwd=ROOT, env=env, check=True, timeout=120)
    elapsed = time.perf_counter() - began
    print(f"code location loaded in {elapsed:.1f}s")
    assert list(tmp_path.iterdir()) == []  # no server started, no warehouse file created


GROUPS = {"cheeko_raw", "cognova_raw", "staging", "rollups", "memory", "reports", "extracts"}


def test_every_asset_reads_well_in_the_ui():
    """A group, a description, kinds, an owner and a freshness policy on every asset; columns on every table."""
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    by_group: dict[str, int] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        by_group[node.group_name] = by_group.get(node.group_name, 0) + 1
        assert node.description and len(node.description) > 80, key
        assert node.kinds and node.owners == ["team:data"], key
        # The one asset the pipeline does not make (device_memories, read by the memory sync) has no deadline.
        assert (node.freshness_policy is not None) == node.is_materializable, key
        if node.group_name in ("cheeko_raw", "cognova_raw", "rollups") and key.path[0] != "cheeko_published_progress":
            schema = node.metadata["dagster/column_schema"]
            assert schema.columns and all(c.description for c in schema.columns), key
    assert set(by_group) == GROUPS
    assert by_group["extracts"] == by_group["reports"] == 1 and by_group["memory"] == 2
    checks = {k.name for k in graph.asset_check_keys}
    assert {"matches_source", "memory_chunks_match_their_files",
            "duplicate_events"} <= checks


def test_automation_is_declared():
    from assets.definitions import defs

    assert {s.name for s in defs.schedules} == {"warehouse_daily_0030_utc", "email_reports_hourly"}
    daily = defs.resolve_schedule_def("warehouse_daily_0030_utc")
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 0 * * *", "UTC")
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    assert {s.name for s in defs.sensors} == {"device_memories_changed", "publish_snapshot_after_runs",
                                            "publish_snapshot_after_backfills"}
    # Everything that writes the DuckDB file shares the one-slot pool; the memory sync (PostgreSQL only) does not.
    graph = defs.resolve_asset_graph()
    pools = {key: graph.get(key).pools for key in graph.materializable_asset_keys}
    assert {k for k, p in pools.items() if p != {"warehouse_writer"}} == {dg.AssetKey(["memory_chunks"])}


def test_the_instance_configuration_is_what_the_docs_say(tmp_path):
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        pools = instance.get_concurrency_config().pool_config
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "run")
