"""Materialize a selection of the graph for a date range: ``warehouse run``.

One user action is one Dagster run: the selection's raw tables, staging, marts, checks, the published
progress and, when any of them writes the warehouse, the analyst snapshot, for the whole date range at once
(a run with a partition range materializes the daily assets once per table over the range, and the others
once). The run reads one source snapshot per database, and the analyst snapshot, which depends on every table
it copies, runs last, and is not run when one of them failed or was skipped (a failed check does not stop it:
checks are not blocking). Progress is printed per asset as it completes.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

import dagster as dg

from assets.automation import DAILY_GROUPS
from assets.definitions import defs
from assets.extracts import ANALYST_SNAPSHOT_KEY
from assets.partitions import DAILY
from pipelines.databases import database_url
from pipelines.extract import event_days
from pipelines import postgres
from pipelines.postgres import Snapshot
from pipelines.settings import Settings
from pipelines.source_tables import source_table

# Dagster's console logger would print each step failure with its stack trace; the watcher below says each
# failure in one line, and the run's full logs stay in the instance (the UI).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
WATCHED = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
           dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
POLL_SECONDS = 0.5


class RunFailed(RuntimeError):
    """Assets failed; the message names each with its one-line error. What did not depend on them ran."""


@dataclass
class RunSummary:
    """What ``materialize`` did: per asset its row count, the checks that failed, the run."""

    start: dt.date | None
    end: dt.date | None
    rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[str]:
        """Every check that failed, WARN and ERROR alike."""
        return self.warnings + self.errors


def _selected(selection: str | None) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    everything = graph.materializable_asset_keys
    return set(dg.AssetSelection.from_string(selection).resolve(graph)) & everything if selection else set(everything)


def with_paths_between(keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """``keys`` plus every asset on a path from one of them to another: selecting raw tables and a mart selects the
    staging between them, so the run builds them in lineage order (the steps of one run are ordered only by the
    dependencies among the selected assets)."""
    graph = defs.resolve_asset_graph()
    chosen = dg.AssetSelection.assets(*keys)
    return keys | (set((chosen.downstream() & chosen.upstream()).resolve(graph)) & graph.materializable_asset_keys)


def with_publishing(keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """``keys`` plus the analyst snapshot when any of them writes the warehouse file."""
    graph = defs.resolve_asset_graph()
    writes = any(graph.get(k).group_name in DAILY_GROUPS for k in keys if k != ANALYST_SNAPSHOT_KEY)
    return keys | {ANALYST_SNAPSHOT_KEY} if writes else keys


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
        try:
            with Snapshot(database_url(settings, database)) as snapshot:
                # A table that cannot load as declared: its own check fails with the same line; the others give their days.
                days += event_days(snapshot, [source_table(database, name) for name in tables], cutoff,
                                   skipped=lambda problem: progress(f"  skipped in the date range: {problem}"))
        except postgres.Error as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RunFailed(f"{database}: cannot read the days with data: {reason}") from None
    if not days:
        return None
    start = max(min(days), settings.partitions_start)
    return (start, max(days)) if start <= max(days) else None


def materialize(settings: Settings, instance: dg.DagsterInstance, *, selection: str | None = None,
                start: dt.date | None = None, end: dt.date | None = None, progress=print) -> RunSummary:
    """Materialize ``selection`` (default: everything) for ``start..end`` (default: all days with data), in one run.

    Raises :class:`RunFailed` when an asset failed or an ERROR check did not pass; WARN checks that fail are
    in the summary's ``warnings``."""
    keys = _selected(selection)
    if not keys:
        raise ValueError(f"the selection {selection!r} matches no asset")
    keys = with_publishing(with_paths_between(keys))
    graph = defs.resolve_asset_graph()
    if any(key.path[0].startswith("raw_") for key in keys):
        # A configuration error is said once, before any run starts, not once per table.
        settings.require_pseudonym_key()
    partitioned = {k for k in keys if graph.get(k).partitions_def is not None}
    if partitioned and (start is None or end is None):
        found = default_range(settings, keys, progress)
        if found is None:
            progress("no complete day with data yet: daily assets skipped")
        start, end = (start or (found[0] if found else None)), (end or (found[1] if found else None))
    if start and end and start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    summary = RunSummary(start=start, end=end)
    tags = {}
    if partitioned and start and end:
        tags = {"dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat()}
    else:
        keys -= partitioned
    if keys:
        _run(instance, keys, tags, summary, progress)
    for name in summary.warnings:
        progress(f"  warning: check failed: {name}")
    return summary


def _run(instance: dg.DagsterInstance, keys: set[dg.AssetKey], tags: dict[str, str], summary: RunSummary,
         progress) -> None:
    """One run of ``keys``; an asset that fails holds back only what depends on it (Dagster skips those steps):
    the other tables and marts still run, and the run fails at the end, naming each failure."""
    job = defs.resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    summary.run_ids.append(run_id)
    label = f"{len(keys)} asset(s)" + (f" for {tags['dagster/asset_partition_range_start']} .. "
                                         f"{tags['dagster/asset_partition_range_end']}" if tags else "")
    progress(f"running {label} (run {run_id})")
    watcher = _Watcher(instance, run_id, summary, progress)
    watcher.start()
    try:
        result = job.execute_in_process(instance=instance, asset_selection=sorted(keys, key=lambda k: k.path),
                                        tags=tags, run_config=QUIET_LOGS, raise_on_error=False, run_id=run_id)
    finally:
        watcher.finish()
    if not result.success and not watcher.failures:
        watcher.failures.append(f"run {run_id} failed: see the Dagster UI")
    problems = watcher.failures + [f"check {name} failed" + (f": {watcher.details[name]}" if name in watcher.details else "")
                                   for name in summary.errors]
    if problems:
        raise RunFailed(f"{len(problems)} problem(s): " + "; ".join(problems)
                        + (f"; not run, as they depend on a failure: {', '.join(watcher.skipped)}" if watcher.skipped else ""))


class _Watcher(threading.Thread):
    """Prints each asset as it completes, by reading the run's events from the instance while it runs."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, summary: RunSummary, progress):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.summary, self.progress = instance, run_id, summary, progress
        self.failures: list[str] = []
        self.details: dict[str, str] = {}
        self.skipped: list[str] = []
        self._done = threading.Event()
        self._cursor: str | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            self._read()

    def finish(self) -> None:
        self._done.set()
        self.join()
        self._read()

    def _read(self) -> None:
        with self._lock:
            while True:
                page = self.instance.get_records_for_run(self.run_id, cursor=self._cursor, of_type=WATCHED, limit=500)
                self._cursor = page.cursor
                for record in page.records:
                    self._show(record.event_log_entry.dagster_event)
                if not page.has_more:
                    return

    def _show(self, event) -> None:
        kind = event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            name = materialization.asset_key.to_user_string()
            if name in self.summary.rows:
                return  # a ranged run records one materialization per partition, all alike
            rows = materialization.metadata.get("dagster/row_count")
            written = materialization.metadata.get("rows_written")
            self.summary.rows[name] = rows.value if rows else 0
            self.progress(f"  {name:<45} {self.summary.rows[name]:>11,} rows"
                          + (f"  ({written.value:,} written)" if written else ""))
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if check.passed:
                return
            name = f"{check.asset_key.to_user_string()}:{check.check_name}"
            error = check.metadata.get("error")
            if check.severity == dg.AssetCheckSeverity.WARN:
                self.summary.warnings.append(name)
            else:
                self.summary.errors.append(name)
                if error:
                    self.details[name] = error.value
                self.progress(f"  failed: {name}" + (f": {error.value}" if error else ""))
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            message = event.step_failure_data.error.message.strip().splitlines()[0]
            message = message.removeprefix("dagster._core.definitions.events.Failure: ")
            self.failures.append(f"{event.step_key}: {message}")
            self.progress(f"  failed: {event.step_key}: {message}")
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self.skipped.append(event.step_key)
            self.progress(f"  {event.step_key:<45} not run: an asset it depends on failed")
