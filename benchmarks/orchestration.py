"""Benchmark: what running the graph through Dagster costs over the engine alone, at ``--devices 2000 --days 90``.

Both sides run in this one process, on the same generated fleet, each into its
own fresh DuckDB file; each Dagster figure is printed beside its baseline, the
engine (``pipelines``) doing the same work without Dagster:

1. the full history: ``warehouse run`` (``assets.runs.materialize``) of every
   asset but the memory sync (it has its own benchmark, ``embed.py``) and the
   email reports, vs the engine alone:
   every source table extracted (daily ones over the same window), every mart
   built for every day, the marts' data-quality checks (``rollups.quality_report``
   and ``rollups.drift_summary``, as the graph's ``data_quality`` check step
   runs them), the exact progress values published to Cheeko
   (``rollups.publish``, into emptied tables on both sides) and the analyst
   snapshot published (``analyst_extracts.publish``) (baseline);
2. one new day after ``warehouse generate --append-days 1``: ``warehouse run
   --start DAY --end DAY`` vs the engine alone on its own file doing the same
   work: daily tables over the day and the day before (``LATE_DATA``), the
   incremental and full tables, the marts for those two days, their checks, the
   publish (from the same published state on both sides) and the snapshot (baseline);
   ``--new-days`` days one after another (default 3), the figure being the
   median of their ratios (one day's run is short, and this machine's speed
   moves by a tenth from one minute to the next);
3. Dagster's bookkeeping: the ratio Dagster/engine of both figures; the runs,
   steps (STEP_START events) and events the instance stored for each, and the
   extra seconds per step and per event. Each ratio is also printed against the
   baseline without the checks (as this benchmark measured before they joined it).

Dagster runs first in both figures (so it, not the baseline, meets any cold
cache). Also printed: whether both files hold the same row counts per table (same work
on both sides). A Dagster run that fails (``RunFailed``) is still measured, and its
figure says FAILED.

Dagster runs on a throwaway instance in a temporary ``DAGSTER_HOME``: by default
``deploy/dagster.postgres.yaml`` in a database of its own with ``DAGSTER_EVENT_BATCH_SIZE=100``,
the storage of the embedded default (``pipelines/dagster_home.py``) and of production; with
``--storage sqlite``, this repository's ``dagster.yaml`` (SQLite files). The databases are
``orchestration_cheeko`` / ``orchestration_cognova`` on the configured (or
embedded) server, dropped at the end.

    .venv/bin/python benchmarks/orchestration.py [--devices 2000] [--days 90] [--storage postgres|sqlite] [--new-days 3]
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import arguments, drop_databases, fresh_databases, generate_fleet, instance_on_postgres, timed
from extract import extract_all
from pipelines import analyst_extracts, generator, postgres, rollups, warehouse
from pipelines.settings import load
from pipelines.source_tables import source_tables

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "orchestration"
# Like with like: the memory sync (embedding model) and the email reports are measured elsewhere.
SELECTION = "not key:memory_chunks and not key:email_reports"
PSEUDONYM_KEY = "bench"  # the key extract_all uses: both files hold the same pseudonyms
DAY = dt.timedelta(days=1)


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def run_progress(line: str) -> None:
    """``materialize``'s lines: one per run and anything that went wrong, not one per asset."""
    if line.startswith("running") or any(word in line for word in ("failed", "skipped", "not run", "no complete day")):
        say(f"    dagster: {line.strip()}")


def point_environment(tmp: Path, urls: dict[str, str], partitions_start: dt.date, storage: str = "postgres") -> Path:
    """Every setting the Dagster side reads, pointing at this run's databases and folders; returns DAGSTER_HOME.

    ``storage="postgres"``: the production instance (deploy/dagster.postgres.yaml; the embedded default writes the
    same with its server filled in) in a fresh database ``orchestration_dagster`` on the same server, with events
    written in batches (DAGSTER_EVENT_BATCH_SIZE); ``"sqlite"``: this repository's dagster.yaml."""
    home = tmp / "dagster"
    home.mkdir()
    if storage == "postgres":
        instance_on_postgres(home, postgres.with_database(urls["cheeko"], "postgres"), f"{PREFIX}_dagster")
    else:
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ.update({
        "DAGSTER_HOME": str(home),
        "WAREHOUSE_HOME": str(tmp / "home"),
        "WAREHOUSE_DUCKDB_PATH": str(tmp / "dagster.duckdb"),
        "CHEEKO_DATABASE_URL": urls["cheeko"],
        "COGNOVA_DATABASE_URL": urls["cognova"],
        "WAREHOUSE_PSEUDONYM_KEY": PSEUDONYM_KEY,
        # Read when `assets` is imported (assets.partitions), so set before it is.
        "WAREHOUSE_PARTITIONS_START": partitions_start.isoformat(),
    })
    return home


def clear_published(cheeko_url: str) -> None:
    """Empty Cheeko's published progress tables, so each side's first publish writes every row."""
    # Identifiers from the pipeline's own constants (TRUNCATE takes no bound table names).
    tables = ", ".join(f"{rollups.PUBLISHED_SCHEMA}.{name}" for name in rollups.PUBLISHED)
    with postgres.connect(cheeko_url) as conn:
        conn.execute(f"TRUNCATE {tables}")


def engine_run(urls: dict[str, str], path: Path, extracts: Path, window: tuple[dt.datetime, dt.datetime],
               first_day: dt.date, last_day: dt.date) -> dict[str, float]:
    """What the graph does, without Dagster: every table (daily ones over ``window``), every mart for
    ``first_day..last_day``, the marts' data-quality checks, the publish to Cheeko and the analyst snapshot;
    seconds per part and in all."""
    settings = load()
    parts: dict[str, float] = {}
    began = time.perf_counter()
    parts["extract"] = timed(lambda: extract_all(urls, path, source_tables(), {t.key: window for t in source_tables()}))
    with warehouse.connect(path) as con:
        as_of_time = dt.datetime.now(dt.UTC)  # as the mart assets do
        parts["marts"] = timed(lambda: rollups.build(con, as_of_time=as_of_time, first_day=first_day, last_day=last_day))
        # The graph's data-quality checks of the marts (assets.rollups.data_quality): the same report and drift
        # summary, incremental here as there (the report keeps its counts in this file's own _warehouse).
        parts["checks"] = timed(lambda: (rollups.quality_report(con, as_of_time=as_of_time, cheeko_url=urls["cheeko"]),
                                         rollups.drift_summary(con)))
        parts["publish"] = timed(lambda: rollups.publish(con, urls["cheeko"], as_of_date=rollups.latest_as_of(con)))
        parts["snapshot"] = timed(lambda: analyst_extracts.publish(con, extracts, published_at=dt.datetime.now(dt.UTC),
                                                                   keep=settings.extracts_keep))
    parts["total"] = time.perf_counter() - began
    return parts


def row_counts(path: Path) -> dict[str, int]:
    """Rows per table of the raw layer and the marts."""
    with warehouse.connect(path, read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
                             "AND (schema_name LIKE 'raw\\_%' ESCAPE '\\' OR schema_name = 'marts') ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": con.execute("SELECT count(*) FROM query_table(?)", [f"{s}.{t}"]).fetchone()[0]
                for s, t in tables}


def same_rows(engine: Path, dagster: Path) -> str:
    """One line: do both files hold the same tables with the same row counts?"""
    ours, theirs = row_counts(engine), row_counts(dagster)
    differ = [f"{t} {ours.get(t, 'absent')} vs {theirs.get(t, 'absent')}" for t in sorted(ours.keys() | theirs.keys())
              if ours.get(t) != theirs.get(t)]
    if not differ:
        return (f"same row counts in all {len(ours)} tables ({sum(ours.values()):,} rows); "
                f"staging pass: engine {staging_pass(engine)}, Dagster {staging_pass(dagster)}")
    return f"{len(differ)} of {len(ours.keys() | theirs.keys())} tables differ (engine vs Dagster): " + "; ".join(differ[:6])


def staging_pass(path: Path) -> str:
    """What the file's last staging pass rebuilt: whole, or a window (the same work on both sides?)."""
    with warehouse.connect(path, read_only=True) as con:
        done = rollups.last_pass(con)
    if done is None:
        return "none"
    window = f" {done.window_start:%Y-%m-%d %H:%M} .. {done.window_end:%Y-%m-%d %H:%M}" if done.window_start else ""
    return f"{done.kind}{window}" + (f" ({done.reason})" if done.reason else "")


def stored_outcome(instance, run_ids: list[str]) -> tuple[int, int]:
    """Assets materialized and checks failed in ``run_ids``, from the event log (when ``materialize`` raised)."""
    import dagster as dg

    assets, failed = set(), 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION,
                                                        dg.DagsterEventType.ASSET_CHECK_EVALUATION}):
            event = entry.dagster_event
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                assets.add(event.asset_key)
            elif not event.event_specific_data.passed:
                failed += 1
    return len(assets), failed


class DagsterRun:
    """One ``warehouse run`` (``assets.runs.materialize``) on ``instance``: its seconds, days, run ids and failure.

    A run that fails (``RunFailed``: an asset failed or an ERROR check did not pass) is still measured: the
    benchmark goes on, and says so beside the figure."""

    def __init__(self, instance, **kwargs) -> None:
        from assets import runs

        known = {run.run_id for run in instance.get_runs()}
        self.failure: str | None = None
        began = time.perf_counter()
        try:
            summary = runs.materialize(load(), instance, selection=SELECTION, progress=run_progress, **kwargs)
        except runs.RunFailed as failed:
            summary, self.failure = None, str(failed)
            say(f"    dagster: FAILED: {self.failure[:400]}")
        self.seconds = time.perf_counter() - began
        if summary is not None:
            self.run_ids, self.start, self.end = summary.run_ids, summary.start, summary.end
            self.assets, self.warnings = len(summary.rows), len(summary.failed_checks)
        else:
            # No summary: the runs it started, and their partition range, from the instance.
            started = [run for run in instance.get_runs() if run.run_id not in known]
            self.run_ids = [run.run_id for run in reversed(started)]
            ranges = {(run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end"))
                      for run in started} - {(None, None)}
            self.start, self.end = (dt.date.fromisoformat(d) for d in min(ranges)) if ranges else (None, None)
            self.assets, self.warnings = stored_outcome(instance, self.run_ids)

    def note(self) -> str:
        return "" if self.failure is None else f"   FAILED: {self.failure[:300]}"


def bookkeeping(instance, run_ids: list[str]) -> dict:
    """Runs, steps and events the instance stored for ``run_ids``, the commonest event types, and the seconds
    spent inside steps (STEP_START to its STEP_SUCCESS or STEP_FAILURE), in all and for the slowest steps."""
    import dagster as dg

    kinds: collections.Counter = collections.Counter()
    began: dict[tuple[str, str], float] = {}
    steps: dict[str, float] = {}
    ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            kind = entry.dagster_event_type
            kinds[kind.value if kind else "log message"] += 1
            if kind == dg.DagsterEventType.STEP_START:
                began[(run_id, entry.step_key)] = entry.timestamp
            elif kind in ends and (run_id, entry.step_key) in began:
                steps[entry.step_key] = steps.get(entry.step_key, 0.0) + entry.timestamp - began[(run_id, entry.step_key)]
    return {"runs": len(run_ids), "steps": kinds[dg.DagsterEventType.STEP_START.value],
            "events": sum(kinds.values()), "kinds": kinds, "inside_steps": sum(steps.values()),
            "slowest": sorted(steps.items(), key=lambda kv: -kv[1])}


def options(parser) -> None:
    parser.add_argument(
        "--storage", choices=["sqlite", "postgres"], default="postgres",
        help="the Dagster instance's storage: PostgreSQL with batched event writes (deploy/dagster.postgres.yaml: "
             "the embedded default's and production's) or SQLite files (dagster.yaml: configured databases "
             "without a DAGSTER_HOME)")
    parser.add_argument("--new-days", type=int, default=3,
                        help="days appended and run one after another; the one-day figure is the median of their ratios")


def main() -> None:
    args = arguments(__doc__, options)
    if args.new_days < 1:
        raise SystemExit("--new-days must be at least 1")
    say(f"databases {PREFIX}_cheeko / {PREFIX}_cognova")
    urls = fresh_databases(PREFIX)  # on the configured or embedded server: before this process points elsewhere
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        say(f"generating {args.devices} devices x {args.days} days")
        fleet = generate_fleet(urls, args, tmp / "gen")
        say(f"  {fleet.total_rows:,} rows for {fleet.start} .. {fleet.end} in {fleet.seconds:.1f} s")
        # Local days west of UTC begin on the UTC day before the fleet's first day (as `warehouse run` sets it).
        home = point_environment(tmp, urls, fleet.start - DAY, args.storage)
        if "assets" in sys.modules:
            raise RuntimeError("assets was imported before WAREHOUSE_PARTITIONS_START was set")
        import dagster as dg

        from assets.partitions import LATE_DATA

        warnings.filterwarnings("ignore", category=dg.BetaWarning)  # `not` in a selection string is beta
        engine_path, dagster_path = tmp / "engine.duckdb", load().duckdb_path
        engine_extracts = tmp / "engine_extracts"

        with dg.DagsterInstance.from_config(str(home)) as instance:
            # 1. The full history.
            say(f"1. full history through Dagster ({SELECTION})")
            clear_published(urls["cheeko"])
            full = DagsterRun(instance)
            dagster_full = full.seconds
            say(f"   {full.assets} assets for {full.start} .. {full.end} in {dagster_full:.1f} s")
            if full.start is None:
                raise RuntimeError("the Dagster run materialized no daily partition: no range to compare with")
            # The same window and days the graph used: partitions start..end, each run refreshing the day before.
            window = (dt.datetime.combine(full.start, dt.time(0), dt.UTC) - LATE_DATA,
                      dt.datetime.combine(full.end, dt.time(0), dt.UTC) + DAY)
            say("1. full history, engine alone")
            clear_published(urls["cheeko"])
            engine_full = engine_run(urls, engine_path, engine_extracts, window, full.start - LATE_DATA, full.end)
            say(f"   {engine_full['total']:.1f} s")
            full_rows = same_rows(engine_path, dagster_path)
            full_books = bookkeeping(instance, full.run_ids)

            # 2. One appended day, --new-days times: a day's run is short, and this machine's speed moves by a
            # tenth between minutes, so the figure is the median of the days' ratios.
            days = []
            for _ in range(args.new_days):
                say("2. appending one day (warehouse generate --append-days 1)")
                appended = generator.append(urls["cheeko"], urls["cognova"], 1, tmp / "gen", progress=lambda _: None)
                new_day = appended.end
                say(f"   {appended.total_rows:,} rows for {appended.start} .. {appended.end}")
                say(f"2. {new_day} through Dagster")
                day = DagsterRun(instance, start=new_day, end=new_day)
                say(f"   {day.assets} assets in {day.seconds:.2f} s")
                # The engine's publish starts from the same published state as Dagster's did: the run before.
                with warehouse.connect(engine_path) as con:
                    rollups.publish(con, urls["cheeko"], as_of_date=rollups.latest_as_of(con))
                say(f"2. {new_day}, engine alone")
                day_window = (dt.datetime.combine(new_day, dt.time(0), dt.UTC) - LATE_DATA,
                              dt.datetime.combine(new_day, dt.time(0), dt.UTC) + DAY)
                engine_day = engine_run(urls, engine_path, engine_extracts, day_window, new_day - LATE_DATA, new_day)
                say(f"   {engine_day['total']:.2f} s")
                days.append((new_day, day, engine_day, same_rows(engine_path, dagster_path), bookkeeping(instance, day.run_ids)))
            storage_class = type(instance.event_log_storage).__name__

    def parts(engine: dict[str, float]) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in engine.items() if name != "total")

    def overhead(dagster: float, engine: dict[str, float], books: dict) -> str:
        extra = dagster - engine["total"]
        slowest = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in books["slowest"])
        return (f"{books['runs']} Dagster run(s), {books['steps']} steps, {books['events']:,} events stored; "
                f"extra {extra:+.2f} s = {extra / max(books['steps'], 1):+.3f} s per step, "
                f"{extra / max(books['events'], 1) * 1000:+.1f} ms per event\n"
                f"   inside steps {books['inside_steps']:.2f} s, outside them {dagster - books['inside_steps']:.2f} s; "
                f"steps, slowest first: {slowest}")

    print()
    print(f"orchestration --devices {args.devices} --days {args.days} --storage {args.storage}   (selection: {SELECTION})")
    print(f"1. full history, {full.start} .. {full.end}, every table, every mart, publish, analyst snapshot")
    print(f"   engine alone                  {engine_full['total']:8.2f} s   baseline   ({parts(engine_full)})")
    print(f"   through Dagster               {dagster_full:8.2f} s   {dagster_full / engine_full['total']:.2f}x"
          f"   ({full.assets} assets, {full.warnings} failed checks){full.note()}")
    print(f"   {overhead(dagster_full, engine_full, full_books)}")
    print(f"   files: {full_rows}")
    ratios = [day.seconds / engine_day["total"] for _, day, engine_day, _, _ in days]
    median = statistics.median(ratios)
    print(f"2. one new day (with the day before), after --append-days 1, {len(days)} day(s) one after another")
    for new_day, day, engine_day, day_rows, day_books in days:
        print(f"   {new_day}: engine alone {engine_day['total']:6.2f} s, through Dagster {day.seconds:6.2f} s   "
              f"{day.seconds / engine_day['total']:.2f}x   ({day.assets} assets, {day.warnings} failed checks){day.note()}")
        print(f"      engine: {parts(engine_day)}; files: {day_rows}")
        print("      " + overhead(day.seconds, engine_day, day_books).replace("\n   ", "\n      "))
    print(f"3. Dagster/engine: full history {dagster_full / engine_full['total']:.2f}x, one day {median:.2f}x "
          f"(median of {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"   event log storage: {storage_class}")
    print("   one day, commonest events: " + ", ".join(f"{kind} {n}" for kind, n in days[-1][4]["kinds"].most_common(6)))
    unchecked = [day.seconds / (engine_day["total"] - engine_day["checks"]) for _, day, engine_day, _, _ in days]
    print(f"   against the baseline without the checks: full history "
          f"{dagster_full / (engine_full['total'] - engine_full['checks']):.2f}x, one day {statistics.median(unchecked):.2f}x")
    drop_databases(PREFIX)
    if args.storage == "postgres":
        postgres.drop_database(postgres.with_database(load().cheeko_url, "postgres"), f"{PREFIX}_dagster")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
