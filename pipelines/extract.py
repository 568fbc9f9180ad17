"""Extraction: copy one operational table into the DuckDB raw layer.

Each call is one DuckDB transaction that reads PostgreSQL through the
postgres extension, as of the run's exported snapshot, and writes the rows,
the schema bookkeeping and the cursor together: a run killed at any point
leaves the previous state intact. Three strategies (see ``source_tables.toml``):

- ``full``: replace the table (rows deleted at the source disappear);
- ``incremental``: re-read rows whose cursor is at or after the watermark
  minus a lookback (late commits), replace them by primary key, and with
  ``reconcile_deletes`` drop rows whose key is gone at the source;
- ``daily``: replace one window of event time (a day, or a backfill range).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field

import duckdb

from pipelines import privacy
from pipelines.postgres import Snapshot, SourceColumn
from pipelines.source_tables import SourceTable
from pipelines import warehouse
from pipelines.warehouse import META_SCHEMA, RAW_SCHEMAS, use_snapshot

SCALAR_TYPES = {
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "boolean": "BOOLEAN",
    "text": "VARCHAR",
    "uuid": "UUID",
    "json": "JSON",
    "jsonb": "JSON",
    "date": "DATE",
    "bytea": "BLOB",
    "interval": "INTERVAL",
    "timestamp with time zone": "TIMESTAMPTZ",
    # Read as UTC (the ORMs store UTC wall time there): see plan_columns.
    "timestamp without time zone": "TIMESTAMPTZ",
    "time without time zone": "TIME",
}
# A precision changes nothing the warehouse keeps: timestamp(3) and timestamp(6) hold the same instants.
_PRECISION = re.compile(r"^(timestamp|time)\(\d+\)")
NAIVE_TIMESTAMP = "timestamp without time zone"


class ExtractionError(RuntimeError):
    """A table cannot be extracted as declared; the message names table and column."""


class SchemaDriftError(ExtractionError):
    """A source column changed type since the warehouse last loaded it."""


def base_type(source_type: str) -> str:
    """``source_type`` without a time precision: ``timestamp(3) with time zone`` is ``timestamp with time zone``."""
    return _PRECISION.sub(r"\1", source_type)


def is_naive_timestamp(source_type: str) -> bool:
    return base_type(source_type) == NAIVE_TIMESTAMP


def warehouse_type(source_type: str) -> str | None:
    """The exact DuckDB type for a PostgreSQL type, or None if there is none.

    ``numeric(p,s)`` becomes ``DECIMAL(p,s)`` (never a float). Unconstrained
    ``numeric`` and precisions over 38 have none: the postgres extension reads
    them as DOUBLE, which would silently round, so they are refused by name.
    """
    if source_type.endswith("[]"):
        inner = warehouse_type(source_type[:-2])
        return f"{inner}[]" if inner else None
    source_type = base_type(source_type)
    if source_type.startswith(("character varying", "character(")) or source_type == "character":
        return "VARCHAR"
    if source_type.startswith("numeric"):
        if "(" not in source_type:
            return None
        precision, scale = (int(x) for x in source_type[source_type.index("(") + 1 : -1].split(","))
        return f"DECIMAL({precision},{scale})" if precision <= 38 else None
    return SCALAR_TYPES.get(source_type)


@dataclass(frozen=True)
class PlannedColumn:
    """How one source column lands in the warehouse."""

    name: str
    source_type: str
    rule: str | None
    expression: str | None  # None: dropped by the privacy policy
    warehouse_type: str | None
    ordinal: int


def plan_columns(table: SourceTable, columns: list[SourceColumn]) -> list[PlannedColumn]:
    """Apply the type map and the privacy policy to the source's columns.

    Refuses, in one line naming the table and its declaration, a table the
    source lacks, a declared event time or cursor the source table lacks, and
    a column with no exact warehouse type.
    """
    problem = table.undeclarable({c.name for c in columns})
    if problem:
        raise ExtractionError(problem)
    planned = []
    for col in columns:
        rule = privacy.rule(table.database, table.name, col.name)
        wtype = warehouse_type(col.type)
        if wtype is None and rule != "drop":
            raise ExtractionError(f"{table.key}.{col.name}: no exact warehouse type for {col.type!r}, so the table is "
                                  f"not extracted (declared in {table.declaration}); a column nobody needs can be "
                                  f"dropped by a rule in pipelines/privacy.toml")
        source = col.name
        if rule is None and is_naive_timestamp(col.type):
            selected = (f"timezone('UTC', {privacy.quote(col.name)})", "TIMESTAMPTZ")
        else:
            selected = privacy.select_expression(rule, source, wtype or "VARCHAR")
        planned.append(PlannedColumn(col.name, col.type, rule, selected[0] if selected else None,
                                     selected[1] if selected else None, col.ordinal))
    return planned


def instant(planned: list[PlannedColumn], names: tuple[str, ...]) -> str:
    """SQL for the first non-null of ``names`` as read from the source (naive timestamps as UTC)."""
    by_name = {p.name: p for p in planned}
    parts = [f"timezone('UTC', {privacy.quote(n)})" if is_naive_timestamp(by_name[n].source_type) else privacy.quote(n)
             for n in names]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


@dataclass
class LoadResult:
    """What one extraction did, for metadata and checks."""

    table: SourceTable
    rows_written: int = 0
    rows_deleted: int = 0
    rows_total: int = 0  # warehouse rows after the load
    source_rows: int = 0  # source rows in scope (table or window), in the run's snapshot
    warehouse_rows: int = 0  # warehouse rows in the same scope after the load
    duplicate_keys: int = 0  # rows in scope sharing a primary key
    window: tuple[dt.datetime, dt.datetime] | None = None
    watermark: dt.datetime | None = None
    added_columns: list[str] = field(default_factory=list)
    columns: list[PlannedColumn] = field(default_factory=list)
    snapshot_id: str = ""
    seconds: float = 0.0


def target_name(table: SourceTable) -> str:
    return f"{RAW_SCHEMAS[table.database]}.{privacy.quote(table.name)}"


def _sync_schema(con: duckdb.DuckDBPyConnection, table: SourceTable, planned: list[PlannedColumn]) -> list[str]:
    """Create the warehouse table, add new source columns, refuse changed types."""
    recorded_rows = con.execute(
        f"SELECT column_name, source_type, warehouse_type FROM {META_SCHEMA}.source_columns "
        f"WHERE database = $db AND table_name = $t", {"db": table.database, "t": table.name}).fetchall()
    recorded = {name: source for name, source, _ in recorded_rows}
    recorded_wtype = {name: wtype for name, _, wtype in recorded_rows}
    target = target_name(table)
    kept = [p for p in planned if p.expression is not None]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMAS[table.database]}")
    added: list[str] = []
    if not recorded:
        body = ", ".join(f"{privacy.quote(p.name)} {p.warehouse_type}" for p in kept)
        con.execute(f"CREATE TABLE IF NOT EXISTS {target} ({body})")
    else:
        for p in planned:
            old = recorded.get(p.name)
            # Only a change of what the warehouse holds is drift: varchar(20) -> varchar(50) or
            # timestamptz -> timestamptz(6) keeps the warehouse column as it is.
            was = recorded_wtype.get(p.name)
            if old is not None and was is not None and p.warehouse_type is not None and was != p.warehouse_type:
                raise SchemaDriftError(f"{table.key}.{p.name}: source type changed from {old} to {p.source_type}; "
                                       f"migrate the warehouse table before extracting it again")
            if old is None and p.expression is not None:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {privacy.quote(p.name)} {p.warehouse_type}")
                added.append(p.name)
    current = {p.name: p.source_type for p in planned}
    if current.items() <= recorded.items() and added == []:
        return added  # nothing changed: skip rewriting the bookkeeping
    # A column dropped at the source keeps its warehouse column (history) and its record.
    rows = [(p.name, p.source_type, p.warehouse_type, p.ordinal) for p in planned]
    rows += [(name, old, None, 10_000 + i) for i, (name, old) in enumerate(recorded.items()) if name not in current]
    con.execute(f"DELETE FROM {META_SCHEMA}.source_columns WHERE database = $db AND table_name = $t",
                {"db": table.database, "t": table.name})
    con.execute(f"INSERT INTO {META_SCHEMA}.source_columns SELECT $db, $t, UNNEST($names), UNNEST($types), "
                f"UNNEST($wtypes), UNNEST($ordinals)",
                {"db": table.database, "t": table.name, "names": [r[0] for r in rows], "types": [r[1] for r in rows],
                 "wtypes": [r[2] for r in rows], "ordinals": [r[3] for r in rows]})
    return added


def _params(sql: str, values: dict) -> dict:
    """Only the named parameters ``sql`` uses (DuckDB rejects unused ones)."""
    return {k: v for k, v in values.items() if f"${k}" in sql}


def _run(con: duckdb.DuckDBPyConnection, sql: str, values: dict) -> int:
    row = con.execute(sql, _params(sql, values)).fetchone()
    return int(row[0]) if row else 0


def extract_table(
    con: duckdb.DuckDBPyConnection,
    table: SourceTable,
    snapshot: Snapshot,
    *,
    alias: str,
    pseudonym_key: str,
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> LoadResult:
    """Load ``table`` from the source attached as ``alias`` into the raw layer.

    ``window`` (UTC, end exclusive) is required for daily tables and is the
    partition (or backfill range) to replace.
    """
    if table.partitioned and window is None:
        raise ExtractionError(f"{table.key}: a daily table is loaded one window at a time; pass window=(start, end)")
    began = time.perf_counter()
    result = LoadResult(table=table, window=window if table.partitioned else None, snapshot_id=snapshot.id)
    con.execute("BEGIN TRANSACTION")
    try:
        use_snapshot(con, alias, snapshot.id)
        planned = plan_columns(table, snapshot.columns(table.name))
        result.columns = planned
        keys = snapshot.primary_key(table.name)
        if len(keys) != 1 or any(p.name == keys[0] and p.rule for p in planned):
            raise ExtractionError(f"{table.key}: needs a single-column primary key the privacy policy leaves alone, has {keys}")
        key = privacy.quote(keys[0])
        result.added_columns = _sync_schema(con, table, planned)
        kept = [p for p in planned if p.expression is not None]
        names = ", ".join(privacy.quote(p.name) for p in kept)
        exprs = ", ".join(f"{p.expression} AS {privacy.quote(p.name)}" for p in kept)
        source = f"{alias}.public.{privacy.quote(table.name)}"
        target = target_name(table)
        values: dict = {"key": pseudonym_key}
        scope = ""

        if table.load == "full":
            result.rows_deleted = _run(con, f"DELETE FROM {target}", values)
            result.rows_written = _run(con, f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {source}", values)
            result.source_rows = snapshot.count(table.name)

        elif table.load == "incremental":
            cursor_expr = instant(planned, table.cursor)
            watermark = con.execute(f"SELECT watermark FROM {META_SCHEMA}.cursors WHERE database = $db AND table_name = $t",
                                    {"db": table.database, "t": table.name}).fetchone()
            if result.added_columns:
                watermark = None  # a new column: read every row once, so old rows get its values too
            where = ""
            if watermark and watermark[0] is not None:
                values["since"] = watermark[0] - dt.timedelta(minutes=table.lookback_minutes)
                # Rows with no cursor value at all cannot be ordered: they are read every time.
                where = f" WHERE {cursor_expr} >= $since OR {cursor_expr} IS NULL"
            batch = f"CREATE OR REPLACE TEMP TABLE __batch AS SELECT {exprs}, {cursor_expr} AS __cursor FROM {source}{where}"
            con.execute(batch, _params(batch, values))
            _run(con, f"DELETE FROM {target} WHERE {key} IN (SELECT {key} FROM __batch)", values)
            result.rows_written = _run(con, f"INSERT INTO {target} ({names}) SELECT {names} FROM __batch", values)
            if table.reconcile_deletes:
                result.rows_deleted = _run(con, f"DELETE FROM {target} WHERE {key} NOT IN (SELECT {key} FROM {source})", values)
            # Rows are ordered by (cursor, primary key): the last one is the new watermark.
            latest = con.execute(f"SELECT __cursor, CAST({key} AS VARCHAR) FROM __batch WHERE __cursor IS NOT NULL "
                                 f"ORDER BY __cursor DESC, {key} DESC LIMIT 1").fetchone()
            if latest:
                # Never past the source's own clock: one row stamped in the future (clock skew, a fix-up
                # script) must not move the watermark beyond updates still to come.
                latest = (min(latest[0], snapshot.started_at), latest[1])
            if latest and (not watermark or watermark[0] is None or latest[0] >= watermark[0]):
                con.execute(f"INSERT OR REPLACE INTO {META_SCHEMA}.cursors VALUES ($db, $t, $w, $k, now())",
                            {"db": table.database, "t": table.name, "w": latest[0], "k": latest[1]})
            result.watermark = latest[0] if latest else (watermark[0] if watermark else None)
            con.execute("DROP TABLE __batch")
            result.source_rows = snapshot.count(table.name)

        else:
            start, end = window
            if any(p.name in table.event_time and p.source_type == "date" for p in planned):
                start, end = start.date(), end.date()
            values |= {"start": start, "end": end}
            # In the warehouse every event time is an instant already; at the source a naive one is UTC.
            event = "coalesce(" + ", ".join(privacy.quote(c) for c in table.event_time) + ")"
            scope = f" WHERE {event} >= $start AND {event} < $end"
            read = instant(planned, table.event_time)
            result.rows_deleted = _run(con, f"DELETE FROM {target}{scope}", values)
            result.rows_written = _run(con, f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {source} "
                                            f"WHERE {read} >= $start AND {read} < $end", values)
            result.source_rows = snapshot.count(table.name, table.event_time, start, end)

        in_scope = scope.replace(" WHERE ", "", 1) or "true"
        counts = f"""SELECT count(*) FILTER (WHERE {in_scope}), count(*) FILTER (WHERE {in_scope})
                             - count(DISTINCT {key}) FILTER (WHERE {in_scope}), count(*) FROM {target}"""
        result.warehouse_rows, result.duplicate_keys, result.rows_total = con.execute(counts, _params(counts, values)).fetchone()
        con.execute(f"INSERT INTO {META_SCHEMA}.loads VALUES ($db, $t, $load, $ws, $we, $w, $d, now())",
                    {"db": table.database, "t": table.name, "load": table.load,
                     "ws": window[0] if window else None, "we": window[1] if window else None,
                     "w": result.rows_written, "d": result.rows_deleted})
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result.seconds = time.perf_counter() - began
    return result


def event_days(snapshot: Snapshot, tables: list[SourceTable], before: dt.date, skipped=None) -> list[dt.date]:
    """The first and last day with an event before ``before`` in each daily table: the UTC day of its event time
    (a date column's own day). A table that cannot load as declared gives ``skipped`` its one line and no day."""
    days: list[dt.date] = []
    for table in tables:
        columns = snapshot.columns(table.name)
        if problem := table.undeclarable({c.name for c in columns}):
            if skipped:
                skipped(problem)
            continue
        # Bound by a date for date columns (usage_date), by a timestamp for time columns.
        is_date = any(c.name in table.event_time and c.type == "date" for c in columns)
        bound = before if is_date else dt.datetime.combine(before, dt.time(0), dt.UTC)
        days += [v if is_date else v.astimezone(dt.UTC).date()
                 for v in snapshot.bounds(table.name, table.event_time, bound) if v is not None]
    return days


def extract_tables(path, urls: dict[str, str], tables, *, pseudonym_key: str,
                   windows: dict[str, tuple[dt.datetime, dt.datetime]] | None = None) -> dict[str, LoadResult]:
    """Extract ``tables`` into the warehouse at ``path``, one snapshot per database, as one run does.

    ``windows`` gives each daily table's window by ``database.table`` (outside
    Dagster: scripts, benchmarks, tests).
    """
    snapshots = {db: Snapshot(url) for db, url in urls.items()}
    results: dict[str, LoadResult] = {}
    try:
        with warehouse.connect(path) as con:
            for db, url in urls.items():
                warehouse.attach_source(con, f"src_{db}", url)
            for table in tables:
                window = (windows or {}).get(table.key) if table.partitioned else None
                results[table.key] = extract_table(con, table, snapshots[table.database], alias=f"src_{table.database}",
                                                   pseudonym_key=pseudonym_key, window=window)
    finally:
        for snapshot in snapshots.values():
            snapshot.close()
    return results
