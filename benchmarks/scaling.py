"""Benchmark: the figures behind ``docs/scaling.md`` (what changes at 100x the fleet).

Each figure is printed beside a baseline measured in the same run:

1. growth with the fleet: generate, full extraction, every mart over all days,
   and the daily run (extraction of the new day's window, the marts for it,
   the write-back) at ``--devices N`` and ``--factor`` x N devices; baseline:
   the N-device fleet (a ratio equal to the factor means linear);
2. DuckDB's single writer: while one connection holds the working file
   read-write, a second process opens it neither read-write nor read-only;
   a copy of the file (a published snapshot) opens read-only beside the
   writer (baseline for the copy: the daily run's writer-held time); three
   processes appending to one DuckDB file at once vs to a DuckLake whose
   catalog is PostgreSQL (baseline: the same appends to the file in turn;
   needs ``pip install duckdb-extension-ducklake==1.5.5``, else skipped);
3. Dagster's own cost per run: a trivial one-asset run and the daily run of
   the raw and rollup graph, with SQLite storage (the repository's
   ``dagster.yaml``) vs PostgreSQL storage (``deploy/dagster.postgres.yaml``);
   baseline: SQLite;
4. the two backends (``--section backends``): on one fleet (``--lake-devices``, default ``--devices``), the full
   history (extraction of everything, every mart over all days) and the daily run (extraction of an appended day's
   window, the marts for it, the write-back) on the DuckDB file (baseline) and on a DuckLake whose catalog is a
   database on the benchmark's server, Parquet in the temp folder; then on the lake, two writers in two processes,
   each pairing on a newly appended day: the daily run and a backfill of every mart over the history in turn
   (baseline), the day's extraction beside the backfill (pools ``warehouse_raw`` and ``warehouse_rollups``, which a
   lake lets run at once) with the day's marts after it, and the whole daily run beside the backfill (both claim the
   rollups pool, so Dagster would not start them together); commit conflicts are counted and retried
   (``benchmarks/backend_jobs.py``); then a reader process querying a mart while a writer process runs the daily
   run, on each backend; then ``warehouse.compact`` on the lake.

Everything runs against its own embedded PostgreSQL in a temporary folder
(a free loopback port), never the developer's server.

The defaults end at 100x the demo's fleet (60 devices): 1,500 and 6,000 devices.

    .venv/bin/python benchmarks/scaling.py [--devices 1500] [--factor 4] [--days 30]
        [--section growth|writer|dagster|backends ...] [--lake-devices N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg

from common import END, generate_fleet, timed
from extract import everything_window
from pipelines import generator, migrate, postgres, rollups, warehouse
from pipelines.extract import LoadResult, extract_tables
from pipelines.embedded import EmbeddedServer
from pipelines.settings import DATABASES
from pipelines.source_tables import source_tables

ROOT = Path(__file__).resolve().parents[1]
NEW_DAY = END + dt.timedelta(days=1)  # the day `generate --append-days 1` adds
DAGSTER_SELECTION = "group:cheeko_raw or group:cognova_raw or group:rollups"  # no model, no mail
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_databases(admin: str, prefix: str) -> dict[str, str]:
    """``{prefix}_cheeko`` / ``{prefix}_cognova`` on the benchmark's server, migrated."""
    urls = {}
    for name in DATABASES:
        postgres.drop_database(admin, f"{prefix}_{name}")
        postgres.ensure_database(admin, f"{prefix}_{name}")
        urls[name] = postgres.with_database(admin, f"{prefix}_{name}")
        migrate.upgrade(name, urls[name])
    return urls


@dataclass
class Growth:
    devices: int
    source_rows: int
    generate: float
    full_extract: float
    full_rows: int
    all_marts: float
    day_rows: int
    day_memory_files: int  # device_memories rows the appended day wrote: the next memory sync's input
    day_extract: float
    day_marts: float
    write_back: float
    file_mb: float

    @property
    def daily_run(self) -> float:
        return self.day_extract + self.day_marts + self.write_back


def daily_window() -> tuple[dt.datetime, dt.datetime]:
    """The new day's window as a daily run reads it: the day before refreshed too (assets.partitions.LATE_DATA)."""
    start = dt.datetime.combine(NEW_DAY - dt.timedelta(days=1), dt.time(0), dt.UTC)
    return start, start + dt.timedelta(days=2)


def growth(admin: str, devices: int, days: int, tmp: Path) -> tuple[Growth, dict[str, str], Path]:
    """One fleet size: history, then one appended day run as the daily schedule would."""
    urls = fresh_databases(admin, f"scale{devices}")
    began = time.perf_counter()
    fleet = generate_fleet(urls, argparse.Namespace(devices=devices, days=days), tmp / f"gen{devices}")
    generated = time.perf_counter() - began
    path = tmp / f"warehouse{devices}.duckdb"
    window = everything_window()
    began = time.perf_counter()
    results = extract_everything(urls, path, window)
    full_extract = time.perf_counter() - began
    as_of = dt.datetime.combine(END, dt.time(0), dt.UTC) + dt.timedelta(days=2)  # as benchmarks/rollups.py
    with warehouse.connect(path) as con:
        all_marts = timed(lambda: rollups.build(con, as_of_time=as_of, first_day=END - dt.timedelta(days=days - 1), last_day=END))

    appended = generator.append(urls["cheeko"], urls["cognova"], 1, tmp / f"gen{devices}", progress=lambda _: None)
    began = time.perf_counter()
    day = extract_everything(urls, path, daily_window())
    day_extract = time.perf_counter() - began
    as_of = dt.datetime.combine(NEW_DAY, dt.time(0), dt.UTC) + dt.timedelta(days=2)
    with warehouse.connect(path) as con:
        day_marts = timed(lambda: rollups.build(con, as_of_time=as_of, first_day=NEW_DAY - dt.timedelta(days=1), last_day=NEW_DAY))
        write_back = timed(lambda: rollups.publish(con, urls["cheeko"], as_of_date=NEW_DAY))
    return Growth(devices=devices, source_rows=fleet.total_rows, generate=generated, full_extract=full_extract,
                  full_rows=sum(r.rows_written for r in results.values()), all_marts=all_marts,
                  day_rows=sum(r.rows_written for r in day.values()),
                  day_memory_files=appended.rows.get(("cheeko", "device_memories"), 0), day_extract=day_extract, day_marts=day_marts,
                  write_back=write_back, file_mb=path.stat().st_size / 1e6), urls, path


def extract_everything(urls: dict[str, str], path: Path, window: tuple[dt.datetime, dt.datetime]) -> dict[str, LoadResult]:
    """Every source table into ``path`` (daily ones over ``window``), one snapshot per database, as a run does."""
    return extract_tables(path, urls, source_tables(), pseudonym_key="bench", windows={t.key: window for t in source_tables()})


# A second process trying the working file while this one holds it read-write.
OPEN_ATTEMPT = """
import sys, time
from pathlib import Path
from pipelines import warehouse
began = time.perf_counter()
try:
    # wait=0: measure DuckDB's own answer, not the pipeline's wait for the lock.
    with warehouse.connect(Path(sys.argv[1]), read_only=sys.argv[2] == "ro", wait=0) as con:
        rows = con.execute("SELECT count(*) FROM marts.daily_device_activity").fetchone()[0]
    print(f"opened, {rows:,} rows of marts.daily_device_activity read in {time.perf_counter() - began:.3f} s")
except Exception as error:
    print(f"refused after {time.perf_counter() - began:.3f} s: {type(error).__name__}: {str(error).splitlines()[0][:90]}")
"""


def second_process(path: Path, mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", OPEN_ATTEMPT, str(path), mode], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    return out.stdout.strip()


def single_writer(path: Path, tmp: Path) -> dict[str, str | float]:
    """What a second process sees while the working file is held; a published copy beside it."""
    snapshot = tmp / "published.duckdb"
    copy_seconds = timed(lambda: shutil.copyfile(path, snapshot))  # after the writer closed it: a consistent file
    with warehouse.connect(path):
        return {"rw": second_process(path, "rw"), "ro": second_process(path, "ro"),
                "snapshot": second_process(snapshot, "ro"), "copy": copy_seconds, "mb": snapshot.stat().st_size / 1e6}


# One writer appending `commits` transactions of `rows` rows to its own table, in the
# DuckDB file (argv[1] a path) or in a DuckLake whose catalog is a PostgreSQL database.
WRITER = """
import sys, time
from pathlib import Path
from pipelines import warehouse
target, table, commits, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
began = time.perf_counter()
try:
    if target.startswith("ducklake:"):
        opened = warehouse.in_memory()
    else:
        opened = warehouse.connect(Path(target), wait=0)
    with opened as con:
        if target.startswith("ducklake:"):
            for extension in ("postgres", "ducklake"):
                warehouse.load_extension(con, extension)
            catalog, data = target.split("|")
            con.execute(f"ATTACH {warehouse.literal(catalog)} AS lake (DATA_PATH {warehouse.literal(data)})")
            con.execute("USE lake")
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (day DATE, device BIGINT, value DOUBLE)")
        for i in range(commits):
            con.execute(f"INSERT INTO {table} SELECT DATE '2026-11-20' + $i, range, random() FROM range($rows)",
                        {"i": i, "rows": rows})
    print(f"ok {time.perf_counter() - began:.3f}")
except Exception as error:
    print(f"refused after {time.perf_counter() - began:.3f} s: {type(error).__name__}: {str(error).splitlines()[0][:70]}")
"""
WRITERS, COMMITS, ROWS_PER_COMMIT = 3, 20, 50_000


def writers(target: str, concurrently: bool) -> tuple[float, list[str]]:
    """Wall seconds for WRITERS processes each appending to its own table, and what each said."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [[sys.executable, "-c", WRITER, target, f"writer_{i}", str(COMMITS), str(ROWS_PER_COMMIT)] for i in range(WRITERS)]
    began = time.perf_counter()
    if concurrently:
        children = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for c in command]
        said = [child.communicate()[0].strip() for child in children]
    else:
        said = [subprocess.run(c, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip() for c in command]
    return time.perf_counter() - began, said


def lake_writers(admin: str, tmp: Path) -> dict[str, tuple[float, list[str]]] | None:
    """The same appends: one DuckDB file (in turn, then at once) vs a DuckLake (at once); None without the extension."""
    if importlib.util.find_spec("duckdb_extension_ducklake") is None:
        return None
    postgres.drop_database(admin, "bench_lake")
    postgres.ensure_database(admin, "bench_lake")
    (tmp / "lake").mkdir()
    lake = f"ducklake:postgres:{postgres.with_database(admin, 'bench_lake')}|{tmp / 'lake'}/"
    # The first attach creates the catalog's tables: once, before the writers race.
    subprocess.run([sys.executable, "-c", WRITER, lake, "created", "0", "0"], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                   check=True, capture_output=True)
    return {"file, in turn": writers(str(tmp / "writers.duckdb"), concurrently=False),
            "file, at once": writers(str(tmp / "writers_at_once.duckdb"), concurrently=True),
            "DuckLake, at once": writers(lake, concurrently=True)}


# -- 4. the two backends: the DuckDB file and a DuckLake (catalog on this server, Parquet in the temp folder) --------

JOBS = ROOT / "benchmarks" / "backend_jobs.py"


def spec(where: warehouse.Location) -> dict[str, str]:
    """How a job process names ``where`` (backend_jobs.location)."""
    return {"file": str(where)} if isinstance(where, Path) else {"catalog": where.catalog_url, "data": where.data_path}


def start_job(job: str, **args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOBS), job, json.dumps(args, default=str)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})


def finish_job(child: subprocess.Popen) -> dict:
    said = child.communicate()[0].strip().splitlines()
    return json.loads(said[-1]) if said else {"ok": False, "error": f"exit {child.returncode}, no output", "conflicts": []}


def at_once(*jobs: tuple[str, dict]) -> tuple[float, list[dict]]:
    """Start ``jobs`` at once; seconds from the first job's start to the last one's end (imports not counted), and
    what each said."""
    children = [start_job(job, **args) for job, args in jobs]
    results = [finish_job(child) for child in children]
    return max(r.get("end", 0) for r in results) - min(r.get("start", 0) for r in results), results


def in_turn(*jobs: tuple[str, dict]) -> tuple[float, list[dict]]:
    """The same jobs one after the other: the sum of their seconds (imports not counted), what each said."""
    results = [finish_job(start_job(job, **args)) for job, args in jobs]
    return sum(r["wall"] for r in results), results


def clear_published(cheeko_url: str) -> None:
    """Empty the write-back's tables, so each backend's write-back writes the same rows (all of them, as the
    growth section's first write-back does) instead of finding the other's already there."""
    with postgres.connect(cheeko_url) as conn:
        conn.execute(f"TRUNCATE {', '.join(f'{rollups.PUBLISHED_SCHEMA}.{name}' for name in rollups.PUBLISHED)}")


def mart_rows(where: warehouse.Location) -> dict[str, int]:
    with warehouse.connect(where, read_only=True) as con:
        names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                          "AND schema_name = 'marts' ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT count(*) FROM marts.{n}").fetchone()[0] for n in names}


def lake_disk(lake: warehouse.Lake, admin: str) -> tuple[int, float, float, int]:
    """Files under the data path, their MB, the catalog database's MB, and the snapshots the catalog keeps."""
    files = [p for p in Path(lake.data_path).rglob("*") if p.is_file()]
    with postgres.connect(admin) as conn:
        catalog = conn.execute("SELECT pg_database_size(%s)", (urlsplit(lake.catalog_url).path.lstrip("/"),)).fetchone()[0]
    with warehouse.connect(lake, read_only=True) as con:
        snapshots = con.execute(f"SELECT count(*) FROM ducklake_snapshots('{warehouse.LAKE_ALIAS}')").fetchone()[0]
    return len(files), sum(p.stat().st_size for p in files) / 1e6, catalog / 1e6, snapshots


def backends(admin: str, devices: int, days: int, tmp: Path) -> dict:
    """Section 4: the full history and the daily run on both backends; on the lake two writers at once; a reader
    beside a writer on each; DuckLake's compaction after it all."""
    from backend_jobs import day_window

    urls = fresh_databases(admin, "backends")
    out: dict = {"devices": devices, "days": days}
    gen = tmp / "gen_backends"
    out["source_rows"] = generate_fleet(urls, argparse.Namespace(devices=devices, days=days), gen).total_rows
    postgres.drop_database(admin, "bench_catalog")
    postgres.ensure_database(admin, "bench_catalog")
    file = tmp / "backends.duckdb"
    lake = warehouse.Lake(postgres.with_database(admin, "bench_catalog"), str(tmp / "lake_data"))
    both = {"file": file, "lake": lake}
    first_day, last_day = END - dt.timedelta(days=days - 1), END
    history_as_of = dt.datetime.combine(END, dt.time(0), dt.UTC) + dt.timedelta(days=2)

    # a. the full history, then one appended day's daily run, on each (in process, as the growth section).
    for name, where in both.items():
        began = time.perf_counter()
        results = extract_everything(urls, where, everything_window())
        out[f"{name} full extract"] = time.perf_counter() - began
        out["full rows"] = sum(r.rows_written for r in results.values())
    for name, where in both.items():
        with warehouse.connect(where) as con:
            out[f"{name} all marts"] = timed(lambda: rollups.build(con, as_of_time=history_as_of, first_day=first_day,
                                                                   last_day=last_day))
    day = END
    def append() -> dt.date:
        generator.append(urls["cheeko"], urls["cognova"], 1, gen, progress=lambda _: None)
        return day + dt.timedelta(days=1)
    day = append()
    for name, where in both.items():
        began = time.perf_counter()
        results = extract_tables(where, urls, source_tables(), pseudonym_key="bench",
                                 windows={t.key: day_window(day) for t in source_tables()})
        out[f"{name} day extract"] = time.perf_counter() - began
        out["day rows"] = sum(r.rows_written for r in results.values())
        as_of = dt.datetime.combine(day, dt.time(0), dt.UTC) + dt.timedelta(days=2)
        clear_published(urls["cheeko"])
        with warehouse.connect(where) as con:
            out[f"{name} day marts"] = timed(lambda: rollups.build(con, as_of_time=as_of, first_day=day - dt.timedelta(days=1),
                                                                   last_day=day))
            out[f"{name} write-back"] = timed(lambda: rollups.publish(con, urls["cheeko"], as_of_date=day))
    rows = {name: mart_rows(where) for name, where in both.items()}
    out["marts equal"] = rows["file"] == rows["lake"]
    out["mart rows"] = sum(rows["lake"].values())
    out["file MB"] = file.stat().st_size / 1e6
    out["lake disk"] = lake_disk(lake, admin)

    # b. two writers on the lake, each pairing on a newly appended day: the daily run and a backfill of every mart
    # over the history, in turn; the day's extraction beside the backfill (different pools on a lake), the day's
    # marts after; the whole daily run beside the backfill (both claim the rollups pool: Dagster would not).
    where = {"where": spec(lake), "urls": urls}
    back = ("backfill", {"where": spec(lake), "first_day": first_day, "last_day": last_day})
    day = append()
    out["turn"] = in_turn(("daily", where | {"day": day}), back)
    day = append()
    pair = at_once(("extract", where | {"day": day}), back)
    after = in_turn(("marts", where | {"day": day}))
    out["pools"] = (pair[0] + after[0], pair[1] + after[1], pair[0])
    day = append()
    out["free"] = at_once(("daily", where | {"day": day}), back)

    # c. a reader during the daily run: the file first caught up on the days section b appended to the lake only.
    extract_tables(file, urls, source_tables(), pseudonym_key="bench",
                   windows={t.key: (day_window(END)[0], day_window(day)[1]) for t in source_tables()})
    day = append()
    for name, where_ in both.items():
        stop = tmp / f"stop_{name}"
        writer = start_job("daily", where=spec(where_), urls=urls, day=day)
        time.sleep(1.0)  # the writer has imported and opened the warehouse: the reader starts beside a writing run
        reader = start_job("reader", where=spec(where_), stop=stop)
        written = finish_job(writer)
        stop.touch()
        out[f"{name} reader"] = (written, finish_job(reader))

    # compaction, after everything above: as `warehouse` runs it (snapshots of the last 7 days kept), then keeping none.
    steps = {"compact 7": lambda: warehouse.compact(lake, keep=dt.timedelta(days=7)),
             "compact 0": lambda: warehouse.compact(lake, keep=dt.timedelta(0))}
    for label, step in steps.items():
        disk = lake_disk(lake, admin)
        began = time.perf_counter()
        did = step()
        out[label] = (time.perf_counter() - began, did, disk, lake_disk(lake, admin))
    return out


def print_backends(b: dict) -> None:
    def ratio(label: str, file: float, lake: float, unit: str = "s") -> None:
        print(f"   {label:<46} {file:8.2f} {unit:<3} {lake:8.2f} {unit:<3} {lake / file:6.2f}x")

    print(f"4. the two backends, {b['devices']:,} devices x {b['days']} days ({b['source_rows']:,} source rows); "
          f"DuckLake: catalog a database on this server, Parquet in the temp folder")
    print(f"   a. {'':<43} {'file':>12} {'DuckLake':>12} {'lake/file':>9}   (baseline: the file)")
    ratio(f"full extraction, all history ({b['full rows']:,} rows)", b["file full extract"], b["lake full extract"])
    ratio("every mart, every day", b["file all marts"], b["lake all marts"])
    ratio(f"daily run: extraction ({b['day rows']:,} rows)", b["file day extract"], b["lake day extract"])
    ratio("daily run: marts for the window", b["file day marts"], b["lake day marts"])
    ratio("daily run: write-back", b["file write-back"], b["lake write-back"])
    total = {n: b[f"{n} day extract"] + b[f"{n} day marts"] + b[f"{n} write-back"] for n in ("file", "lake")}
    ratio("daily run: total", total["file"], total["lake"])
    files, mb, catalog, snaps = b["lake disk"]
    print(f"   on disk: file {b['file MB']:,.0f} MB; lake {mb:,.0f} MB in {files:,} files + catalog {catalog:,.0f} MB "
          f"({snaps:,} snapshots); "
          f"marts equal on both ({b['mart rows']:,} rows): {'yes' if b['marts equal'] else 'NO'}")

    def said(results: list[dict]) -> str:
        conflicts = [c for r in results for c in r["conflicts"]]
        failed = [r["error"] for r in results if not r["ok"]]
        text = f"{len(conflicts)} commit conflict(s), retried" if conflicts else "no conflict"
        if failed:
            text += "; FAILED: " + "; ".join(failed)
        return text + "".join(f"\n        {c}" for c in conflicts[:4]) + (f"\n        ... {len(conflicts) - 4} more" if len(conflicts) > 4 else "")

    turn_seconds, turn = b["turn"]
    print(f"   b. two writers on DuckLake, each on a new day: the daily run and a backfill (every mart, all {b['days']} days)")
    print(f"      in turn (baseline)                               {turn_seconds:7.2f} s   1.00x   daily {turn[0]['wall']:.2f} s, "
          f"backfill {turn[1]['wall']:.2f} s; {said(turn)}")
    pools_seconds, pools, overlap = b["pools"]
    print(f"      day's extraction beside the backfill, marts after {pools_seconds:7.2f} s   {pools_seconds / turn_seconds:.2f}x   "
          f"extraction {pools[0]['wall']:.2f} s, backfill {pools[1]['wall']:.2f} s at once ({overlap:.2f} s), then marts + "
          f"write-back {pools[2]['wall']:.2f} s; {said(pools)}")
    free_seconds, free = b["free"]
    print(f"      whole daily run beside the backfill              {free_seconds:7.2f} s   {free_seconds / turn_seconds:.2f}x   "
          f"daily {free[0]['wall']:.2f} s, backfill {free[1]['wall']:.2f} s; {said(free)}")
    print("   c. a reader during the daily run (a second process, read-only, querying marts.daily_device_activity)")
    for name in ("file", "lake"):
        written, read = b[f"{name} reader"]
        alone = total[name]
        head = f"      {name:<4}: writer {written['wall']:6.2f} s ({written['wall'] / alone:.2f}x its run alone in a.)"
        if name == "file":
            per = read["refusal_seconds"] / read["refused"] * 1000 if read["refused"] else 0
            print(f"{head}; reader tried {read['tries']:,} times in {read['seconds']:.1f} s: {read['refused']:,} refused "
                  f"({per:.1f} ms each), {read['answered']:,} answered (between the run's connections)"
                  + (f"; {read['first_error']}" if read["first_error"] else ""))
        else:
            snaps = read["snapshots"]
            print(f"{head}; reader opened in {read['refusal_seconds']:.2f} s, {read['answered']:,} queries in "
                  f"{read['seconds']:.1f} s ({read['answered'] / read['seconds']:.1f}/s), {read['refused']} failed; saw "
                  f"{len(snaps)} snapshot(s) ({snaps[0] if snaps else '-'}..{snaps[-1] if snaps else '-'}), mart rows "
                  f"{read['rows_first']:,} first, {read['rows_last']:,} last" + (f"; {read['first_error']}" if read["first_error"] else ""))
    print("   compaction after all of the above (on disk: files under the data path; snapshots: what the catalog keeps)")
    labels = {"compact 7": "warehouse.compact(lake), keep 7 days (its default)", "compact 0": "warehouse.compact(lake, keep=0)"}
    for key, label in labels.items():
        seconds, did, (files, mb, catalog, snaps), (files_after, mb_after, catalog_after, snaps_after) = b[key]
        reads = f"current snapshot's data files {did['files_before']:,} -> {did['files_after']:,}; " if "files_before" in did else ""
        print(f"      {label:<52} {seconds:6.2f} s; {reads}said {did['snapshots_expired']:,} snapshots expired, "
              f"{did['files_deleted']:,} files deleted; on disk {files:,} files {mb:,.0f} MB -> {files_after:,} files "
              f"{mb_after:,.0f} MB, snapshots {snaps:,} -> {snaps_after:,}, catalog {catalog:,.1f} -> {catalog_after:,.1f} MB")


def trivial_runs(home: Path, count: int) -> list[float]:
    """Seconds per ``dg.materialize`` of a one-asset graph on the instance in ``home`` (first run discarded)."""
    @dg.asset
    def heartbeat() -> int:
        return 1

    seconds = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for _ in range(count + 1):
            began = time.perf_counter()
            assert dg.materialize([heartbeat], instance=instance, run_config=QUIET_LOGS).success
            seconds.append(time.perf_counter() - began)
    return seconds[1:]


def dagster_daily_run(home: Path, urls: dict[str, str], path: Path) -> tuple[float, int]:
    """Seconds for `warehouse run --start NEW_DAY --end NEW_DAY` over raw + rollups, and the events it stored."""
    from assets import runs
    from pipelines.settings import load

    os.environ.update({"CHEEKO_DATABASE_URL": urls["cheeko"], "COGNOVA_DATABASE_URL": urls["cognova"],
                       "WAREHOUSE_DUCKDB_PATH": str(path)})
    with dg.DagsterInstance.from_config(str(home)) as instance:
        began = time.perf_counter()
        summary = runs.materialize(load(), instance, selection=DAGSTER_SELECTION, start=NEW_DAY, end=NEW_DAY,
                                   progress=lambda _: None)
        seconds = time.perf_counter() - began
        events = sum(len(instance.all_logs(run_id)) for run_id in summary.run_ids)
    return seconds, events


def instance_homes(tmp: Path, admin: str) -> dict[str, Path]:
    """A DAGSTER_HOME with the repository's dagster.yaml (SQLite) and one with the PostgreSQL variant."""
    homes = {"sqlite": tmp / "dagster_sqlite", "postgres": tmp / "dagster_postgres"}
    for home in homes.values():
        home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", homes["sqlite"] / "dagster.yaml")
    shutil.copyfile(ROOT / "deploy" / "dagster.postgres.yaml", homes["postgres"] / "dagster.yaml")
    postgres.drop_database(admin, "bench_dagster")
    postgres.ensure_database(admin, "bench_dagster")
    os.environ.update({"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(urlsplit(admin).port), "DAGSTER_PG_USER": "postgres",
                       "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "bench_dagster"})
    return homes


SECTIONS = ("growth", "writer", "dagster", "backends")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1500)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="run only this section (repeatable; default: all). writer and dagster build the growth "
                             "section's fleets too, without printing its table")
    parser.add_argument("--lake-devices", type=int, help="fleet of section 4 (default: --devices)")
    args = parser.parse_args()
    sections = set(args.section or SECTIONS)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = EmbeddedServer(tmp / "pg" / "pgdata", free_port())
        server.start(databases=())
        try:
            admin = server.url()
            if sections & {"growth", "writer", "dagster"}:
                small, small_urls, small_path = growth(admin, args.devices, args.days, tmp)
                large, urls, path = growth(admin, args.devices * args.factor, args.days, tmp)
            if "writer" in sections:
                writer = single_writer(path, tmp)
                lake = lake_writers(admin, tmp)
            if "dagster" in sections:
                homes = instance_homes(tmp, admin)
                trivial = {name: trivial_runs(home, 10) for name, home in homes.items()}
                os.environ.update({"WAREHOUSE_PSEUDONYM_KEY": "bench", "WAREHOUSE_HOME": str(tmp / "home")})
                small_daily = dagster_daily_run(homes["sqlite"], small_urls, small_path)
                daily: dict[str, list[tuple[float, int]]] = {"sqlite": [], "postgres": []}
                for _ in range(2):  # alternated, best kept: the second pass has warm caches on both
                    for name, home in homes.items():
                        daily[name].append(dagster_daily_run(home, urls, path))
            if "backends" in sections:
                both = backends(admin, args.lake_devices or args.devices, args.days, tmp)
        finally:
            server.stop()

    n, f = args.devices, args.factor
    print(f"scaling --devices {n} --factor {f} --days {args.days} --section {' --section '.join(s for s in SECTIONS if s in sections)}"
          f"   (the demo is 60 devices x 30 days; 100x = 6,000 devices)")
    if "growth" in sections:
        print(f"1. growth, {n} -> {n * f} devices (baseline: {n}; linear = {f:.2f}x)")
        rows = [("source rows generated", small.source_rows, large.source_rows, "rows"),
                ("generate (COPY into PostgreSQL)", small.generate, large.generate, "s"),
                ("full extraction, all history", small.full_extract, large.full_extract, "s"),
                ("every mart, every day", small.all_marts, large.all_marts, "s"),
                ("daily run: rows extracted (2-day window)", small.day_rows, large.day_rows, "rows"),
                ("new day: device_memories rows (memory sync input)", small.day_memory_files, large.day_memory_files, "rows"),
                ("daily run: extraction", small.day_extract, large.day_extract, "s"),
                ("daily run: marts for the window", small.day_marts, large.day_marts, "s"),
                ("daily run: write-back", small.write_back, large.write_back, "s"),
                ("daily run: total (writer holds the file)", small.daily_run, large.daily_run, "s"),
                ("warehouse file", small.file_mb, large.file_mb, "MB")]
        for label, a, b, unit in rows:
            fmt = "{:>10,.0f}" if unit in ("rows", "MB") else "{:>10.2f}"
            print(f"   {label:<50} {fmt.format(a)} {unit:<4} {fmt.format(b)} {unit:<4} {b / a:5.2f}x")
        print(f"   full extraction throughput: {small.full_rows / small.full_extract:,.0f} rows/s at {n}, "
              f"{large.full_rows / large.full_extract:,.0f} rows/s at {n * f}")
        if n * f != 6000:
            print(f"   daily run at 6,000 devices, extrapolated linearly from {n * f}: "
                  f"{large.daily_run * 6000 / (n * f):.1f} s (of 86,400 s in a day)")
    if "writer" in sections:
        print("2. DuckDB single writer, working file held read-write by this process")
        print(f"   second process, read-write:  {writer['rw']}")
        print(f"   second process, read-only:   {writer['ro']}")
        print(f"   published copy, read-only:   {writer['snapshot']}")
        print(f"   copying the closed {writer['mb']:,.0f} MB file: {writer['copy']:.3f} s   "
              f"({writer['copy'] / large.daily_run:.3f} of the daily run's writer-held time, baseline)")
        if lake is None:
            print("   DuckLake (catalog in PostgreSQL): not measured, `pip install duckdb-extension-ducklake==1.5.5` to measure")
        else:
            print(f"   {WRITERS} writers, {COMMITS} commits of {ROWS_PER_COMMIT:,} rows each, one table per writer:")
            base_writers = lake["file, in turn"][0]
            for label, (seconds, said) in lake.items():
                outcome = "all committed" if all(s.startswith("ok") for s in said) else "; ".join(s for s in said if not s.startswith("ok"))
                print(f"     {label:<18} {seconds:6.2f} s   {seconds / base_writers:.2f}x   {outcome[:150]}")
    if "dagster" in sections:
        print("3. Dagster per run, SQLite storage (baseline) vs PostgreSQL storage, same machine")
        base = statistics.median(trivial["sqlite"])
        for name, seconds in trivial.items():
            median = statistics.median(seconds)
            print(f"   trivial one-asset run, {name:<8} median {median:5.3f} s (min {min(seconds):5.3f}, max {max(seconds):5.3f}, "
                  f"{len(seconds)} runs)   {median / base:.2f}x")
        base_daily = min(s for s, _ in daily["sqlite"])
        for name, results in daily.items():
            seconds, events = min(results)
            print(f"   daily run of raw + rollups ({DAGSTER_SELECTION}) at {n * f} devices, {name:<8} {seconds:6.2f} s "
                  f"({events:,} events stored)   {seconds / base_daily:.2f}x")
        print(f"   the same at {n} devices, sqlite   {small_daily[0]:6.2f} s ({small_daily[1]:,} events stored)   "
              f"{small_daily[0] / base_daily:.2f}x;  engine alone (figure 1): {small.daily_run:.2f} s at {n}, "
              f"{large.daily_run:.2f} s at {n * f}")
    if "backends" in sections:
        print_backends(both)
    print(f"peak memory of this process (everything above): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    main()
