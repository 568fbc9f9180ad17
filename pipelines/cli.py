"""``warehouse``: the command line of companion-warehouse.

    warehouse demo                      start, migrate, generate a small fleet, materialize, summarise
    warehouse config                    print every setting, where it came from, secrets masked
    warehouse pg start|stop|status|url  manage the embedded PostgreSQL server
    warehouse db upgrade|downgrade|current|adopt [--database NAME] [--revision REV]
    warehouse generate --devices N --days D --seed S [--messy] [--end DATE] [--reset]
    warehouse generate --append-days K
    warehouse run [--start DATE] [--end DATE] [--select SELECTION]
    warehouse extract --out FILE [--tables T ...] [--since DATE]   cut a file from the latest analyst snapshot
    warehouse privacy                   the source columns waiting for a rule in privacy.toml (withheld until then)
    warehouse ui [--port 3000]          the Dagster UI and daemon (schedules, sensors) on the embedded defaults
    warehouse search "QUERY" [--device MAC] [-k 5]
    warehouse report preview [--date D] [--config ID]   the admin report for local day D as HTML, to look at
    warehouse report send [--now TIME]  one report tick: send what is due (as the hourly schedule does)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import dagster_home, postgres
from pipelines.databases import database_url, database_urls, warehouse_location
from pipelines.embedded import EmbeddedServer, EmbeddedServerError
from pipelines.settings import DATABASES, Settings, SettingsError, load

if TYPE_CHECKING:
    from pipelines import generator

REPO_ROOT = Path(__file__).resolve().parent.parent
UI_ADDRESS = "webserver.url"  # in the Dagster instance's folder, written by `warehouse ui`
DEMO_DEVICES, DEMO_DAYS, DEMO_SEED = 60, 30, 7


class WorkFailed(RuntimeError):
    """The work started and did not finish (exit 1, not 2: the configuration was fine)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warehouse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded defaults")
    demo.add_argument("--devices", type=int, default=DEMO_DEVICES)
    demo.add_argument("--days", type=int, default=DEMO_DAYS)
    demo.add_argument("--seed", type=int, default=DEMO_SEED)
    demo.add_argument("--end", type=dt.date.fromisoformat, help="last day with data (default: the last day ended everywhere)")

    sub.add_parser("config", help="print every setting: where its value came from (set, default, embedded) "
                                  "and the value, secrets masked")

    pg = sub.add_parser("pg", help="manage the embedded PostgreSQL server")
    pg.add_argument("action", choices=["start", "stop", "status", "url"])
    pg.add_argument("--database", choices=DATABASES, help="with `url`: print only this database's URL")

    db = sub.add_parser("db", help="schema migrations (Alembic); adopt a database the app created",
                        description="upgrade: the app's schema (embedded databases) and the pipeline's own tables; "
                                    "on a database the app created, the same as adopt. adopt: check that the app's "
                                    "tables hold what the pipeline reads and writes, then install only the "
                                    "pipeline's tables (Cheeko's schema `warehouse`); the app's tables are never "
                                    "touched. downgrade: remove what this project made. current: the revisions.")
    db.add_argument("action", choices=["upgrade", "downgrade", "current", "adopt"])
    db.add_argument("--database", choices=[*DATABASES, "all"], default="all")
    db.add_argument("--revision", help="target revision (default: head for upgrade, base for downgrade)")

    gen = sub.add_parser("generate", help="fill the operational databases with a realistic fleet")
    gen.add_argument("--devices", type=int, default=200)
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--messy", action="store_true", help="inject every fault metrics.md names")
    gen.add_argument("--end", type=dt.date.fromisoformat, help="last day with data (default: yesterday, UTC)")
    gen.add_argument("--reset", action="store_true", help="replace existing rows instead of refusing")
    gen.add_argument("--append-days", type=int, metavar="K", help="continue the existing dataset by K days")

    run = sub.add_parser("run", help="materialize assets for a date range, in dependency order")
    run.add_argument("--start", type=dt.date.fromisoformat, help="first day (default: the first day with data)")
    run.add_argument("--end", type=dt.date.fromisoformat, help="last day (default: yesterday, the last complete day)")
    run.add_argument("--select", help="Dagster asset selection, e.g. 'group:cheeko_raw' or 'key:raw_cheeko/ai_device' "
                                      "(default: every asset)")
    extract = sub.add_parser("extract", help="write some tables of the latest analyst snapshot to a file")
    extract.add_argument("--out", type=Path, required=True, help="the file to write: .duckdb (any number of tables, "
                                                                 "with the data dictionary), .parquet or .csv (one table)")
    extract.add_argument("--tables", nargs="+", metavar="TABLE", help="e.g. fleet_daily, marts.device_streaks, "
                                                                      "raw_cheeko.ai_device, 'raw_cognova.*' "
                                                                      "(default: every mart)")
    extract.add_argument("--since", type=dt.date.fromisoformat, help="only rows on or after this day (by each table's "
                                                                     "day, local date or as-of date; tables without "
                                                                     "one are copied whole)")
    extract.add_argument("--snapshot", type=Path, help="the snapshot to read (default: $WAREHOUSE_HOME/extracts/latest.duckdb)")
    lake = sub.add_parser("lake", help="the DuckLake backend (WAREHOUSE_CATALOG=ducklake): migrate the file into it, "
                                       "compact it, or show how to query it",
                          description="migrate: copy the DuckDB warehouse file into the (empty) DuckLake catalog, "
                                      "once, when switching backends. compact: rewrite thinned files, merge small "
                                      "ones, expire old snapshots and delete unread files (a weekly schedule does "
                                      "this in the Dagster UI). status: the lake's snapshot, files, and the "
                                      "read-only ATTACH that analysts use to query it live.")
    lake.add_argument("action", choices=["migrate", "compact", "status"])
    lake.add_argument("--from", dest="source", type=Path, help="with migrate: the warehouse file to copy "
                                                               "(default: WAREHOUSE_DUCKDB_PATH)")
    lake.add_argument("--keep-days", type=int, default=7, help="with compact: snapshots younger than this stay "
                                                               "queryable with AT (VERSION => n) (default 7)")
    sub.add_parser("privacy", help="list the source columns the privacy policy does not classify yet (withheld)")
    ui = sub.add_parser("ui", help="start the Dagster UI and daemon on the warehouse's instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    search = sub.add_parser("search", help="semantic search over the device memories (memory_chunks)")
    search.add_argument("query", help="a question or phrase, e.g. \"what animal does the child love?\"")
    search.add_argument("--device", metavar="MAC", help="only this device's memories (any MAC spelling)")
    search.add_argument("-k", type=int, default=5, help="how many results (default 5)")
    report = sub.add_parser("report", help="email reports: preview one, or run a tick")
    report.add_argument("action", choices=["preview", "send"])
    report.add_argument("--date", type=dt.date.fromisoformat, help="with preview: the local day the report covers "
                                                                   "(default: the latest day the warehouse holds whole)")
    report.add_argument("--out", type=Path, help="with preview: folder for the HTML (default $WAREHOUSE_HOME/reports)")
    report.add_argument("--config", metavar="ID", help="with preview: the email_report_config to preview, enabled or "
                                                       "not (default: the first usable enabled one)")
    report.add_argument("--now", type=_instant, help="with send: the tick's time, ISO 8601 (default: now)")
    return parser


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``warehouse`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load()
        return COMMANDS[args.command](settings, args)
    except WorkFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    except (SettingsError, EmbeddedServerError, TimeoutError, ValueError, RuntimeError) as error:  # GeneratorError too
        print(f"error: {error}", file=sys.stderr)
        return 2


def cmd_config(settings: Settings, _args) -> int:
    """Every variable of the configuration contract: where its value came from, and the value (secrets masked)."""
    from pipelines.settings import shown

    rows = shown(settings, embedded_urls=database_urls(settings, start_embedded=False))
    width = max(len(row.variable) for row in rows)
    for row in rows:
        print(f"{row.variable:<{width}}  {row.origin:<8}  {row.value}")
    return 0


def cmd_pg(settings: Settings, args) -> int:
    server = EmbeddedServer.from_settings(settings)
    if args.action == "start":
        server.start()
        print(f"embedded PostgreSQL running on 127.0.0.1:{server.port} (data in {server.pgdata})")
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "status":
        running = server.is_running()
        print(f"{'running' if running else 'stopped'}: {server.pgdata} on port {server.port}")
        return 0 if running else 3
    else:
        names = [args.database] if args.database else list(DATABASES)
        for name in names:
            print(server.url(name) if args.database else f"{name}\t{server.url(name)}")
    return 0


def cmd_db(settings: Settings, args) -> int:
    from pipelines import migrate  # here, not at the top: `warehouse pg ...` need not import Alembic
    names = list(DATABASES) if args.database == "all" else [args.database]
    if args.action == "adopt" and args.revision:
        raise SettingsError("warehouse db adopt installs the pipeline's tables at their head; it takes no --revision")
    for name in names:
        url = database_url(settings, name)
        try:
            if args.action == "upgrade":
                if migrate.upgrade(name, url, args.revision or "head").adopted:
                    print(f"{name}: the app made this database: adopted (its tables checked, left as they are)")
            elif args.action == "adopt":
                if not migrate.made_by_app(name, url):
                    print(f"{name}: not made by the app (no app tables, or this project's own migrations made them): "
                          f"use `warehouse db upgrade`")
                    return 2
                for line in migrate.adopt(name, url):
                    print(f"  {line}")
                print(f"{name}: adopted; the pipeline's tables are installed, the app's untouched")
            elif args.action == "downgrade":
                migrate.downgrade(name, url, args.revision or "base")
        except migrate.MigrationError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        heads = migrate.head(name)
        for history, revision in migrate.current(name, url).items():
            print(f"{name}: {history} at {revision or '(not applied)'} (head {heads[history]})")
    return 0


def cmd_generate(settings: Settings, args) -> int:
    from pipelines import generator  # here, not at the top: polars and the generator take 0.6 s to import
    if args.append_days is not None:
        given = [flag for flag, value in (("--messy", args.messy), ("--end", args.end), ("--reset", args.reset)) if value]
        if given:
            raise generator.GeneratorError(f"--append-days continues the dataset as it was made; it takes no {', '.join(given)}")
    urls = database_urls(settings)
    out_dir = settings.generated
    if args.append_days is not None:
        result = generator.append(urls["cheeko"], urls["cognova"], args.append_days, out_dir)
    else:
        options = generator.Options(devices=args.devices, days=args.days, seed=args.seed, messy=args.messy, end=args.end)
        result = generator.generate(urls["cheeko"], urls["cognova"], options, out_dir, reset=args.reset)
    _print_generation(result)
    return 0


def _print_generation(result: generator.Result) -> None:
    print(f"wrote {result.total_rows:,} rows for {result.start} .. {result.end} in {result.seconds:.1f}s")
    for (database, table), n in sorted(result.rows.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {database}.{table:<28} {n:>10,}")
    if result.faults:
        print("  faults: " + ", ".join(f"{k}={v}" for k, v in sorted(result.faults.items())))
    for path in result.files:
        print(f"  {path}")


def _dagster_home(settings: Settings) -> Path:
    """The Dagster instance: ``$DAGSTER_HOME`` when set (a deployment's, e.g. deploy/dagster.postgres.yaml),
    else ``$WAREHOUSE_HOME/dagster``. There, while the embedded server serves cheeko or cognova, the instance's
    storage is a database of its own on that server (started here; ``dagster_home.on_embedded_server``), else
    SQLite files (this repository's dagster.yaml).

    Also starts the daily partitions where the data starts (unless WAREHOUSE_PARTITIONS_START is set,
    which always wins); otherwise the UI counts every day since 2024-01-01 as a missing partition.
    """
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured).resolve() if configured else settings.home / "dagster"
    if configured and home == (settings.home / "dagster").resolve():
        configured = None  # the instance `warehouse` writes, pointed at by hand: still kept up to date here
    home.mkdir(parents=True, exist_ok=True)
    if not configured and settings.uses_embedded:
        _instance_on_embedded_server(settings, home)
    elif not configured or not (home / "dagster.yaml").exists():
        shutil.copyfile(dagster_home.ON_SQLITE, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    if not os.environ.get("WAREHOUSE_PARTITIONS_START"):
        first = _fleet_partitions_start(settings) if settings.uses_embedded else _source_partitions_start(settings)
        if first is not None:
            os.environ["WAREHOUSE_PARTITIONS_START"] = first.isoformat()
    return home


def _instance_on_embedded_server(settings: Settings, home: Path) -> None:
    """Point the instance at ``home`` at its database on the embedded server, started (and the database created)
    if need be, with Dagster's event batches on. An instance that kept its history in SQLite files here before
    is left as it is, said once: its runs are not carried over."""
    server = EmbeddedServer.from_settings(settings)
    server.start(databases=(dagster_home.DAGSTER_DATABASE,))
    config = home / "dagster.yaml"
    if (home / "history").is_dir() and config.exists() and not dagster_home.on_postgres(config.read_text()):
        print(f"the Dagster instance in {home} now keeps its runs in the embedded server's "
              f"{dagster_home.DAGSTER_DATABASE!r} database; the earlier runs stay in {home / 'history'}, "
              "not carried over", file=sys.stderr)
    dagster_home.write(config, dagster_home.on_embedded_server(server.port))
    os.environ.setdefault(*dagster_home.EVENT_BATCH_SIZE)


def _fleet_partitions_start(settings: Settings) -> dt.date | None:
    """On the embedded databases: the first partition the generated fleet needs (its manifest says
    where it starts); None when there is no readable manifest."""
    manifest = settings.generated / "manifest.json"
    if not manifest.exists():
        return None
    try:
        first = dt.date.fromisoformat(json.loads(manifest.read_text())["dataset"]["start"])
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable manifest only costs the tidier partition range
    # Local days west of UTC begin on the UTC day before the fleet's first day.
    return first - dt.timedelta(days=1)


def _source_partitions_start(settings: Settings) -> dt.date | None:
    """On configured databases: the first partition their data needs, from the earliest event day of the
    daily-partitioned source tables (the bounds ``warehouse run`` takes its default range from).

    None when they hold no event yet, or, with one line on stderr, when a database cannot be read:
    the default start stays and the command goes on.
    """
    from pipelines.extract import event_days
    from pipelines.source_tables import source_tables

    today = dt.datetime.now(dt.UTC).date()
    days: list[dt.date] = []
    for database in DATABASES:
        try:
            with postgres.Snapshot(database_url(settings, database)) as snapshot:
                # A table that cannot load as declared fails its own asset naming it; the others say where data starts.
                days += event_days(snapshot, [t for t in source_tables() if t.database == database and t.partitioned], today)
        except Exception as error:  # noqa: BLE001 - whatever the cause, it only costs the tidier partition range
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"partitions start at {settings.partitions_start} (WAREHOUSE_PARTITIONS_START's default): could not "
                  f"read where {database}'s data starts: {reason}", file=sys.stderr)
            return None
    # Local days west of UTC begin on the UTC day before: an event of UTC day D may be on local day D - 1.
    return min(days) - dt.timedelta(days=1) if days else None


def _materialize(settings: Settings, *, selection: str | None = None, start: dt.date | None = None,
                 end: dt.date | None = None, progress=print, through_deployment: bool = False):
    """Run ``selection`` for ``start..end`` on the instance under ``$WAREHOUSE_HOME/dagster``: submitted to the
    instance's Dagster webserver when ``through_deployment`` and one answers (:func:`_deployment`), else in process."""
    home = _dagster_home(settings)  # first: it may set the partitions' start, read when assets are imported
    deployment = _deployment(settings, home) if through_deployment else None
    import dagster as dg

    from assets import runs

    with dg.DagsterInstance.get() as instance:
        try:
            return runs.materialize(settings, instance, selection=selection, start=start, end=end, progress=progress,
                                    deployment=deployment)
        except runs.RunFailed as failed:
            raise WorkFailed(str(failed)) from None


def _deployment(settings: Settings, home: Path) -> str | None:
    """The Dagster webserver a run is submitted to: ``WAREHOUSE_DAGSTER_URL``, else the ``warehouse ui`` serving this
    instance (it leaves its address in the instance's folder) when it answers; None: run in this process.

    Through a webserver the run queues with the others (the warehouse_writer pool), its daemon retries it, and the
    UI's timeline shows it; a run executed in process has no code location, and the timeline leaves those out.
    """
    if settings.dagster_url:
        if not _answers(settings.dagster_url):
            raise SettingsError(f"WAREHOUSE_DAGSTER_URL: no Dagster webserver answers at {settings.dagster_url}")
        return settings.dagster_url
    try:
        url = (home / UI_ADDRESS).read_text().strip()
    except OSError:
        return None
    return url if url and _answers(url) else None  # a UI stopped since leaves its address behind


def _answers(url: str) -> bool:
    """Whether a Dagster webserver answers at ``url`` (its ``/server_info``) within two seconds."""
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return "dagster_webserver_version" in json.load(response)
    except (OSError, ValueError):
        return False


def cmd_run(settings: Settings, args) -> int:
    began = time.perf_counter()
    summary = _materialize(settings, selection=args.select, start=args.start, end=args.end, through_deployment=True)
    days = f" for {summary.start} .. {summary.end}" if summary.start else ""
    # Failed WARN checks are printed and the work is done (exit 0); a failed asset or ERROR check raised above (exit 1).
    print(f"materialized {len(summary.rows)} asset(s){days} in {time.perf_counter() - began:.1f}s"
          + (f"; {len(summary.warnings)} warning(s)" if summary.warnings else ""))
    return 0


def cmd_privacy(settings: Settings, _args) -> int:
    """The source columns waiting for a decision in privacy.toml: withheld (not read) until classified. Shows the
    table, type and how many rows hold a value, never a value."""
    from pipelines import privacy
    from pipelines.source_tables import source_tables

    urls = database_urls(settings)
    waiting = 0
    for database in DATABASES:
        with postgres.Snapshot(urls[database]) as snapshot:
            for table in (t for t in source_tables() if t.database == database):
                columns = snapshot.columns(table.name)
                names = privacy.unclassified(database, table.name, [c.name for c in columns])
                if not names:
                    continue
                rows, non_null = snapshot.non_null(table.name, names)
                types = {c.name: c.type for c in columns}
                for name in names:
                    waiting += 1
                    print(f"  {database}.{table.name}.{name:<30} {types[name]:<28} {non_null[name]:>11,} of {rows:,} rows hold a value")
    print(f"{waiting} column(s) wait for a rule in {privacy.POLICY_FILE.relative_to(REPO_ROOT)}; until then they are "
          "not read" if waiting else f"every column of the source tables has a rule in {privacy.POLICY_FILE.relative_to(REPO_ROOT)}")
    return 0


def cmd_extract(settings: Settings, args) -> int:
    from pipelines import analyst_extracts

    snapshot = args.snapshot or analyst_extracts.latest_snapshot(settings.extracts)
    if snapshot is None or not snapshot.exists():
        raise analyst_extracts.ExtractError(f"no analyst snapshot in {settings.extracts}: run `warehouse run` "
                                            "(it publishes one when it succeeds), or pass --snapshot")
    snapshot = snapshot.resolve()  # now: `latest` may switch while this runs
    began = time.perf_counter()
    result = analyst_extracts.custom_extract(snapshot, args.out, tables=args.tables, since=args.since)
    for table, rows in result.rows.items():
        print(f"  {table:<45} {rows:>11,} rows" + ("  (no date column: whole table)" if table in result.whole else ""))
    print(f"wrote {result.path} from snapshot {snapshot.parent.name} in {time.perf_counter() - began:.1f}s")
    return 0


def cmd_ui(settings: Settings, args) -> int:
    home = _dagster_home(settings)
    # Start the embedded server now, so the first sensor tick does not wait for it.
    database_urls(settings)
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home}); Ctrl-C stops it", flush=True)
    # `warehouse run` on this instance submits its runs here while this answers (see _deployment).
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    (home / UI_ADDRESS).write_text(f"http://{local}:{args.port}\n")
    command = [sys.executable, "-m", "dagster", "dev", "-m", "assets.definitions", "-h", args.host, "-p", str(args.port)]
    # Become `dagster dev` (same environment), so a stop signal reaches it and leaves no orphaned daemon.
    # It runs from the repository; the paths the settings resolved here must not move with it.
    os.environ["WAREHOUSE_HOME"] = str(settings.home)
    os.environ["WAREHOUSE_DUCKDB_PATH"] = str(settings.duckdb_path)
    os.environ["WAREHOUSE_LAKE_DATA"] = settings.lake_data
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, command)


def cmd_demo(settings: Settings, args) -> int:
    from pipelines import generator, migrate
    configured = [name for name in DATABASES if settings.database_url(name)]
    if configured:
        raise SettingsError(f"warehouse demo replaces every row of the databases it uses, so it runs only on the "
                            f"embedded server; unset {', '.join(n.upper() + '_DATABASE_URL' for n in configured)} "
                            f"(or use `warehouse generate` and `warehouse run` against those databases)")
    if settings.smtp_url:
        raise SettingsError("warehouse demo writes its emails to the outbox folder only; unset SMTP_URL "
                            "(the generated recipients are not real people)")
    began = time.perf_counter()
    print("1/6 databases")
    urls = database_urls(settings)
    for name in DATABASES:
        print(f"  {name}: {postgres.redact(urls[name])}")
    print("2/6 migrations")
    for name in DATABASES:
        outcome = migrate.upgrade(name, urls[name])
        print(f"  {name}: at {', '.join(r or '(none)' for r in outcome.revisions.values())}")
    print("3/6 fleet")
    options = generator.Options(devices=args.devices, days=args.days, seed=args.seed, end=args.end)
    result = generator.generate(urls["cheeko"], urls["cognova"], options, settings.generated, reset=True,
                                progress=lambda line: print(f"  {line}"))
    _print_generation(result)
    # The warehouse was built from the rows just replaced: its cursors and marts would mislead.
    from pipelines import warehouse

    where = warehouse_location(settings)
    if warehouse.discard(where):
        print(f"  emptied the previous warehouse, {where}")
    print("4/6 assets")
    summary = _materialize(settings, progress=lambda line: print(f"  {line}"))
    print(f"  materialized {len(summary.rows)} asset(s) for {summary.start} .. {summary.end}")
    print("5/6 email reports")
    report = _demo_report(settings, urls["cheeko"])
    fact = next(iter(result.facts), None)
    if fact is not None:
        from pipelines import memory_search
        from pipelines.embedding import Embedder

        print(f"6/6 memory search: {fact.question!r} on device {fact.mac_id} (planted: {fact.value})")
        embedder = Embedder(batch_size=settings.embed_batch_size, device=settings.embed_device, backend=settings.embed_backend)
        _print_hits(memory_search.search(urls["cheeko"], fact.question, embedder, mac=fact.mac_id, k=3))
        print(f'  try: .venv/bin/warehouse search "{fact.question}" --device {fact.mac_id}')
    print(f"\ndone in {time.perf_counter() - began:.0f}s.")
    _print_summary(settings, urls, report)
    return 0


def _print_summary(settings: Settings, urls: dict[str, str], report: Path | None) -> None:
    """What the demo built (read from the analyst snapshot, as an analyst would) and where it is."""
    from pipelines import analyst_extracts, memory_sync, summary

    snapshot = analyst_extracts.latest_snapshot(settings.extracts)
    if snapshot is not None:
        print("Rows per layer")
        for schema, (tables, rows) in summary.layer_rows(snapshot).items():
            print(f"  {schema:<22} {rows:>10,} rows in {tables} tables")
        print(f"  {'memory_chunks':<22} {memory_sync.sync_status(urls['cheeko'])['chunks']:>10,} rows (PostgreSQL, pgvector)")
        print("fleet_daily")
        for line in summary.fleet_highlights(snapshot):
            print(f"  {line}")
    here = Path.cwd()

    def show(path: Path) -> str:
        return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)

    print("Where things are")
    print(f"  operational databases  {', '.join(postgres.redact(u) for u in urls.values())}")
    if settings.uses_lake:
        print(f"  warehouse              {warehouse_location(settings)}")
    else:
        print(f"  DuckDB warehouse       {show(settings.duckdb_path)}  (the pipeline's working file)")
    if snapshot is not None:
        print(f"  analyst snapshot       {show(snapshot)}  (open: .venv/bin/duckdb -readonly {show(snapshot)})")
        print(f"  data dictionary        {show(settings.extracts / analyst_extracts.LATEST / analyst_extracts.DICTIONARY_FILE)}")
        print(f"  Parquet marts          {show(settings.extracts / analyst_extracts.LATEST / 'marts')}/")
    if report:
        print(f"  admin report (email)   {show(report)}")
    print(f"  outbox                 {show(settings.outbox)}")
    print(f"  planted facts          {show(settings.generated / 'planted_facts.jsonl')}")
    print("  Dagster UI             .venv/bin/warehouse ui   then open http://127.0.0.1:3000")


def _demo_report(settings: Settings, cheeko_url: str) -> Path | None:
    """Send the admin report of the newest day the warehouse holds whole, as its hourly tick would have."""
    from pipelines import warehouse
    from pipelines.reports import service

    with warehouse.connect(warehouse_location(settings)) as con:
        day = service.latest_complete_day(con, cheeko_url)
        if day is None:
            print("  the warehouse holds no complete day; no report")
            return None
        # The generated data ends before today, so the tick is replayed at the moment this day's report fell due.
        now = service.scheduled_tick(cheeko_url, day)
        service.run_tick(settings, con, cheeko_url, now, log=lambda line: print(f"  {line}"))
    sent = sorted(settings.outbox.glob(f"admin_daily.{day:%Y%m%d}.*.eml"))
    for path in sent:
        print(f"  {path}")
    return sent[0] if sent else None


def _print_hits(hits) -> None:
    if not hits:
        print("  no memory chunks found")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. {hit.score:.3f}  {hit.file_path}:{hit.start_line}-{hit.end_line}  [{hit.category}]")
        for line in hit.text.splitlines()[:6]:
            print(f"     {line[:120]}")


def cmd_search(settings: Settings, args) -> int:
    """Exit 2 for a bad argument (found before any work), 1 when there is nothing to search, else 0."""
    from pipelines import chunker, memory_search
    from pipelines.embedding import Embedder

    try:
        mac = memory_search.check_arguments(args.query, mac=args.device, k=args.k)
    except chunker.ChunkerError:
        raise ValueError(f"--device {args.device!r} is not a MAC address (12 hex digits in any spelling, "
                         "e.g. 24:0a:c4:1b:2c:3d or 240AC41B2C3D)") from None
    url = database_url(settings, "cheeko")
    found = memory_search.searchable(url, mac)
    if found.unknown_device:
        raise ValueError(found.problem())
    if found.problem():
        print(found.problem(), file=sys.stderr)
        return 1
    embedder = Embedder(batch_size=settings.embed_batch_size, device=settings.embed_device, backend=settings.embed_backend,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    hits = memory_search.search(url, args.query, embedder, mac=mac, k=args.k)
    if not hits:
        print("no memory chunks: they were removed while the model loaded (by a memory sync?)", file=sys.stderr)
        return 1
    _print_hits(hits)
    return 0


def cmd_lake(settings: Settings, args) -> int:
    from pipelines import warehouse

    if not settings.uses_lake:
        raise SettingsError("warehouse lake works on a DuckLake: set WAREHOUSE_CATALOG=ducklake (a catalog on the "
                            "embedded server) or WAREHOUSE_CATALOG=ducklake:postgresql://... first")
    lake = warehouse_location(settings)
    if args.action == "migrate":
        source = (args.source or settings.duckdb_path).expanduser().resolve()
        if not source.exists():
            raise SettingsError(f"no warehouse file at {source} to migrate (--from names another)")
        print(f"copying {source} into {lake}")
        copied = warehouse.copy_into_lake(source, lake, progress=lambda line: print(f"  {line}", flush=True))
        print(f"copied {len(copied)} tables, {sum(copied.values()):,} rows; the next `warehouse run` continues from "
              f"them (change capture, cursors and loaded days were copied too). The file is left as it was.")
    elif args.action == "compact":
        if args.keep_days < 0:
            raise SettingsError(f"--keep-days must be 0 or more, got {args.keep_days}")
        done = warehouse.compact(lake, keep=dt.timedelta(days=args.keep_days))
        print(f"compacted {done['tables']} tables: data files {done['files_before']:,} -> {done['files_after']:,}; "
              f"{done['snapshots_expired']:,} snapshots older than {args.keep_days} days expired, "
              f"{done['files_deleted']:,} unread files deleted")
    else:
        status = warehouse.lake_status(lake)
        print(f"{lake}")
        print(f"  snapshot {status['version']} ({status['snapshots']:,} kept, oldest {status['oldest']}), "
              f"{status['tables']} tables in {status['files']:,} data files")
        print("  query it live, read-only, while runs write (DuckDB with the ducklake and postgres extensions):")
        print(f"    {lake.attach_statement(read_only=True, printed=True)};")
        print(f"    USE {warehouse.LAKE_ALIAS}; SELECT * FROM marts.fleet_daily AT (VERSION => {status['version']});")
    return 0


def cmd_report(settings: Settings, args) -> int:
    from pipelines import warehouse
    from pipelines.reports import service

    where = warehouse_location(settings)
    if not warehouse.exists(where):
        raise RuntimeError(f"no warehouse at {where}: run `warehouse run` first")
    url = database_url(settings, "cheeko")
    with warehouse.connect(where) as con:
        if args.action == "preview":
            shown = service.preview(settings, con, url, args.date, config_id=args.config, out_dir=args.out)
            for note in shown.notes:
                print(f"  note: {note}")
            used = f"email_report_config {shown.config_id}" if shown.config_id else "no config (defaults)"
            print(f"admin report for {shown.day} with {used}: {shown.path}")
            print(f"  plain-text version: {shown.text_path}")
            return 0
        result = service.run_tick(settings, con, url, args.now or dt.datetime.now(dt.UTC))
    if result.busy:
        print("another report tick is running; nothing done")
        return 3
    print(f"sent {result.count('sent')}, failed {result.count('failed')}, to retry {result.count('retry')}"
          f" via {service.sender(settings).transport.description}")
    return 1 if any(d.status == "error" for d in result.dispatches) else 0


COMMANDS = {
    "config": cmd_config,
    "pg": cmd_pg,
    "db": cmd_db,
    "generate": cmd_generate,
    "demo": cmd_demo,
    "run": cmd_run,
    "search": cmd_search,
    "extract": cmd_extract,
    "privacy": cmd_privacy,
    "ui": cmd_ui,
    "report": cmd_report,
    "lake": cmd_lake,
}


if __name__ == "__main__":
    sys.exit(main())
