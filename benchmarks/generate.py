"""Benchmark: the fleet generator at ``--devices 2000 --days 90``.

Prints the generator's wall time split into building rows (Python) and
loading them (COPY), rows per second, peak memory, and as the baseline the
time PostgreSQL itself needs to write the same rows into tables with the same
indexes (``INSERT ... SELECT``, measured in the same run on the same server),
so the ratio survives a noisy machine.

    .venv/bin/python benchmarks/generate.py [--devices 2000] [--days 90] [--messy]

Uses the embedded server (or the configured URLs' server) and creates and
drops its own databases ``bench_cheeko`` / ``bench_cognova``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

from common import drop_databases, fresh_databases
from pipelines import generator, postgres
from pipelines.generator import assemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--messy", action="store_true")
    args = parser.parse_args()

    urls = fresh_databases()

    end = dt.date(2026, 11, 20)
    began = time.perf_counter()
    data = assemble.build_initial(args.seed, args.devices, args.days, end, args.messy, progress=lambda _: None)
    built = time.perf_counter() - began
    del data  # measured separately; generate() below builds again and loads

    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        result = generator.generate(urls["cheeko"], urls["cognova"],
                                    generator.Options(devices=args.devices, days=args.days, seed=args.seed, messy=args.messy, end=end),
                                    Path(out), progress=lambda _: None)
        total = time.perf_counter() - began

    # Baseline: the server writing the same rows into tables with the same
    # columns, defaults and indexes (not foreign keys), with no client at all.
    baseline = 0.0
    for (database, table), n in result.rows.items():
        if n == 0:
            continue
        with postgres.connect(urls[database]) as conn:
            conn.execute(f'CREATE TABLE bench_copy (LIKE "{table}" INCLUDING ALL)')
            began = time.perf_counter()
            conn.execute(f'INSERT INTO bench_copy SELECT * FROM "{table}"')
            conn.commit()
            baseline += time.perf_counter() - began
            conn.execute("DROP TABLE bench_copy")
            conn.commit()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = result.total_rows
    print(f"generate --devices {args.devices} --days {args.days} --seed {args.seed}{' --messy' if args.messy else ''}")
    print(f"  rows written            {rows:>12,}")
    for (database, table), n in sorted(result.rows.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {database}.{table:<30} {n:>10,}")
    print(f"  total wall time         {total:>10.1f} s   ({rows / total:,.0f} rows/s)")
    print(f"    building rows (Python) {built:>9.1f} s")
    print(f"    loading (COPY)         {total - built:>9.1f} s")
    print(f"  baseline: server-side INSERT ... SELECT of the same rows into same-indexed tables {baseline:.1f} s")
    print(f"  ratio generator / baseline: {total / baseline:.2f}x")
    print(f"  peak memory (RSS)       {peak_mb:>10.0f} MB")
    drop_databases()


if __name__ == "__main__":
    main()
