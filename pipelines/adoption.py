"""What the pipeline needs of a database an app created: checked before adopting it.

Production databases are made by the apps' ORMs (Cheeko: Prisma; Cognova:
Drizzle), so they hold the columns their schemas say, not the ones our own
migrations would make. Before the pipeline installs its tables beside the
app's (:func:`pipelines.migrate.adopt`), :func:`check` compares the live
catalogue with what the pipeline reads and writes, derived from the code
rather than listed again:

- every source table of ``source_tables.toml`` extracts: the table exists,
  its declared event time and cursor are columns, every column has an exact
  warehouse type (:func:`pipelines.extract.plan_columns`);
- every warehouse SQL file (staging, marts, reports) that reads only this
  database's tables binds against empty tables shaped like the catalogue
  (after the privacy policy): a column a file reads and the app lacks is
  named, with the file;
- the modules that touch the app's tables directly in PostgreSQL (the memory
  sync, report delivery, the weekly parent emails) find the columns they use
  (their ``APP_COLUMNS``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import duckdb

from pipelines import extract, macros, postgres, rollups, warehouse
from pipelines.marts import MARTS
from pipelines.postgres import Snapshot
from pipelines.source_tables import source_tables
from pipelines.warehouse import RAW_SCHEMAS

REPORTS_DIR = rollups.SQL_DIR / "reports"
_MISSING_COLUMN = (re.compile(r'Referenced column "([^"]+)" not found'),
                   re.compile(r'does not have a column named "([^"]+)"'))
MAX_ROUNDS = 60  # each round finds one more missing column; a database missing more is reported as it stands


@dataclass(frozen=True)
class SqlFile:
    """One warehouse SQL file and how to bind it: run (staging, marts) or prepare (reports)."""

    kind: str  # "staging", "mart" or "report"
    name: str
    sql: str

    @property
    def path(self) -> str:
        folder = {"staging": "sql/staging/", "mart": "sql/", "report": "sql/reports/"}[self.kind]
        return f"{folder}{self.name}.sql"

    @property
    def builds(self) -> str | None:
        return {"staging": f"staging.{self.name}", "mart": f"marts.{self.name}"}.get(self.kind)


def sql_files() -> list[SqlFile]:
    """Every warehouse SQL file in the order it runs: staging, marts (inputs first), reports."""
    files = [SqlFile("staging", name, rollups.staging_sql(name)) for name in rollups.STAGING]
    files += [SqlFile("mart", name, (rollups.SQL_DIR / f"{name}.sql").read_text()) for name in rollups.build_order()]
    files += [SqlFile("report", path.stem, path.read_text()) for path in sorted(REPORTS_DIR.glob("*.sql"))]
    return files


def raw_tables_read(file: SqlFile, files: list[SqlFile]) -> set[str]:
    """``raw_<db>.<table>`` that ``file`` reads, directly or through the staging tables and marts it reads."""
    built = {f.builds: f for f in files if f.builds}
    seen: set[str] = set()
    raw: set[str] = set()
    pending = list(rollups.references(file.sql))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("raw_"):
            raw.add(name)
        elif name in built:
            pending += rollups.references(built[name].sql)
    return raw


def check(database: str, url: str) -> tuple[list[str], list[str]]:
    """``(problems, checked)``: one line per thing the pipeline needs and ``database`` at ``url`` lacks, and one
    line per check that passed. Reads the catalogue only; writes nothing."""
    problems: list[str] = []
    checked: list[str] = []
    declared = [t for t in source_tables() if t.database == database]
    shapes: dict[str, dict[str, str]] = {}
    with Snapshot(url) as snapshot:
        extractable = 0
        for table in declared:
            columns = snapshot.columns(table.name)
            try:
                planned = extract.plan_columns(table, columns)
                keys = snapshot.primary_key(table.name)
                if problem := extract.key_problem(table, planned, keys):
                    raise extract.ExtractionError(f"{problem} (declared in {table.declaration})")
                extractable += 1
            except extract.ExtractionError as error:
                problems.append(str(error))
                # Still bind the SQL against what the table does have, so every missing column is named.
                usable = [c for c in columns if extract.warehouse_type(c.type) is not None]
                lenient = replace(table, load="full", event_time=(), cursor=())
                planned = extract.plan_columns(lenient, usable) if usable else []
            if planned:
                shapes[table.name] = {p.name: p.warehouse_type for p in planned if p.expression is not None}
    checked.append(f"{database}: {extractable} of {len(declared)} source tables extract as declared")
    problems += _bind(database, shapes, checked)
    with postgres.connect(url) as conn:
        for owner, needed in _direct_needs(database).items():
            missing = postgres.missing_columns(conn, needed)
            problems += [f"{database}.{m}: missing, and {owner} reads or writes it" for m in missing]
            if not missing:
                checked.append(f"{database}: {owner} finds {', '.join(needed)}")
    return problems, checked


def _direct_needs(database: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """What each module that reads or writes the app's tables directly in PostgreSQL uses."""
    if database != "cheeko":
        return {}
    from pipelines import memory_sync
    from pipelines.reports import delivery, family_data

    return {"the memory sync (pipelines/memory_sync.py)": memory_sync.APP_COLUMNS,
            "report delivery (pipelines/reports/delivery.py)": delivery.APP_COLUMNS,
            "the weekly parent emails (pipelines/reports/family_data.py)": family_data.APP_COLUMNS}


def _bind(database: str, shapes: dict[str, dict[str, str]], checked: list[str]) -> list[str]:
    """Bind every SQL file that reads only ``database``'s tables against empty tables of the given shapes.

    A file that reads a column the app lacks is reported once per (table,
    column); the column is then stood in for (as VARCHAR) and binding starts
    over, so one run names every missing column, not just the first.
    """
    schema = RAW_SCHEMAS[database]
    files = sql_files()
    ours = [f for f in files if (raw := raw_tables_read(f, files)) and all(r.startswith(f"{schema}.") for r in raw)]
    stand_ins: dict[str, set[str]] = {}
    problems: list[str] = []
    declared = {t.name: t for t in source_tables() if t.database == database}
    for _ in range(MAX_ROUNDS):
        found, failed, broken = None, [], set(declared) - shapes.keys()
        with warehouse.in_memory() as con:
            _empty_tables(con, schema, shapes, stand_ins)
            for file, error in _run(con, ours):
                if file.builds:
                    broken.add(file.builds.split(".", 1)[1])
                    broken.update(name for name, owner in rollups.table_macros().items() if owner == file.name)
                column = next((m.group(1) for p in _MISSING_COLUMN if (m := p.search(str(error)))), None)
                tables = [r.split(".", 1)[1] for r in raw_tables_read(file, files)]
                lacking = sorted(t for t in tables if column and t in shapes
                                 and column not in shapes[t].keys() | stand_ins.get(t, set()))
                # The table whose declaration describes the column is the one at fault; else every candidate.
                blamed = [t for t in lacking if column in declared[t].columns] or lacking
                if column and blamed:
                    found = (file, column, blamed)
                    break
                missing = re.search(r'Table (?:Function )?with name (\w+) does not exist', str(error))
                if missing and missing.group(1) in broken:
                    continue  # what it reads failed already, and that failure is reported
                failed.append(f"{file.path} does not bind against {database}'s tables: {str(error).splitlines()[0]}")
        if found is None:
            problems += failed
            break
        file, column, blamed = found
        for table in blamed:
            stand_ins.setdefault(table, set()).add(column)
        where = blamed[0] if len(blamed) == 1 else f"one of {', '.join(blamed)}"
        problems.append(f"{database}.{where}: no column {column}, which {file.path} reads")
    bound = len(ours) - len([p for p in problems if "does not bind" in p])
    if not problems:
        checked.append(f"{database}: {bound} SQL files (staging, marts, reports) bind to the app's columns")
    return problems


def _empty_tables(con: duckdb.DuckDBPyConnection, schema: str, shapes: dict[str, dict[str, str]],
                  stand_ins: dict[str, set[str]]) -> None:
    con.execute(warehouse.META_DDL)
    for name in (schema, "staging", "marts"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
    # A stand-in for a missing column takes the type that columns of its name have elsewhere (created_at:
    # TIMESTAMPTZ), so the SQL reading it binds on and names the next missing column, not a type error.
    usual = {}
    for columns in shapes.values():
        for column, type_ in columns.items():
            usual.setdefault(column, type_)
    for table, columns in shapes.items():
        body = [f"{extract.privacy.quote(c)} {t}" for c, t in columns.items()]
        body += [f"{extract.privacy.quote(c)} {usual.get(c, 'VARCHAR')}" for c in sorted(stand_ins.get(table, ()))
                 if c not in columns]
        con.execute(f"CREATE TABLE {schema}.{extract.privacy.quote(table)} ({', '.join(body)})")


def _run(con: duckdb.DuckDBPyConnection, files: list[SqlFile]) -> Iterator[tuple[SqlFile, duckdb.Error]]:
    """Run (staging, marts) or prepare (reports) each file in order; yield the ones that fail, with the error."""
    macros.ensure(con)
    rollups.load_prices(con, rollups.load_price_sheet())
    now = dt.datetime.now(dt.UTC)
    marts = {m.name for m in MARTS}
    for number, file in enumerate(files):
        try:
            if file.kind == "staging":
                con.execute(file.sql)
            elif file.kind == "mart" and file.name in marts:
                rollups.build_mart(con, file.name, as_of_time=now, first_day=now.date(), last_day=now.date())
            else:
                con.execute(f"PREPARE check_{number} AS {file.sql}")
                con.execute(f"DEALLOCATE check_{number}")
        except duckdb.Error as error:
            yield file, error
