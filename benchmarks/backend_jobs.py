"""The writers and the reader ``benchmarks/scaling.py --section backends`` starts in processes of their own.

Each job prints one JSON line: its seconds (after imports), and for writers the commits that conflicted. A writer
step that fails with DuckLake's "Transaction conflict" is counted and retried whole (every step is safe to re-run:
windows and mart days are replaced, incremental loads merge on the key), up to ``RETRIES`` times.

    python benchmarks/backend_jobs.py JOB '{"where": ..., "urls": ..., ...}'

JOB is one of ``extract`` (the day's window of every table), ``marts`` (every mart for the day and the day
before, then the write-back), ``daily`` (both, in turn: the daily run), ``backfill`` (every mart over a range of past
days), ``reader`` (opens the warehouse read-only and queries a mart until the file ``stop`` exists).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb

from pipelines import rollups, warehouse
from pipelines.extract import extract_tables
from pipelines.source_tables import source_tables

RETRIES = 5
READER_QUERY = "SELECT count(*), max(activity_date) FROM marts.daily_device_activity"


def location(spec: dict) -> warehouse.Location:
    """``{"file": path}`` or ``{"catalog": url, "data": path}``."""
    return Path(spec["file"]) if "file" in spec else warehouse.Lake(spec["catalog"], spec["data"])


def conflict(error: BaseException | None) -> str | None:
    """DuckLake's commit conflict in ``error`` or what it was raised while handling (a ROLLBACK after a failed
    COMMIT raises one of its own), as its first line; None if there is none."""
    while error is not None:
        if isinstance(error, duckdb.Error) and "conflict" in str(error).lower():
            return str(error).splitlines()[0][:160]
        error = error.__context__
    return None


class Retrying:
    """Runs steps, retrying one that hit a commit conflict; remembers the conflicts and what they said."""

    def __init__(self) -> None:
        self.conflicts: list[str] = []

    def __call__(self, label: str, step) -> float:
        """Seconds ``step`` took, its retries included."""
        began = time.perf_counter()
        for attempt in range(RETRIES + 1):
            try:
                step()
                return time.perf_counter() - began
            except Exception as error:
                said = conflict(error)
                if said is None or attempt == RETRIES:
                    raise
                self.conflicts.append(f"{label}: {said}" + ("" if said in str(error) else
                                                             f" (raised as {type(error).__name__}: {str(error)[:80]})"))


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The window a daily run for ``day`` reads: the day before refreshed too (assets.partitions.LATE_DATA)."""
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(0), dt.UTC)
    return start, start + dt.timedelta(days=2)


def extract_day(where, urls: dict[str, str], day: dt.date, run: Retrying) -> dict[str, float]:
    window = day_window(day)
    return {"extract": run("extraction of the day", lambda: extract_tables(
        where, urls, source_tables(), pseudonym_key="bench", windows={t.key: window for t in source_tables()}))}


def marts_day(where, urls: dict[str, str], day: dt.date, run: Retrying) -> dict[str, float]:
    as_of = dt.datetime.combine(day, dt.time(0), dt.UTC) + dt.timedelta(days=2)
    seconds = {}
    with warehouse.connect(where) as con:
        seconds["marts"] = run("marts of the day", lambda: rollups.build(con, as_of_time=as_of, first_day=day - dt.timedelta(days=1),
                                                                      last_day=day))
        began = time.perf_counter()
        rollups.publish(con, urls["cheeko"], as_of_date=day)
        seconds["write_back"] = time.perf_counter() - began
    return seconds


def backfill(where, first_day: dt.date, last_day: dt.date, run: Retrying) -> dict[str, float]:
    as_of = dt.datetime.combine(last_day, dt.time(0), dt.UTC) + dt.timedelta(days=2)
    with warehouse.connect(where) as con:
        return {"backfill": run("backfill of the marts",
                                lambda: rollups.build(con, as_of_time=as_of, first_day=first_day, last_day=last_day))}


def reader(where, stop: Path) -> dict:
    """Query a mart until ``stop`` exists: on a file, each try opens it read-only (refused while a writer holds
    it); on a lake, one read-only connection queries the live catalog, noting each snapshot it sees."""
    began = time.perf_counter()
    tries = refused = answered = 0
    refusal_seconds = 0.0
    snapshots: list[int] = []
    rows_seen: list[int] = []
    first_error = ""
    if isinstance(where, Path):
        while not stop.exists():
            tries += 1
            attempt = time.perf_counter()
            try:
                with warehouse.connect(where, read_only=True, wait=0) as con:
                    rows_seen.append(con.execute(READER_QUERY).fetchone()[0])
                answered += 1
            except Exception as error:
                refused += 1
                refusal_seconds += time.perf_counter() - attempt
                first_error = first_error or f"{type(error).__name__}: {str(error).splitlines()[0][:90]}"
    else:
        opened = time.perf_counter()
        with warehouse.connect(where, read_only=True) as con:
            open_seconds = time.perf_counter() - opened
            while not stop.exists():
                tries += 1
                try:
                    rows_seen.append(con.execute(READER_QUERY).fetchone()[0])
                    snapshots.append(con.execute(f"FROM {warehouse.LAKE_ALIAS}.current_snapshot()").fetchone()[0])
                    answered += 1
                except Exception as error:
                    refused += 1
                    first_error = first_error or f"{type(error).__name__}: {str(error).splitlines()[0][:90]}"
        refusal_seconds = open_seconds  # on a lake: the one open, reported as such
    return {"seconds": time.perf_counter() - began, "tries": tries, "answered": answered, "refused": refused,
            "refusal_seconds": refusal_seconds, "first_error": first_error,
            "snapshots": sorted(set(snapshots)), "rows_first": rows_seen[0] if rows_seen else None,
            "rows_last": rows_seen[-1] if rows_seen else None}


def main() -> None:
    job, args = sys.argv[1], json.loads(sys.argv[2])
    where = location(args["where"])
    run = Retrying()
    began, started = time.perf_counter(), time.time()
    result: dict = {}
    try:
        if job == "reader":
            result = reader(where, Path(args["stop"]))
        else:
            day = dt.date.fromisoformat(args.get("day", "2000-01-01"))
            if job in ("extract", "daily"):
                result |= extract_day(where, args["urls"], day, run)
            if job in ("marts", "daily"):
                result |= marts_day(where, args["urls"], day, run)
            if job == "backfill":
                result |= backfill(where, dt.date.fromisoformat(args["first_day"]), dt.date.fromisoformat(args["last_day"]), run)
        result["ok"] = True
    except Exception as error:
        result |= {"ok": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    result |= {"wall": time.perf_counter() - began, "start": started, "end": time.time(), "conflicts": run.conflicts}
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
