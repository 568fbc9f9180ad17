"""Benchmark: extraction into the DuckDB raw layer at ``--devices 2000 --days 90``.

Each figure is printed beside a baseline measured in the same run:

1. the largest event table, extracted whole, vs a raw binary
   ``COPY (SELECT * ...) TO STDOUT (FORMAT BINARY)`` of the same rows drained
   to nowhere (throughput ratio; aim >= 0.8x);
2. a full run of every table vs an incremental run after ``generate
   --append-days 1`` (unpartitioned tables plus the new days' partitions;
   aim < 1/10 of the full run), both through the engine and through Dagster
   (``--no-dagster`` skips the latter: at 2000 x 90 it takes the longest).
   The engine's runs come in ``--repeat`` pairs, a full run of the appended
   source into a new file, then an incremental run from a copy of the file
   loaded before the append: the figure is the median of the pairs' ratios,
   as this machine's speed moved by half within one benchmark run.
   The incremental run's tables are counted by how change capture found their
   rows (``LoadResult.capture``), and it must leave the warehouse equal to the
   source: every table's row count is compared with the source's;
   the same incremental run before the append, with nothing new at the source,
   gives the floor any run pays (open, attach, probes, the daily windows'
   queries, close);
3. peak memory (RSS) of the full run, measured in a child process (aim < 1 GB).

    .venv/bin/python benchmarks/extract.py [--devices 2000] [--days 90] [--repeat 3] [--no-dagster]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import END, drop_databases, fresh_databases, generate_fleet, query_one
from pipelines import extract, generator, postgres, warehouse
from pipelines.postgres import Snapshot
from pipelines.source_tables import source_table, source_tables

LARGEST = ("cheeko", "ai_agent_chat_history")


def raw_copy_seconds(url: str, table: str) -> tuple[float, int]:
    """Seconds to drain a binary COPY of the whole table, and the bytes it sent."""
    began, size = time.perf_counter(), 0
    with postgres.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f'COPY (SELECT * FROM "{table}") TO STDOUT (FORMAT BINARY)') as copy:
            for block in copy:
                size += len(block)
    return time.perf_counter() - began, size


def read_seconds(url: str, path: Path, table) -> float:
    """Seconds for the extension to read every column of ``table`` (as extraction selects it) and discard it."""
    with Snapshot(url) as snapshot, warehouse.connect(path) as con:
        warehouse.attach_source(con, "src", url)
        planned = [p for p in extract.plan_columns(table, snapshot.columns(table.name)) if p.expression]
        exprs = ", ".join(f"{p.expression} AS c{i}" for i, p in enumerate(planned))
        aggregates = ", ".join(f"max(c{i})" for i in range(len(planned)))
        began = time.perf_counter()
        con.execute(f'SELECT count(*), {aggregates} FROM (SELECT {exprs} FROM src.public."{table.name}")', {"key": "k"}
                    if "$key" in exprs else None).fetchone()
        return time.perf_counter() - began


def extract_all(urls: dict[str, str], path: Path, tables, windows: dict[str, tuple] | None = None) -> dict[str, float]:
    """Extract ``tables`` (daily ones over their window) with one snapshot per database; seconds per table."""
    results = extract.extract_tables(path, urls, list(tables), pseudonym_key="bench", windows=windows)
    return {key: result.seconds for key, result in results.items()}


def how_found(results: dict[str, extract.LoadResult]) -> str:
    """The unpartitioned tables of a run counted by how their rows were found, e.g. ``44 unchanged, 9 xmin``."""
    kinds = collections.Counter("unchanged" if r.capture == extract.UNCHANGED else (r.capture.split(":")[0] or r.table.load)
                                for r in results.values() if not r.table.partitioned)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def differing_tables(results: dict[str, extract.LoadResult]) -> list[str]:
    """Tables whose warehouse rows (in scope) are not the source's count after the run, or hold a duplicate key."""
    return [key for key, r in results.items()
            if r.duplicate_keys or r.source_rows != r.warehouse_rows - r.rows_kept]


def everything_window() -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime.combine(END + dt.timedelta(days=3), dt.time(0), dt.UTC)


def incremental_run(urls: dict[str, str], tmp_path: Path, window: tuple) -> tuple[float, dict[str, extract.LoadResult]]:
    """An incremental run, every daily table over ``window``, from a fresh copy of ``base.duckdb`` (the file loaded
    before the append): its seconds and results."""
    shutil.copyfile(tmp_path / "base.duckdb", tmp_path / "incremental.duckdb")
    began = time.perf_counter()
    results = extract.extract_tables(tmp_path / "incremental.duckdb", urls, list(source_tables()),
                                     pseudonym_key="bench", windows={t.key: window for t in source_tables()})
    return time.perf_counter() - began, results


def child_full_run(urls: dict[str, str], path: Path) -> dict:
    """Run the full extraction in a child process; return its seconds and peak RSS."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from extract import extract_all, everything_window
from pipelines.source_tables import source_tables
began = time.perf_counter()
window = everything_window()
extract_all({urls!r}, Path({str(path)!r}), source_tables(), {{t.key: window for t in source_tables()}})
print(json.dumps({{"seconds": time.perf_counter() - began, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def dagster_runs(urls: dict[str, str], tmp_path: Path, new_day: dt.date) -> tuple[float, float, str]:
    """Seconds for ``warehouse run`` over every day with data, then for one new day, on a fresh instance."""
    import dagster as dg

    from assets import runs
    from pipelines.settings import load

    os.environ.update({"CHEEKO_DATABASE_URL": urls["cheeko"], "COGNOVA_DATABASE_URL": urls["cognova"],
                       "WAREHOUSE_PSEUDONYM_KEY": "benchmark-key",
                       "WAREHOUSE_DUCKDB_PATH": str(tmp_path / "dagster.duckdb")})
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).parents[1] / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        began = time.perf_counter()
        runs.materialize(load(), instance, end=new_day - dt.timedelta(days=1), progress=lambda _: None)
        full = time.perf_counter() - began
        began = time.perf_counter()
        outcome = "checks as in the full run"
        try:
            runs.materialize(load(), instance, start=new_day, end=new_day, progress=lambda _: None)
        except runs.RunFailed as failed:
            # Timed all the same (every asset ran), and said.
            outcome = f"the one-day run reported: {str(failed)[:200]}"
        return full, time.perf_counter() - began, outcome


def options() -> argparse.Namespace:
    """``--devices`` and ``--days`` as every benchmark takes them (``common.arguments``), and ``--no-dagster``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--no-dagster", action="store_true", help="skip the runs through Dagster (item 2's second line)")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of a full and an incremental run, the figure "
                                                              "the median of their ratios (this machine's speed "
                                                              "moved by half within one benchmark run)")
    return parser.parse_args()


def main() -> None:
    args = options()
    urls = fresh_databases()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        generate_fleet(urls, args, tmp_path / "gen")

        # 1. Largest event table: extraction vs raw binary COPY, same rows, same run (twice each, best kept).
        table = source_table(*LARGEST)
        rows = query_one(urls["cheeko"], f"SELECT count(*) FROM {table.name}")[0]
        raw, size = min(raw_copy_seconds(urls["cheeko"], table.name) for _ in range(2))
        read_only = min(read_seconds(urls["cheeko"], tmp_path / "read.duckdb", table) for _ in range(2))
        ours = min(extract_all({"cheeko": urls["cheeko"]}, tmp_path / f"one{i}.duckdb", [table], {table.key: everything_window()})[table.key]
                   for i in range(2))

        # 2 and 3. The file the incremental runs start from, loaded before the append; then pairs of a full run
        # (a child process, for peak memory) and an incremental run from a copy of that file (the source is only
        # read, so each incremental run does the same work).
        base = child_full_run(urls, tmp_path / "base.duckdb")
        new_day = END + dt.timedelta(days=1)
        window = (dt.datetime.combine(new_day, dt.time(0), dt.UTC), dt.datetime.combine(new_day + dt.timedelta(days=2), dt.time(0), dt.UTC))
        # The floor: the same incremental run before anything was appended. It writes nothing, so what it takes is
        # what any run pays before a row changes (open, attach, probes, the daily windows' queries, close).
        floors = [incremental_run(urls, tmp_path, window)[0] for _ in range(args.repeat)]
        generator.append(urls["cheeko"], urls["cognova"], 1, tmp_path / "gen", progress=lambda _: None)
        fulls, runs = [], []
        for i in range(args.repeat):
            fulls.append(child_full_run(urls, tmp_path / f"full{i}.duckdb"))
            (tmp_path / f"full{i}.duckdb").unlink()
            runs.append(incremental_run(urls, tmp_path, window))
        full = {"seconds": statistics.median(f["seconds"] for f in fulls),
                "peak_mb": max(f["peak_mb"] for f in [base, *fulls])}
        ratios = [seconds / f["seconds"] for (seconds, _), f in zip(runs, fulls)]
        incremental, results = sorted(runs, key=lambda run: run[0])[len(runs) // 2]  # the median run
        by_load = collections.defaultdict(float)
        for result in results.values():
            by_load[result.table.load] += result.seconds
        differing = differing_tables(results)
        repaired = sum(r.rows_repaired for r in results.values())
        dagster = None if args.no_dagster else dagster_runs(urls, tmp_path, new_day)

        print(f"extract --devices {args.devices} --days {args.days}")
        print(f"1. {'.'.join(LARGEST)}: {rows:,} rows, {size / 1e6:,.0f} MB as binary COPY")
        print(f"   raw binary COPY drained   {raw:6.2f} s  ({rows / raw:,.0f} rows/s)   baseline")
        print(f"   the same read, no write   {read_only:6.2f} s  ({rows / read_only:,.0f} rows/s)   {raw / read_only:.2f}x")
        print(f"   extraction into DuckDB    {ours:6.2f} s  ({rows / ours:,.0f} rows/s)   {raw / ours:.2f}x the raw throughput"
              f"  (read + privacy transform + write + checks + commit)")
        print(f"2. full run, all {len(source_tables())} tables   {full['seconds']:6.2f} s   baseline  (median of {args.repeat}: "
              + ", ".join(f"{f['seconds']:.2f}" for f in fulls) + f"; before the append {base['seconds']:.2f})")
        print(f"   incremental after +1 day  {incremental:6.2f} s   {statistics.median(ratios):.3f} of the full run, median "
              f"of the {args.repeat} pairs' ratios (" + ", ".join(f"{r:.3f}" for r in ratios) + "); seconds "
              + ", ".join(f"{seconds:.2f}" for seconds, _ in runs))
        print(f"     tables: {how_found(results)}; seconds in tables by load: "
              + ", ".join(f"{load} {seconds:.2f}" for load, seconds in sorted(by_load.items()))
              + f"; rest (snapshots, connect, attach, unchanged-table probes, commits, close) "
              f"{incremental - sum(by_load.values()):.2f}")
        print(f"     warehouse equal to the source after it: {'yes' if not differing else 'NO: ' + ', '.join(differing)}"
              f" ({repaired} rows repaired)")
        print(f"   the same, nothing new     {statistics.median(floors):6.2f} s   {statistics.median(floors) / full['seconds']:.3f} "
              f"of the full run's median: the floor, before any row changed (" + ", ".join(f"{seconds:.2f}" for seconds in floors) + ")")
        if dagster:
            dagster_full, dagster_day, outcome = dagster
            print(f"   through Dagster (`warehouse run`): every day {dagster_full:6.1f} s, then the new day {dagster_day:5.1f} s "
                  f"({dagster_day / dagster_full:.3f}; {outcome})")
        print(f"3. peak memory of the full run: {full['peak_mb']:.0f} MB")
    drop_databases()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
