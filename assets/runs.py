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
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import dagster as dg
from dagster_graphql import DagsterGraphQLClient

from assets.automation import DAILY_GROUPS
from assets.definitions import defs
from assets.extracts import ANALYST_SNAPSHOT_KEY
from assets.instance_storage import hold_storage_connections
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
# Dagster's own switch (read when a run is created): one "planned" event per asset for a run over a partition
# range, instead of one per asset and day. Without it a full history (91 days) stored 92 x 91 such events
# before the first step started, a third of the run's time (measured in docs/scaling.md). The price: the UI
# shows the partitions of a failed `warehouse run` as missing rather than failed; the command itself names
# every failure and exits 1. Runs the daemon launches (schedules, UI backfills) keep the per-day events.
PLANNED_AS_RANGE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


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
                start: dt.date | None = None, end: dt.date | None = None, progress=print,
                deployment: str | None = None) -> RunSummary:
    """Materialize ``selection`` (default: everything) for ``start..end`` (default: all days with data), in one run:
    submitted to the Dagster webserver at ``deployment`` (whose instance is ``instance``), else executed here.

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
    hold_storage_connections(instance)
    tags = {}
    if partitioned and start and end:
        tags = {"dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat()}
    else:
        keys -= partitioned
    if keys:
        if deployment:
            _submit(instance, deployment, keys, tags, summary, progress)
        else:
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
    progress(f"running {_label(keys, tags)} (run {run_id})")
    watcher = _Watcher(instance, run_id, summary, progress)
    watcher.start()
    before = os.environ.get(PLANNED_AS_RANGE)
    os.environ[PLANNED_AS_RANGE] = "1"
    try:
        result = job.execute_in_process(instance=instance, asset_selection=sorted(keys, key=lambda k: k.path),
                                        tags=tags, run_config=QUIET_LOGS, raise_on_error=False, run_id=run_id)
    finally:
        if before is None:
            os.environ.pop(PLANNED_AS_RANGE)
        else:
            os.environ[PLANNED_AS_RANGE] = before
        watcher.finish()
    _raise_problems(watcher, summary, run_id, result.success)


def _label(keys: set[dg.AssetKey], tags: dict[str, str]) -> str:
    return f"{len(keys)} asset(s)" + (f" for {tags['dagster/asset_partition_range_start']} .. "
                                      f"{tags['dagster/asset_partition_range_end']}" if tags else "")


def _raise_problems(watcher: _Watcher, summary: RunSummary, run_id: str, succeeded: bool) -> None:
    """:class:`RunFailed` naming each failed asset and ERROR check of the run, and what was not run because of them."""
    if not succeeded and not watcher.failures:
        watcher.failures.append(f"run {run_id} failed: see the Dagster UI")
    problems = watcher.failures + [f"check {name} failed" + (f": {watcher.details[name]}" if name in watcher.details else "")
                                   for name in summary.errors]
    if problems:
        raise RunFailed(f"{len(problems)} problem(s): " + "; ".join(problems)
                        + (f"; not run, as they depend on a failure: {', '.join(watcher.skipped)}" if watcher.skipped else ""))


def _submit(instance: dg.DagsterInstance, deployment: str, keys: set[dg.AssetKey], tags: dict[str, str],
            summary: RunSummary, progress) -> None:
    """One run of ``keys`` submitted to the Dagster webserver at ``deployment``, then followed here to its end.

    There it waits in the run queue with every other run (the warehouse_writer pool) instead of on the DuckDB
    file's lock, its daemon retries it from the failed step (followed here too), and the UI shows it in the
    overview timeline, which leaves out runs executed in a process of their own (they have no code location).
    Progress and failures are read from ``instance``, which must be the deployment's.
    """
    parts = urlsplit(deployment)
    client = DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https", timeout=60)
    job = defs.resolve_implicit_global_asset_job_def().name
    try:
        run_id = client.submit_job_execution(job, asset_selection=[list(k.path) for k in sorted(keys, key=lambda k: k.path)],
                                             tags=tags)
    except Exception as error:  # noqa: BLE001 - the client raises its own error, requests' and gql's
        raise RunFailed(f"the Dagster webserver at {deployment} did not take the run: {_first_line(error)}") from None
    while True:
        summary.run_ids.append(run_id)
        progress(f"running {_label(keys, tags)} (run {run_id}, through {deployment})")
        watcher = _Watcher(instance, run_id, summary, progress)
        watcher.start()
        try:
            run = _wait_for(instance, run_id, progress)
        except KeyboardInterrupt:
            progress(f"stopped following run {run_id}: it goes on in the deployment ({deployment}/runs/{run_id})")
            raise
        finally:
            watcher.finish()
        retry = _retry_of(instance, run) if run.status == dg.DagsterRunStatus.FAILURE else None
        if retry is None:
            break
        progress(f"  run {run_id} failed; the deployment retries it from the failed step as run {retry}")
        run_id = retry
        summary.errors.clear()  # what the retry's checks say counts, not the failed attempt's
        summary.warnings.clear()
    _raise_problems(watcher, summary, run_id, run.status == dg.DagsterRunStatus.SUCCESS)


FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
QUEUED_NOTICE_SECONDS = 10  # a run still queued after this long is said to wait for others
UNSEEN_SECONDS = 30  # a submitted run this instance never sees: it is not the deployment's instance
RETRY_SECONDS = 120  # how long the daemon may take to launch the retry it announced


def _wait_for(instance: dg.DagsterInstance, run_id: str, progress) -> dg.DagsterRun:
    """The run once it has finished, saying once when it waits in the queue."""
    began, told = time.monotonic(), False
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None and time.monotonic() - began > UNSEEN_SECONDS:
            raise RunFailed(f"run {run_id} was submitted, but this instance (DAGSTER_HOME) does not see it: point "
                            "DAGSTER_HOME at the deployment's instance to follow it, or see the deployment's UI")
        if run is not None and run.status in FINISHED:
            return run
        if not told and run is not None and run.status == dg.DagsterRunStatus.QUEUED \
                and time.monotonic() - began > QUEUED_NOTICE_SECONDS:
            progress("  queued: waiting for the runs ahead of it in the deployment's queue (pool warehouse_writer)")
            told = True
        time.sleep(POLL_SECONDS)


def _retry_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The id of the run the daemon launches to retry ``run``, when it announced one (``dagster/will_retry``)."""
    if run.tags.get("dagster/will_retry") != "true":
        return None
    deadline = time.monotonic() + RETRY_SECONDS
    while time.monotonic() < deadline:
        children = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id}), limit=1)
        if children:
            return children[0].run_id
        time.sleep(POLL_SECONDS)
    return None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
