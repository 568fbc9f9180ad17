"""Extraction: copy operational tables into the DuckDB raw layer.

A table's load reads PostgreSQL through the postgres extension, as of the
run's exported snapshot, and writes the rows, the schema bookkeeping, the
cursor and the captured snapshot in one DuckDB transaction, which the tables
of a source share (:func:`load_source`): a run killed at any point leaves the
last committed state intact. Three strategies (see
``source_tables.toml``):

- ``full``: replace the table (rows deleted at the source disappear);
- ``incremental``: read the rows written since the previous load, replace
  them by primary key, then compare the key sets: keys missing from the
  warehouse are reloaded (``rows_repaired``) and, with ``reconcile_deletes``,
  keys gone at the source are dropped;
- ``daily``: replace one window of event time (a day, or a backfill range).

Full and incremental loads record the source snapshot they read
(``pg_current_snapshot()``, in ``_warehouse.captures``). Incremental tables
find their changed rows by transaction, not by clock (:func:`capture_plan`):
the rows whose ``xmin`` (the transaction that wrote that row version) is at or
after the recorded snapshot's ``xmin``, however their timestamps were stamped.
A whole read ("full reconciliation") replaces that when there is no usable
record: the first load, columns, policy or key changed, transaction ids too
far apart to compare as 32-bit ``xmin`` (wraparound) or gone backwards. Only a
server without ``pg_current_snapshot()`` (PostgreSQL before 13) falls back to
the declared cursor: rows stamped at or after the watermark minus
``lookback_minutes``. Before loading, :func:`unchanged` spares the full and
incremental tables no transaction touched since their previous load (one
query for all of them; nothing is written, so there is nothing to commit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb

from pipelines import privacy
from pipelines.bookkeeping import Books
from pipelines.postgres import Snapshot, SourceColumn, XidSnapshot
from pipelines.source_tables import SourceTable
from pipelines import warehouse
from pipelines.warehouse import RAW_SCHEMAS, use_snapshot

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
    rule: str  # privacy.RULES, or privacy.WITHHELD when the policy does not classify it (not read)
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
        if wtype is None and privacy.is_read(rule):
            raise ExtractionError(f"{table.key}.{col.name}: no exact warehouse type for {col.type!r}, so the table is "
                                  f"not extracted (declared in {table.declaration}); a column nobody needs can be "
                                  f"dropped by a rule in pipelines/privacy.toml")
        source = col.name
        if rule == "copy" and is_naive_timestamp(col.type):
            selected = (f"timezone('UTC', {privacy.quote(col.name)})", "TIMESTAMPTZ")
        else:
            selected = privacy.select_expression(rule, source, wtype or "VARCHAR")
        planned.append(PlannedColumn(col.name, col.type, rule, selected[0] if selected else None,
                                     selected[1] if selected else None, col.ordinal))
    return planned


def key_problem(table: SourceTable, planned: list[PlannedColumn], keys: list[str]) -> str | None:
    """Why the source's primary key ``keys`` cannot be the table's merge key, or None: loads merge and reconcile on
    one column, copied as it is (a hashed or withheld key could not be compared with the source's)."""
    if len(keys) != 1 or any(p.name == keys[0] and p.rule != "copy" for p in planned):
        return f"{table.key}: needs a single-column primary key the privacy policy leaves alone, has {keys or 'none'}"
    return None


def instant(planned: list[PlannedColumn], names: tuple[str, ...]) -> str:
    """SQL for the first non-null of ``names`` as read from the source (naive timestamps as UTC)."""
    by_name = {p.name: p for p in planned}
    parts = [f"timezone('UTC', {privacy.quote(n)})" if is_naive_timestamp(by_name[n].source_type) else privacy.quote(n)
             for n in names]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


XID_WRAP = 2**32  # xmin is the low 32 bits of a 64-bit transaction id
# Past this distance between the recorded snapshot and the current one, a 32-bit xmin no longer says on which
# side of the recorded snapshot its row was written (PostgreSQL itself compares xids within 2^31).
XID_HORIZON = 2**31
CAPTURE_XMIN = "xmin"
FULL_RECONCILIATION = "full reconciliation"
CURSOR_FALLBACK = "cursor fallback"


@dataclass(frozen=True)
class Capture:
    """How an incremental load finds the rows changed since the previous load.

    ``xmin``: rows whose row version was written by a transaction from ``since`` (the recorded snapshot's
    ``xmin``: the oldest transaction still running then) up to ``until`` (the current snapshot's ``xmax``).
    Reading from the recorded ``xmin`` rather than "not visible in the recorded snapshot" is deliberate: a
    ``pg_snapshot`` lists running top-level transactions only, so a row written in a subtransaction (a
    savepoint) of a transaction that was running would look visible and be missed.
    """

    mode: str
    reason: str = ""
    since: int = 0  # 64-bit transaction ids
    until: int = 0

    def __str__(self) -> str:
        return f"{self.mode}: {self.reason}" if self.reason else self.mode

    def source_filter(self) -> str:
        """PostgreSQL condition on the system column ``xmin`` selecting the rows written in ``[since, until)``.

        ``xmin`` has 32 bits: it is placed relative to ``since`` modulo 2^32, exact while ``until - since`` is
        below 2^32 (:func:`capture_plan` keeps it below 2^31). Ids below 3 (bootstrap, frozen) are old rows. The
        numbers are ints computed here, never text from elsewhere, as ``postgres_query`` takes SQL, not parameters.
        """
        low, span = int(self.since) % XID_WRAP, int(self.until) - int(self.since)
        return f"xmin::text::bigint >= 3 AND mod(xmin::text::bigint - {low} + {XID_WRAP}, {XID_WRAP}) < {span}"


def capture_plan(previous: str | None, current: XidSnapshot | None) -> Capture:
    """How to find the rows changed since the load that recorded ``previous`` (a ``pg_snapshot`` as text), the
    source now being at ``current`` (None: the server has no ``pg_current_snapshot()``).

    A pure function, so wraparound can be tested without consuming four billion transaction ids: a recorded
    snapshot from more than one epoch ago, 2^31 or more ids away, or ahead of the source (restored from a
    backup, or another server) gives a full reconciliation with the reason.
    """
    if current is None:
        return Capture(CURSOR_FALLBACK, "the source server has no pg_current_snapshot() (PostgreSQL before 13)")
    if previous is None:
        return Capture(FULL_RECONCILIATION, "no source snapshot recorded for this table yet")
    try:
        before = XidSnapshot.parse(previous)
    except ValueError:
        return Capture(FULL_RECONCILIATION, f"the recorded source snapshot {previous!r} is not a pg_snapshot")
    if current.xmax < before.xmin:
        return Capture(FULL_RECONCILIATION, f"transaction ids went back from {before.xmin} (epoch {before.epoch}) to "
                                            f"{current.xmax} (epoch {current.epoch}) since the previous load (the "
                                            f"source restored or replaced?)")
    if current.epoch - before.epoch > 1:
        return Capture(FULL_RECONCILIATION, f"the transaction-id epoch went from {before.epoch} to {current.epoch} "
                                            f"since the previous load (wraparound)")
    if current.xmax - before.xmin >= XID_HORIZON:
        return Capture(FULL_RECONCILIATION, f"{current.xmax - before.xmin:,} transaction ids since the previous "
                                            f"load, 2^31 or more: a 32-bit xmin cannot be placed (wraparound)")
    return Capture(CAPTURE_XMIN, since=before.xmin, until=current.xmax)


def plan_fingerprint(planned: list[PlannedColumn], pseudonym_key: str) -> str:
    """What the rows of a table were read with: its source columns and types, their rules and expressions
    (privacy policy), keyed by the pseudonym key (an HMAC: it changes with the key and tells nothing about it).
    Rows loaded under another fingerprint are read again whole, so no row keeps an old column set, rule or
    pseudonym, and a table is never skipped as unchanged past a change of its schema."""
    text = "\n".join(f"{p.name}\t{p.source_type}\t{p.rule}\t{p.expression}\t{p.warehouse_type}" for p in planned)
    return hmac.new(pseudonym_key.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


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
    rows_repaired: int = 0  # incremental: source keys the warehouse lacked after reading the changes, reloaded
    rows_kept: int = 0  # incremental without reconcile_deletes: warehouse keys gone at the source, kept
    capture: str = ""  # incremental: how the changed rows were found (str of Capture)
    window: tuple[dt.datetime, dt.datetime] | None = None
    watermark: dt.datetime | None = None
    added_columns: list[str] = field(default_factory=list)
    tightened: list[str] = field(default_factory=list)  # columns whose loaded values a changed rule rewrote or removed
    loosened: list[str] = field(default_factory=list)  # columns a changed (or first) rule reloaded from the source
    columns: list[PlannedColumn] = field(default_factory=list)
    snapshot_id: str = ""
    seconds: float = 0.0

    @property
    def withheld(self) -> list[tuple[str, str]]:
        """``(column, source type)`` of the source columns the policy does not classify: not read."""
        return [(p.name, p.source_type) for p in self.columns if p.rule == privacy.WITHHELD]


def target_name(table: SourceTable) -> str:
    return f"{RAW_SCHEMAS[table.database]}.{privacy.quote(table.name)}"


@dataclass
class _SchemaChange:
    """What :func:`_sync_schema` changed in a warehouse table."""

    added: list[str] = field(default_factory=list)  # new at the source, read from now on
    tightened: list[str] = field(default_factory=list)
    loosened: list[str] = field(default_factory=list)
    refill: list[PlannedColumn] = field(default_factory=list)  # to read again for the rows already loaded


def _sync_schema(con: duckdb.DuckDBPyConnection, table: SourceTable, planned: list[PlannedColumn],
                 books: Books) -> _SchemaChange:
    """Create the warehouse table, add new source columns, refuse changed types, and apply changed privacy rules
    to what was loaded.

    Each column's rule is recorded with it. A column loaded under another rule is removed (now dropped or
    withheld) or emptied and listed in ``refill`` (now copied, hashed, coarsened or measured): every row already
    loaded gets it again from the source, so nothing keeps an old rule's values. A column recorded with no rule was
    loaded before rules were recorded, under ``copy``.
    """
    recorded_rows = books.columns.get(table.name, [])
    recorded = {c.name: c.source_type for c in recorded_rows}
    recorded_wtype = {c.name: c.warehouse_type for c in recorded_rows}
    recorded_rule = {c.name: c.rule for c in recorded_rows}
    target = target_name(table)
    schema = RAW_SCHEMAS[table.database]
    present = set(warehouse.table_columns(con, schema, table.name))
    kept = [p for p in planned if p.expression is not None]
    # Refused before anything is changed, so the table's load leaves its transaction as it found it (load_source
    # goes on with the other tables of the transaction).
    for p in planned:
        # Only a change of what the warehouse holds is drift: varchar(20) -> varchar(50) or
        # timestamptz -> timestamptz(6) keeps the warehouse column as it is.
        if (p.name in present and privacy.is_read(p.rule) and (recorded_rule.get(p.name) or "copy") == p.rule
                and (was := recorded_wtype.get(p.name)) is not None and was != p.warehouse_type):
            raise SchemaDriftError(f"{table.key}.{p.name}: source type changed from {recorded[p.name]} to "
                                   f"{p.source_type}; migrate the warehouse table before extracting it again")
    change = _SchemaChange()
    if not present:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        body = ", ".join(f"{privacy.quote(p.name)} {p.warehouse_type}" for p in kept)
        con.execute(f"CREATE TABLE IF NOT EXISTS {target} ({body})")
    else:
        for p in planned:
            column = privacy.quote(p.name)
            if p.name in present:
                was_rule = recorded_rule.get(p.name) or "copy"
                if not privacy.is_read(p.rule):
                    con.execute(f"ALTER TABLE {target} DROP COLUMN {column}")
                    change.tightened.append(p.name)
                elif was_rule != p.rule:
                    con.execute(f"ALTER TABLE {target} DROP COLUMN {column}")
                    con.execute(f"ALTER TABLE {target} ADD COLUMN {column} {p.warehouse_type}")
                    change.refill.append(p)
                    (change.tightened if privacy.reveals_more(p.rule, was_rule) else change.loosened).append(p.name)
            elif p.expression is not None:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {column} {p.warehouse_type}")
                change.refill.append(p)
                # Known before but not read (dropped, withheld): classified or loosened now.
                (change.loosened if p.name in recorded else change.added).append(p.name)
    current = {p.name: p.source_type for p in planned}
    if (current.items() <= recorded.items() and all(recorded_rule.get(p.name) == p.rule for p in planned)
            and not (change.added or change.tightened or change.loosened)):
        return change  # nothing changed: skip rewriting the bookkeeping
    # A column dropped at the source keeps its warehouse column (history) and its record.
    rows = [(p.name, p.source_type, p.warehouse_type if p.expression is not None else None, p.ordinal, p.rule)
            for p in planned]
    rows += [(name, old, recorded_wtype.get(name), 10_000 + i, recorded_rule.get(name))
             for i, (name, old) in enumerate(recorded.items()) if name not in current]
    books.record_columns(table.name, rows)
    return change


def _refill(con: duckdb.DuckDBPyConnection, target: str, source: str, key: str, columns: list[PlannedColumn],
            values: dict) -> None:
    """Read ``columns`` again from the source for every row the warehouse holds, by primary key (a changed privacy
    rule applies to every day already loaded, not only the window this load reads). Rows gone at the source keep
    no value."""
    sets = ", ".join(f"{privacy.quote(p.name)} = __src.{privacy.quote(p.name)}" for p in columns)
    exprs = ", ".join(f"{p.expression} AS {privacy.quote(p.name)}" for p in columns)
    statement = (f"UPDATE {target} AS __t SET {sets} FROM (SELECT {key} AS __key, {exprs} FROM {source}) AS __src "
                 f"WHERE __t.{key} = __src.__key")
    con.execute(statement, _params(statement, values))


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
    own_transaction: bool = True,
    books: Books | None = None,
) -> LoadResult:
    """Load ``table`` from the source attached as ``alias`` into the raw layer.

    ``window`` (UTC, end exclusive) is required for daily tables and is the
    partition (or backfill range) to replace. The load is one transaction of
    its own, or, with ``own_transaction=False``, part of the caller's (open,
    reading ``alias`` as of ``snapshot``: :func:`load_source`). An
    :class:`ExtractionError` is raised before the table is changed.

    ``books``: the source's bookkeeping, read by the caller. What the load
    records in it is written by whoever commits: the caller
    (:func:`load_source`), or this load in a transaction of its own. Without
    it the load reads its own.
    """
    if table.partitioned and window is None:
        raise ExtractionError(f"{table.key}: a daily table is loaded one window at a time; pass window=(start, end)")
    began = time.perf_counter()
    result = LoadResult(table=table, window=window if table.partitioned else None, snapshot_id=snapshot.id)
    if own_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        if own_transaction:
            use_snapshot(con, alias, snapshot.id)
        own_books = books is None
        if own_books:
            books = Books.read(con, table.database)
        planned = plan_columns(table, snapshot.columns(table.name))
        result.columns = planned
        keys = snapshot.primary_key(table.name)
        if problem := key_problem(table, planned, keys):
            raise ExtractionError(problem)
        key = privacy.quote(keys[0])
        change = _sync_schema(con, table, planned, books)
        result.added_columns, result.tightened, result.loosened = change.added, change.tightened, change.loosened
        kept = [p for p in planned if p.expression is not None]
        names = ", ".join(privacy.quote(p.name) for p in kept)
        exprs = ", ".join(f"{p.expression} AS {privacy.quote(p.name)}" for p in kept)
        source = f"{alias}.public.{privacy.quote(table.name)}"
        target = target_name(table)
        values: dict = {"key": pseudonym_key}
        scope = ""
        if change.refill and table.load == "daily":
            # Full tables are replaced and incremental ones read whole (their plan changed) below; the days of a
            # daily table outside this window are filled here.
            _refill(con, target, source, key, change.refill, values)

        if table.load == "full":
            result.rows_deleted = _run(con, f"DELETE FROM {target}", values)
            result.rows_written = _run(con, f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {source}", values)
            result.source_rows = snapshot.count(table.name)
            books.record_capture(table.name, snapshot.xids, plan_fingerprint(planned, pseudonym_key))  # see unchanged()

        elif table.load == "incremental":
            _load_changes(con, table, snapshot, result, planned, key=key, source=source, alias=alias, values=values,
                          fingerprint=plan_fingerprint(planned, pseudonym_key), books=books)

        else:
            start, end = window
            by_date = any(p.name in table.event_time and p.source_type == "date" for p in planned)
            if by_date:
                start, end = start.date(), end.date()
            values |= {"start": start, "end": end}
            # In the warehouse every event time is an instant already; at the source a naive one is UTC.
            event = "coalesce(" + ", ".join(privacy.quote(c) for c in table.event_time) + ")"
            scope = f" WHERE {event} >= $start AND {event} < $end"
            result.rows_deleted = _run(con, f"DELETE FROM {target}{scope}", values)
            # The first non-null of the event times, as one branch per column: "a in the window", "a is null and b
            # in the window", ... Each branch is a plain comparison PostgreSQL can serve from an index, where
            # coalesce(a, b) would have the whole table sent over to be filtered here.
            branches = []
            for i, column in enumerate(table.event_time):
                read = instant(planned, (column,))
                earlier = "".join(f"{privacy.quote(c)} IS NULL AND " for c in table.event_time[:i])
                branches.append(f"{earlier}{read} >= $start AND {read} < $end")
            if len(branches) == 1 or by_date:
                # One column (or dates, which _at_source does not spell): table scans the extension hands to
                # PostgreSQL with the bounds as parameters.
                read_window = " UNION ALL ".join(f"SELECT {exprs} FROM {source} WHERE {b}" for b in branches)
            else:
                # Several: one query at the source with the branches joined by OR, one scan where the extension
                # would make one per branch (without indexes on the columns, three sequential scans of
                # analytics_game_attempts; with them, PostgreSQL combines the index scans itself).
                values |= {"alias": alias, "query": _source_query(
                    table, kept, table.event_time, " OR ".join(f"({_at_source(b, start, end)})" for b in branches))}
                read_window = f"SELECT {exprs} FROM postgres_query($alias, $query)"
            result.rows_written = _run(con, f"INSERT INTO {target} ({names}) {read_window}", values)
            result.source_rows = snapshot.count(table.name, table.event_time, start, end)

        if table.load != "incremental":  # _load_changes counted its table already
            _count(con, result, target, key, scope, values)
        books.record_load(table.name, table.load, window, written=result.rows_written, deleted=result.rows_deleted,
                          repaired=result.rows_repaired, capture=result.capture or None)
        if own_books or own_transaction:
            books.write(con)
        if own_transaction:
            con.execute("COMMIT")
    except BaseException:
        if own_transaction:
            warehouse.rollback(con)
        raise
    result.seconds = time.perf_counter() - began
    return result


def _source_query(table: SourceTable, kept: list[PlannedColumn], also: tuple[str, ...], condition: str) -> str:
    """PostgreSQL text for ``postgres_query``: the columns ``kept`` reads (their privacy expressions apply in
    DuckDB, over its result) and ``also`` of ``table`` where ``condition`` holds. Used where the extension's
    table scan cannot say it: a system column (``xmin``), or one filter over several columns."""
    read = ", ".join(privacy.quote(c) for c in dict.fromkeys([p.name for p in kept] + list(also)))
    return f"SELECT {read} FROM public.{privacy.quote(table.name)} WHERE {condition}"


def _at_source(condition: str, start: dt.datetime, end: dt.datetime) -> str:
    """``condition`` (a window branch: ``$start`` / ``$end`` for the bounds, DuckDB's ``timezone('UTC', c)`` for a
    naive column, which PostgreSQL spells the same) as PostgreSQL text for ``postgres_query``, which takes no
    parameters: each bound becomes ``to_timestamp(<microseconds since the epoch> / 1000000.0)``, an integer
    computed here from a datetime, never text from elsewhere (exact to the microsecond: tests/test_extract.py)."""
    def bound(instant: dt.datetime) -> str:
        if instant.tzinfo is None:
            raise ValueError(f"a window bound must be an aware datetime (UTC), got {instant!r}")
        micros = (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        return f"to_timestamp({int(micros)} / 1000000.0)"
    return condition.replace("$start", bound(start)).replace("$end", bound(end))


def _duplicates(key: str, *, rows: str = "count(*)", key_of: str = "") -> str:
    """SQL for the rows sharing a primary key with another (a row with a NULL key counts among them): ``rows``
    minus the distinct keys. The ``matches_source`` check fails on any."""
    return f"{rows} - count(DISTINCT {key_of}{key})"


def _count(con: duckdb.DuckDBPyConnection, result: LoadResult, target: str, key: str, scope: str, values: dict) -> None:
    """Count, for the ``matches_source`` check, the warehouse's rows in the load's scope (``scope``: a WHERE clause,
    or "" for the whole table), the duplicate keys among them and all its rows: counted after the load, never
    derived from what it wrote. One statement; the scope as a WHERE clause, which DuckDB prunes by its zone maps
    (a FILTER over every row took four times as long on the largest table)."""
    counts = f"SELECT count(*), {_duplicates(key)}, (SELECT count(*) FROM {target}) FROM {target}{scope}"
    result.warehouse_rows, result.duplicate_keys, result.rows_total = con.execute(counts, _params(counts, values)).fetchone()


def _load_changes(con: duckdb.DuckDBPyConnection, table: SourceTable, snapshot: Snapshot, result: LoadResult,
                  planned: list[PlannedColumn], *, key: str, source: str, alias: str, values: dict,
                  fingerprint: str, books: Books) -> None:
    """The incremental strategy, inside the table's transaction: merge the rows changed since the previous load
    (found as :func:`capture_plan` says), then make the key sets agree, count the table (:func:`_count`), and
    record the snapshot read and the cursor in ``books``.

    The key comparison reads the source's keys alone (one column, in the run's snapshot): source keys the
    warehouse lacks are reloaded and counted in ``rows_repaired``; warehouse keys gone at the source are
    deleted with ``reconcile_deletes`` and otherwise kept and counted in ``rows_kept``.
    """
    target = target_name(table)
    recorded = books.captures.get(table.name)
    capture = capture_plan(recorded[0] if recorded else None, snapshot.xids)
    if capture.mode == CAPTURE_XMIN and recorded[1] != fingerprint:
        # New columns at the source, another privacy rule or pseudonym key: every row is read once more.
        capture = Capture(FULL_RECONCILIATION, "the columns read, the privacy policy or the pseudonym key changed")
    result.capture = str(capture)
    kept = [p for p in planned if p.expression is not None]
    names = ", ".join(privacy.quote(p.name) for p in kept)
    exprs = ", ".join(f"{p.expression} AS {privacy.quote(p.name)}" for p in kept)
    cursor_expr = instant(planned, table.cursor)
    origin, condition = source, ""
    watermark = books.watermarks.get(table.name)
    if capture.mode == CAPTURE_XMIN:
        # The extension's table scan cannot see system columns; postgres_query runs on the same connection, in
        # the same transaction, so it reads the run's snapshot too (tests/test_change_capture.py checks it).
        values |= {"alias": alias, "query": _source_query(table, kept, table.cursor, capture.source_filter())}
        origin = "postgres_query($alias, $query)"
    elif capture.mode == CURSOR_FALLBACK and not result.added_columns and watermark is not None:
        values["since"] = watermark - dt.timedelta(minutes=table.lookback_minutes)
        # Rows with no cursor value at all cannot be ordered: they are read every time.
        condition = f" WHERE {cursor_expr} >= $since OR {cursor_expr} IS NULL"
    batch = f"CREATE OR REPLACE TEMP TABLE __batch AS SELECT {exprs}, {cursor_expr} AS __cursor FROM {origin}{condition}"
    con.execute(batch, _params(batch, values))
    _run(con, f"DELETE FROM {target} WHERE {key} IN (SELECT {key} FROM __batch)", values)
    result.rows_written = _run(con, f"INSERT INTO {target} ({names}) SELECT {names} FROM __batch", values)

    if capture.mode == FULL_RECONCILIATION:
        con.execute(f"CREATE OR REPLACE TEMP TABLE __keys AS SELECT {key} FROM __batch")  # every source row
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE __keys AS SELECT {key} FROM {source}")
    # One statement asks everything the rest needs, in one pass over the table (a full join on the key; three
    # NOT IN subqueries took three times as long): the keys on either side only, the source's keys, the table's
    # counts (still true afterwards unless a key is deleted or repaired below) and the new watermark. The cursor
    # stays the fallback: rows are ordered by (cursor, primary key), the last one is the new watermark.
    last_row = f"FROM __batch WHERE __cursor IS NOT NULL ORDER BY __cursor DESC, {key} DESC LIMIT 1"
    (gone_rows, missing_rows, result.source_rows, result.rows_total, result.duplicate_keys, latest,
     latest_key) = con.execute(
        f"SELECT count(*) FILTER (WHERE __k.{key} IS NULL AND __t.{key} IS NOT NULL), "
        f"count(*) FILTER (WHERE __t.{key} IS NULL AND __k.{key} IS NOT NULL), (SELECT count(*) FROM __keys), "
        f"(SELECT count(*) FROM {target}), {_duplicates(key, rows=f'(SELECT count(*) FROM {target})', key_of='__t.')}, "
        f"(SELECT __cursor {last_row}), (SELECT CAST({key} AS VARCHAR) {last_row}) "
        f"FROM {target} AS __t FULL OUTER JOIN __keys AS __k ON __t.{key} = __k.{key}").fetchone()
    result.warehouse_rows = result.rows_total
    # As the counts above count them: a row whose key is NULL (written by hand) is neither gone nor in the way
    # of a repair (NOT IN would find nothing missing once one NULL is there).
    gone = f"FROM {target} WHERE {key} NOT IN (SELECT {key} FROM __keys)"
    missing = (f"SELECT {key} FROM __keys AS __k WHERE NOT EXISTS "
               f"(SELECT 1 FROM {target} AS __t WHERE __t.{key} = __k.{key})")
    if table.reconcile_deletes:
        result.rows_deleted = _run(con, f"DELETE {gone}", values) if gone_rows else 0
    else:
        result.rows_kept = gone_rows
    if missing_rows:
        # Rare (the warehouse edited by hand, a load from before change capture): the extension cannot push a key
        # list down to PostgreSQL, so this reads the source table whole, once.
        result.rows_repaired = _run(con, f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {source} "
                                         f"WHERE {key} IN ({missing})", values)
    if result.rows_deleted or result.rows_repaired:
        _count(con, result, target, key, "", values)

    if latest is not None:
        # Never past the source's own clock: one row stamped in the future (clock skew, a fix-up
        # script) must not move the watermark beyond updates still to come.
        latest = min(latest, snapshot.started_at)
        if watermark is None or latest >= watermark:
            books.record_cursor(table.name, latest, latest_key)
    result.watermark = latest if latest is not None else watermark
    books.record_capture(table.name, snapshot.xids, fingerprint)
    con.execute("DROP TABLE __batch; DROP TABLE __keys")


UNCHANGED = "xmin: no row written or deleted since the previous load"


def unchanged(con: duckdb.DuckDBPyConnection, tables: list[SourceTable], snapshot: Snapshot, *, alias: str,
              pseudonym_key: str, books: Books | None = None) -> dict[str, LoadResult]:
    """The results for those of ``tables`` (full and incremental, of the source attached as ``alias``) that no
    transaction changed since their previous load: nothing to load, nothing to commit.

    A table qualifies when its previous load recorded a snapshot that change capture can compare with
    (:func:`capture_plan` says ``xmin``) under the same columns, policy and key (:func:`plan_fingerprint`),
    no row at the source has an ``xmin`` since, the source and the warehouse hold as many rows (so nothing was
    deleted) and the warehouse no duplicate key. One query reads every candidate's counts at the source (in the
    run's snapshot) and one the warehouse's, so an unchanged table costs the run next to nothing. The recorded
    snapshot stays: the next load reads from it. Anything else, including a failure of these two queries, is
    left to :func:`extract_table`.
    """
    if snapshot.xids is None or not tables:
        return {}
    books = books or Books.read(con, tables[0].database)
    recorded = books.captures
    candidates = []
    for table in tables:
        if table.partitioned or table.name not in recorded:
            continue
        columns = snapshot.columns(table.name)
        keys = snapshot.primary_key(table.name)
        if table.undeclarable({c.name for c in columns}) or len(keys) != 1:
            continue
        try:
            planned = plan_columns(table, columns)
        except ExtractionError:
            continue  # extract_table says why, in the table's own result
        capture = capture_plan(recorded[table.name][0], snapshot.xids)
        if capture.mode == CAPTURE_XMIN and plan_fingerprint(planned, pseudonym_key) == recorded[table.name][1]:
            candidates.append((table, planned, privacy.quote(keys[0]), capture))
    if not candidates:
        return {}
    at_source = " UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n, count(*) FILTER (WHERE {capture.source_filter()}) AS changed "
        f"FROM public.{privacy.quote(table.name)}" for i, (table, _, _, capture) in enumerate(candidates))
    in_warehouse = " UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n, {_duplicates(key)} AS duplicates FROM {target_name(table)}"
        for i, (table, _, key, _) in enumerate(candidates))
    con.execute("BEGIN TRANSACTION")
    try:
        use_snapshot(con, alias, snapshot.id)
        source = {i: (n, changed) for i, n, changed in con.execute(
            "SELECT i, n, changed FROM postgres_query($alias, $query)", {"alias": alias, "query": at_source}).fetchall()}
        held = {i: (n, duplicates) for i, n, duplicates in con.execute(in_warehouse).fetchall()}
        con.execute("COMMIT")
    except duckdb.Error:
        warehouse.rollback(con)
        return {}  # a probe only: the tables load the ordinary way, and say what is wrong there
    results = {}
    for i, (table, planned, _, _) in enumerate(candidates):
        (rows, changed), (kept, duplicates) = source[i], held[i]
        if changed == 0 and rows == kept and duplicates == 0:
            results[table.key] = LoadResult(table=table, rows_total=kept, source_rows=rows, warehouse_rows=kept,
                                            columns=planned, snapshot_id=snapshot.id, capture=UNCHANGED,
                                            watermark=books.watermarks.get(table.name) if table.load == "incremental" else None)
    return results


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


COMMIT_ROWS = 100_000
"""A transaction of :func:`load_source` is committed after the table that brings the rows it wrote, deleted and
repaired to this many: a daily or incremental run of a source commits once, instead of once per table with the
snapshot set again at the source each time (a few percent of an incremental run, docs/scaling.md); a first load,
with millions of rows, still commits table by table, so a transaction's pending rows stay bounded."""


class LoadStopped(RuntimeError):
    """A load failed for a reason other than its table's declaration (the source went away, a value the warehouse
    cannot take, a commit refused): its transaction, with the other tables since the last commit, was rolled back.
    ``where`` names the table, or the tables whose commit failed."""

    def __init__(self, where: str, error: BaseException):
        self.where, self.error = where, error
        self.reason = (str(error).strip().splitlines() or [type(error).__name__])[0]  # its first line
        super().__init__(f"{where}: {self.reason}")


def _commit(con: duckdb.DuckDBPyConnection, tables: list[SourceTable], books: Books) -> None:
    """Write ``books`` and COMMIT the transaction holding ``tables``' loads; a refusal (a DuckLake conflict, the
    source gone) names them."""
    try:
        books.write(con)
        con.execute("COMMIT")
    except duckdb.Error as error:
        names = ", ".join(t.key for t in tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
        raise LoadStopped(f"commit of {names}", error) from error


def load_source(con: duckdb.DuckDBPyConnection, tables: list[SourceTable], snapshot: Snapshot, *, alias: str,
                pseudonym_key: str, windows: dict[str, tuple[dt.datetime, dt.datetime]] | None = None,
                ) -> Iterator[tuple[SourceTable, LoadResult | ExtractionError]]:
    """Load ``tables`` of the source attached as ``alias`` as of ``snapshot``, yielding each with its result once it
    is committed, or with the :class:`ExtractionError` that says why it was not loaded (the others go on).

    Tables no transaction touched since their last load are spared (:func:`unchanged`). The others share
    transactions, committed every ``COMMIT_ROWS`` rows and at the end; daily tables load ``windows[table.key]``.
    Any other failure, the commit's included, rolls back the open transaction and raises :class:`LoadStopped`
    naming the table (or the tables committed): what was committed before stays, nothing is half-written, and a
    re-run completes it.
    """
    databases = {t.database for t in tables}
    if len(databases) > 1:
        raise ValueError(f"load_source loads the tables of one source, got {sorted(databases)}")
    try:
        books = Books.read(con, tables[0].database) if tables else Books("")
    except duckdb.Error as error:
        raise LoadStopped(f"{tables[0].database}: reading _warehouse", error) from error
    try:
        spared = unchanged(con, [t for t in tables if not t.partitioned], snapshot, alias=alias,
                           pseudonym_key=pseudonym_key, books=books)
    except Exception:  # noqa: BLE001 - only a shortcut: the table's own load meets the error and says it
        spared = {}
    done: list[tuple[SourceTable, LoadResult | ExtractionError]] = []
    open_rows: int | None = None  # rows written, deleted and repaired in the open transaction; None: none is open
    try:
        for table in tables:
            if table.key in spared:
                done.append((table, spared[table.key]))
                continue
            try:
                if open_rows is None:
                    con.execute("BEGIN TRANSACTION")
                    open_rows = 0
                    use_snapshot(con, alias, snapshot.id)
                # By its module name, so that a test can stand in for it.
                result = extract_table(con, table, snapshot, alias=alias, pseudonym_key=pseudonym_key,
                                       window=(windows or {}).get(table.key) if table.partitioned else None,
                                       own_transaction=False, books=books)
            except ExtractionError as error:
                done.append((table, error))  # raised before the table was changed: the transaction goes on
                continue
            except Exception as error:
                raise LoadStopped(table.key, error) from error
            done.append((table, result))
            open_rows += result.rows_written + result.rows_deleted + result.rows_repaired
            if open_rows >= COMMIT_ROWS:
                _commit(con, _loaded(done), books)
                open_rows = None
                yield from done
                done = []
        if open_rows is not None:
            _commit(con, _loaded(done), books)
            open_rows = None
    except BaseException:
        if open_rows is not None:
            warehouse.rollback(con)
        raise
    yield from done


def _loaded(done: list[tuple[SourceTable, LoadResult | ExtractionError]]) -> list[SourceTable]:
    """The tables of ``done`` that were loaded (not spared, not refused): what a commit holds."""
    return [t for t, outcome in done if isinstance(outcome, LoadResult) and outcome.capture != UNCHANGED]


def extract_tables(path, urls: dict[str, str], tables, *, pseudonym_key: str,
                   windows: dict[str, tuple[dt.datetime, dt.datetime]] | None = None) -> dict[str, LoadResult]:
    """Extract ``tables`` into the warehouse at ``path``, one snapshot per database, as one run does
    (:func:`load_source`), and raise the first table's :class:`ExtractionError`, or the error that stopped a load,
    once the others are committed.

    ``windows`` gives each daily table's window by ``database.table`` (outside
    Dagster: scripts, benchmarks, tests).
    """
    tables = list(tables)
    snapshots = {db: Snapshot(url) for db, url in urls.items()}
    results: dict[str, LoadResult] = {}
    refused: list[ExtractionError] = []
    try:
        with warehouse.connect(path) as con:
            for db, url in urls.items():
                warehouse.attach_source(con, f"src_{db}", url)
                for table, outcome in load_source(con, [t for t in tables if t.database == db], snapshots[db],
                                                  alias=f"src_{db}", pseudonym_key=pseudonym_key, windows=windows):
                    if isinstance(outcome, ExtractionError):
                        refused.append(outcome)
                    else:
                        results[table.key] = outcome
    except LoadStopped as stopped:
        raise stopped.error from None
    finally:
        for snapshot in snapshots.values():
            snapshot.close()
    if refused:
        raise refused[0]
    return results
