"""Materialize a selection of the graph for a date range: ``warehouse run``.

The selection is split into consecutive runs wherever partitioning changes
along the dependency order (unpartitioned raw tables, then the daily ones for
the whole range in one run, then whatever depends on them), so each run is a
single query per table over the range rather than one run per day. A
selection that writes the warehouse ends by publishing the analyst snapshot,
as the daemon's sensor does after runs launched from the UI.
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from dataclasses import dataclass, field

import dagster as dg

from assets.automation import DAILY_GROUPS, PUBLISHES_LAST_TAG
from assets.definitions import defs
from assets.extracts import ANALYST_SNAPSHOT_KEY
from assets.partitions import DAILY
from assets.resources import snapshot_tag
from pipelines.databases import database_url
from pipelines.extract import event_days
from pipelines.postgres import Snapshot
from pipelines.settings import DATABASES, Settings
from pipelines.source_tables import source_table

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class RunFailed(RuntimeError):
    """Assets failed; the message names each with its one-line error. What did not depend on them ran."""


@dataclass
class RunSummary:
    """What ``materialize`` did: per asset, its row count and checks."""

    start: dt.date | None
    end: dt.date | None
    rows: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


def _selected(selection: str | None) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return set(dg.AssetSelection.from_string(selection).resolve(graph) if selection else graph.get_all_asset_keys())


def with_publishing(keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """``keys`` plus the analyst snapshot when any of them writes the warehouse file."""
    graph = defs.resolve_asset_graph()
    writes = any(graph.get(k).group_name in DAILY_GROUPS for k in keys if k != ANALYST_SNAPSHOT_KEY)
    return keys | {ANALYST_SNAPSHOT_KEY} if writes else keys


def _waves(keys: set[dg.AssetKey]) -> list[tuple[bool, list[dg.AssetKey]]]:
    """Runs in dependency order: each takes every selected asset whose selected
    upstreams are done, unpartitioned ones first, then the partitioned ones.
    The analyst snapshot, when selected, is always the last run: it copies
    whatever the others wrote, selected upstream or not."""
    graph = defs.resolve_asset_graph()
    publish = ANALYST_SNAPSHOT_KEY in keys
    keys = keys - {ANALYST_SNAPSHOT_KEY}
    done: set[dg.AssetKey] = set()
    waves: list[tuple[bool, list[dg.AssetKey]]] = []
    while len(done) < len(keys):
        ready = sorted((k for k in keys - done if (graph.get(k).parent_keys & keys) <= done), key=lambda k: k.to_user_string())
        if not ready:
            raise ValueError("the selection has a dependency cycle")
        for partitioned in (False, True):
            batch = [k for k in ready if (graph.get(k).partitions_def is not None) == partitioned]
            if batch:
                waves.append((partitioned, batch))
        done |= set(ready)
    return waves + [(False, [ANALYST_SNAPSHOT_KEY])] if publish else waves


def default_range(settings: Settings, keys: set[dg.AssetKey], progress=print) -> tuple[dt.date, dt.date] | None:
    """The days with data, up to the last complete day, over the selected daily raw tables."""
    last = DAILY.get_last_partition_key()
    if last is None:
        return None
    cutoff = dt.date.fromisoformat(last) + dt.timedelta(days=1)
    by_database: dict[str, list[str]] = {}
    for key in keys:
        prefix, name = key.path[0], key.path[-1]
        if prefix.startswith("raw_") and source_table(prefix.removeprefix("raw_"), name).partitioned:
            by_database.setdefault(prefix.removeprefix("raw_"), []).append(name)
    days: list[dt.date] = []
    for database, tables in by_database.items():
        with Snapshot(database_url(settings, database)) as snapshot:
            # A table that cannot load as declared: its own step fails with the same line; the others give their days.
            days += event_days(snapshot, [source_table(database, name) for name in tables], cutoff,
                               skipped=lambda problem: progress(f"  skipped in the date range: {problem}"))
    if not days:
        return None
    start = max(min(days), settings.partitions_start)
    return (start, max(days)) if start <= max(days) else None


def materialize(settings: Settings, instance: dg.DagsterInstance, *, selection: str | None = None,
                start: dt.date | None = None, end: dt.date | None = None, progress=print) -> RunSummary:
    """Materialize ``selection`` (default: everything) for ``start..end`` (default: all days with data)."""
    keys = _selected(selection)
    if not keys:
        raise ValueError(f"the selection {selection!r} matches no asset")
    keys = with_publishing(keys)
    any_partitioned = any(partitioned for partitioned, _ in _waves(keys))
    if any_partitioned and (start is None or end is None):
        found = default_range(settings, keys, progress)
        if found is None:
            progress("no complete day with data yet: daily assets skipped")
        start, end = (start or (found[0] if found else None)), (end or (found[1] if found else None))
    if start and end and start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    summary = RunSummary(start=start, end=end)
    job = defs.resolve_implicit_global_asset_job_def()
    # The selection may take several Dagster runs; they all read one snapshot per database,
    # exported here and held open until the last of them has finished.
    with ExitStack() as stack:
        snapshots = {db: stack.enter_context(Snapshot(database_url(settings, db))) for db in DATABASES}
        shared = {snapshot_tag(db): snapshot.id for db, snapshot in snapshots.items()}
        if ANALYST_SNAPSHOT_KEY in keys:
            shared[PUBLISHES_LAST_TAG] = "true"  # the daemon's sensor need not publish after each run
        _run_waves(job, instance, keys, start, end, shared, summary, progress)
    for name in summary.failed_checks:
        progress(f"  check failed: {name}")
    return summary


def _run_waves(job, instance: dg.DagsterInstance, keys: set[dg.AssetKey], start: dt.date | None, end: dt.date | None,
               shared_tags: dict[str, str], summary: RunSummary, progress) -> None:
    """Run the waves in order. An asset that fails holds back only what depends on it: the other
    tables and marts still run (one source table the app changed must not stop the rest), and the
    run fails at the end, naming each failure. The analyst snapshot is published only when nothing failed."""
    graph = defs.resolve_asset_graph()
    failures: list[str] = []
    held_back: set[dg.AssetKey] = set()
    for partitioned, wave in _waves(keys):
        if partitioned and not (start and end):
            continue
        blocked = [k for k in wave if k == ANALYST_SNAPSHOT_KEY and failures
                   or graph.get(k).parent_keys & held_back]
        if blocked:
            held_back |= set(blocked)
            for key in blocked:
                progress(f"  {key.to_user_string():<45} not run: an asset it depends on failed")
            wave = [k for k in wave if k not in blocked]
            if not wave:
                continue
        tags = dict(shared_tags)
        label = f"{len(wave)} asset(s)"
        if partitioned:
            tags |= {"dagster/asset_partition_range_start": start.isoformat(),
                     "dagster/asset_partition_range_end": end.isoformat()}
            label += f" for {start} .. {end}"
        progress(f"running {label}")
        result = job.execute_in_process(instance=instance, asset_selection=wave, tags=tags, run_config=QUIET_LOGS,
                                        raise_on_error=False)
        summary.run_ids.append(result.run_id)
        # A ranged run records one materialization per partition, all alike: report each asset once.
        latest = {}
        for event in result.get_asset_materialization_events():
            materialization = event.event_specific_data.materialization
            latest[materialization.asset_key.to_user_string()] = materialization.metadata
        for name, metadata in sorted(latest.items()):
            rows = metadata.get("dagster/row_count")
            summary.rows[name] = rows.value if rows else 0
            written = metadata.get("rows_written")
            progress(f"  {name:<45} {summary.rows[name]:>11,} rows" + (f"  ({written.value:,} written)" if written else ""))
        for check in result.get_asset_check_evaluations():
            if not check.passed:
                summary.failed_checks.append(f"{check.asset_key.to_user_string()}:{check.check_name}")
        if not result.success:
            failed_steps = [e for e in result.all_events if e.is_step_failure]
            for event in failed_steps:
                message = event.step_failure_data.error.message.strip().splitlines()[0]
                failures.append(f"{event.step_key}: {message}")
                progress(f"  failed: {event.step_key}: {message}")
            done = {e.event_specific_data.materialization.asset_key for e in result.get_asset_materialization_events()}
            held_back |= set(wave) - done
            if not failed_steps:
                failures.append(f"run {result.run_id} failed: see the Dagster UI")
    if failures:
        raise RunFailed(f"{len(failures)} asset(s) failed (what depends on them was not run): " + "; ".join(failures))
