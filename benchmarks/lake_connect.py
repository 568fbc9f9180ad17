"""Benchmark: opening a connection to a DuckLake, on the process's shared DuckDB against a DuckDB of its own.

``warehouse.connect(lake)`` lends the process's one in-memory DuckDB, whose postgres and ducklake extensions
were loaded once (``pipelines.warehouse._SharedEngine``). While that one is lent, a second connection gets a new
DuckDB and loads both extensions again, as every connection did before: the baseline, measured in the same run
through the same function by holding a read-only connection open around it. Each figure is a whole connection
as a Dagster step makes one: open (attach the lake, ``USE`` it, the bookkeeping DDL), one query, close.
Also printed: ``LOAD`` of each extension on a new DuckDB, the part the shared one saves.

    .venv/bin/python benchmarks/lake_connect.py [--connections 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines import postgres, warehouse
from pipelines.databases import database_url
from pipelines.settings import load


def connection_ms(lake: warehouse.Lake, n: int) -> list[float]:
    """Milliseconds for each of ``n`` connections: open, count a table's rows, close."""
    times = []
    for _ in range(n):
        began = time.perf_counter()
        with warehouse.connect(lake) as con:
            con.execute("SELECT count(*) FROM marts.t").fetchone()
        times.append((time.perf_counter() - began) * 1000)
    return times


def load_ms(extension: str, n: int) -> float:
    """Median milliseconds of ``LOAD extension`` on a new in-memory DuckDB."""
    times = []
    for _ in range(n):
        con = duckdb.connect()
        began = time.perf_counter()
        warehouse.load_extension(con, extension)
        times.append((time.perf_counter() - began) * 1000)
        con.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    # A catalog database on the configured (or embedded) server.
    admin = postgres.with_database(database_url(load(), "cheeko"), "postgres")
    postgres.drop_database(admin, "lakeconnect_catalog")
    postgres.ensure_database(admin, "lakeconnect_catalog")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lake = warehouse.Lake(postgres.with_database(admin, "lakeconnect_catalog"), str(Path(tmp) / "data"))
            with warehouse.connect(lake) as con:
                con.execute("CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.t AS SELECT range AS x FROM range(1000)")
            # Alternately, twice each, so a drift of this machine's speed falls on both sides.
            shared, own = [], []
            for _ in range(2):
                shared += connection_ms(lake, args.connections)
                with warehouse.connect(lake, read_only=True):  # holds the shared DuckDB: the next get their own
                    own += connection_ms(lake, args.connections)
        print(f"a connection to a DuckLake: open, one query, close ({2 * args.connections} each, alternately)")
        print(f"  a DuckDB of its own (as before)   median {statistics.median(own):6.1f} ms   baseline")
        print(f"  the process's shared DuckDB       median {statistics.median(shared):6.1f} ms   "
              f"{statistics.median(own) / statistics.median(shared):.2f}x faster")
        print(f"  LOAD on a new DuckDB: postgres {load_ms('postgres', 5):.0f} ms, ducklake {load_ms('ducklake', 5):.0f} ms")
    finally:
        postgres.drop_database(admin, "lakeconnect_catalog")


if __name__ == "__main__":
    main()
