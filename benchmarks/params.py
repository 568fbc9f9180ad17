"""Benchmark: DuckDB's bound parameters with pandas installed (as the project installs it) and without.

DuckDB's Python client looks for pandas whenever it converts a bound parameter (to recognise pandas' missing
values), and does not remember a failed import: without pandas, each conversion searches sys.path again. The
project does not use pandas; it depends on it for this (pyproject.toml). Each side runs in a child process of
its own, on this environment's packages; the "without" side sees them through a folder that links every entry
of site-packages but pandas, as if it had never been installed (the child checks that ``import pandas`` fails).

Printed per side: the first call (which imports pandas when it can), then milliseconds a call for parameters
as the pipeline binds them: one string; two lists of 40 names; a bookkeeping write (five lists of 30, as
``pipelines.bookkeeping.Books.write`` inserts a table's recorded columns); and the ratio without/with.

    .venv/bin/python benchmarks/params.py [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

CHILD = r"""
import importlib.util, json, sys, time
import duckdb
has_pandas = importlib.util.find_spec("pandas") is not None  # found, not imported: the first call imports it
calls = int(sys.argv[1])
con = duckdb.connect()
con.execute("CREATE TABLE columns (table_name VARCHAR, column_name VARCHAR, source_type VARCHAR, "
            "warehouse_type VARCHAR, ordinal INTEGER, rule VARCHAR)")
names = [f"column_{i}" for i in range(40)]
rows = {"t": "ai_device", "names": names[:30], "types": ["text"] * 30, "wtypes": ["VARCHAR"] * 30,
        "ordinals": list(range(30)), "rules": [None] * 30}
started = time.perf_counter()
con.execute("SELECT $a", {"a": "first"}).fetchall()
first = time.perf_counter() - started
def per_call(run):
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - started) / calls * 1000
out = {"pandas": has_pandas, "first call ms": first * 1000, "imported by duckdb": "pandas" in sys.modules,
       "one string": per_call(lambda: con.execute("SELECT $a", {"a": "x"}).fetchall()),
       "two lists of 40": per_call(lambda: con.execute("SELECT len($n), len($m)", {"n": names, "m": names}).fetchall()),
       "bookkeeping write": per_call(lambda: con.execute(
           "INSERT INTO columns SELECT $t, UNNEST($names), UNNEST($types), UNNEST(CAST($wtypes AS VARCHAR[])), "
           "UNNEST($ordinals), UNNEST(CAST($rules AS VARCHAR[]))", rows))}
print(json.dumps(out))
"""

MEASURED = ("one string", "two lists of 40", "bookkeeping write")


def without_pandas(folder: Path) -> str:
    """A folder that links every entry of this environment's site-packages but pandas's own."""
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name == "pandas" or (entry.name.startswith("pandas-") and entry.name.endswith(".dist-info")):
            continue
        (folder / entry.name).symlink_to(entry)
    return str(folder)


def child(calls: int, path: str | None) -> dict:
    # -S: no site-packages but the folder given; -I is not used, so PYTHONPATH is honoured.
    command = [sys.executable, "-S", "-c", CHILD, str(calls)] if path else [sys.executable, "-c", CHILD, str(calls)]
    env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per measurement (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = without_pandas(Path(folder))
        runs = [("with pandas", child(args.calls, None)), ("without pandas", child(args.calls, path)),
                ("with pandas", child(args.calls, None)), ("without pandas", child(args.calls, path))]
    for label, result in runs:
        expected = label == "with pandas"
        if (result["pandas"], result["imported by duckdb"]) != (expected, expected):
            raise SystemExit(f"{label}: pandas found = {result['pandas']}, imported by DuckDB = "
                             f"{result['imported by duckdb']}; expected {expected} for both")
    print(f"DuckDB bound parameters, ms a call ({args.calls} calls; each side twice, alternately; best of two)")
    best = {label: {k: min(r[k] for l, r in runs if l == label) for k in (*MEASURED, "first call ms")}
            for label in ("with pandas", "without pandas")}
    print(f"  {'':20} {'with pandas':>12} {'without':>12} {'without/with':>13}")
    for key in (*MEASURED, "first call ms"):
        with_, without = best["with pandas"][key], best["without pandas"][key]
        ratio = without / with_
        print(f"  {key:20} {with_:12.3f} {without:12.3f} {ratio:12.{1 if ratio >= 1 else 3}f}x")
    print("  (the first call of a process imports pandas where it is installed: once a process)")


if __name__ == "__main__":
    main()
