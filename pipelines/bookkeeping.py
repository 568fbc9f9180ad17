"""The ``_warehouse`` bookkeeping of one source database's loads, read once, written in one go before each commit.

Four books sit beside the raw tables (``pipelines/warehouse.py`` has their DDL): the columns each table was
loaded with (``source_columns``), the source snapshot it was last read as of (``captures``), the cursor
watermark (``cursors``) and one row per load (``loads``). Each load used to read and write its own rows, eight
statements a table. A DuckDB statement with bound parameters costs 1-4 ms whatever it does (it is prepared,
then run), and an incremental run loads about 35 tables, so those statements were a fifth of its time
(``docs/scaling.md``). :class:`Books` reads the rows of every table of the source in one query per book, and
:meth:`Books.write` writes what the loads recorded in one statement or two per book, in the transaction that
holds the rows they describe, just before it commits.

Writes stay as before: one row per table in ``captures`` and ``cursors`` (DELETE, then INSERT; DuckLake takes
no primary key), one row appended to ``loads`` per load, and ``finished_at`` is the transaction's ``now()``,
as it was when the tables of a source began to share a transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from pipelines.postgres import XidSnapshot
from pipelines.warehouse import META_SCHEMA


@dataclass(frozen=True)
class RecordedColumn:
    """A column as ``source_columns`` recorded it at the table's last load."""

    name: str
    source_type: str
    warehouse_type: str | None
    rule: str | None  # None: loaded before rules were recorded, under "copy"


@dataclass
class Books:
    """What ``_warehouse`` records for the tables of ``database``, and the rows the loads of the open transaction
    will add (:meth:`write`).

    The object describes the open transaction once :meth:`write` or :meth:`record_columns` ran in it: after a
    rollback, or a COMMIT that failed, it is thrown away with the transaction and read again (``load_source``
    stops at the first such failure)."""

    database: str
    columns: dict[str, list[RecordedColumn]] = field(default_factory=dict)
    captures: dict[str, tuple[str, str]] = field(default_factory=dict)  # table -> (xid snapshot, plan)
    watermarks: dict[str, dt.datetime | None] = field(default_factory=dict)
    _columns: dict[str, list[tuple]] = field(default_factory=dict)  # table -> its rows of source_columns
    _captures: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # None: the record is removed
    _cursors: dict[str, tuple[dt.datetime, str]] = field(default_factory=dict)
    _loads: list[tuple] = field(default_factory=list)

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection, database: str) -> Books:
        """The recorded columns, captures and watermarks of every table of ``database``: three queries."""
        books = cls(database)
        where = {"db": database}
        for table, *column in con.execute(
                f"SELECT table_name, column_name, source_type, warehouse_type, rule FROM {META_SCHEMA}.source_columns "
                f"WHERE database = $db ORDER BY table_name, ordinal", where).fetchall():
            books.columns.setdefault(table, []).append(RecordedColumn(*column))
        books.captures = {table: (xids, plan) for table, xids, plan in con.execute(
            f"SELECT table_name, xid_snapshot, plan FROM {META_SCHEMA}.captures WHERE database = $db", where).fetchall()}
        books.watermarks = dict(con.execute(
            f"SELECT table_name, watermark FROM {META_SCHEMA}.cursors WHERE database = $db", where).fetchall())
        return books

    def record_columns(self, table: str, rows: list[tuple]) -> None:
        """Make ``rows`` ``(name, source type, warehouse type, ordinal, rule)`` the recorded columns of ``table``
        (:attr:`columns` at once, ``source_columns`` at :meth:`write`, with the statements that changed the table's
        own columns in the same transaction)."""
        self._columns[table] = rows
        self.columns[table] = [RecordedColumn(r[0], r[1], r[2], r[4]) for r in sorted(rows, key=lambda r: r[3])]

    def record_capture(self, table: str, xids: XidSnapshot | None, plan: str) -> None:
        """The source snapshot ``table``'s rows are now as of, and what they were read with (``plan``).

        ``xids`` None (a server without ``pg_current_snapshot()``): the rows were found otherwise, by the cursor,
        so a snapshot recorded earlier no longer bounds what is loaded, and its record goes."""
        self._captures[table] = None if xids is None else (str(xids), plan)

    def record_cursor(self, table: str, watermark: dt.datetime, key: str) -> None:
        self._cursors[table] = (watermark, key)

    def record_load(self, table: str, load: str, window: tuple[dt.datetime, dt.datetime] | None, *, written: int,
                    deleted: int, repaired: int, capture: str | None) -> None:
        self._loads.append((table, load, window[0] if window else None, window[1] if window else None, written,
                            deleted, repaired, capture))

    @property
    def pending(self) -> bool:
        return bool(self._columns or self._captures or self._cursors or self._loads)

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write what the loads recorded since the last write, in the caller's open transaction, then count it as
        recorded (the caller commits; a rollback discards these books with it)."""
        if self._columns:
            # Every table's columns in one statement: on a DuckLake each INSERT writes a Parquet file, and a
            # first load records the columns of every table of the source (2.7 s of 40 tables, one at a time).
            rows = [(table, *row) for table, table_rows in self._columns.items() for row in table_rows]
            con.execute(f"DELETE FROM {META_SCHEMA}.source_columns WHERE database = $db "
                        f"AND list_contains($tables, table_name)", {"db": self.database, "tables": list(self._columns)})
            con.execute(f"INSERT INTO {META_SCHEMA}.source_columns (database, table_name, column_name, source_type, "
                        f"warehouse_type, ordinal, rule) SELECT $db, UNNEST($tables), UNNEST($names), UNNEST($types), "
                        f"UNNEST(CAST($wtypes AS VARCHAR[])), UNNEST($ordinals), UNNEST(CAST($rules AS VARCHAR[]))",
                        {"db": self.database, **{key: [row[i] for row in rows] for i, key in
                                                 enumerate(("tables", "names", "types", "wtypes", "ordinals", "rules"))}})
        if self._captures:
            self._replace(con, "captures", self._captures, ("xid_snapshot", "VARCHAR"), ("plan", "VARCHAR"),
                          "captured_at")
        if self._cursors:
            self._replace(con, "cursors", self._cursors, ("watermark", "TIMESTAMPTZ"), ("watermark_key", "VARCHAR"),
                          "updated_at")
        if self._loads:
            columns = ("table_name", "load", "window_start", "window_end", "rows_written", "rows_deleted",
                       "rows_repaired", "capture")
            types = ("VARCHAR", "VARCHAR", "TIMESTAMPTZ", "TIMESTAMPTZ", "BIGINT", "BIGINT", "BIGINT", "VARCHAR")
            values = ", ".join(f"UNNEST(CAST(${c} AS {t}[]))" for c, t in zip(columns, types))
            con.execute(f"INSERT INTO {META_SCHEMA}.loads (database, {', '.join(columns)}, finished_at) "
                        f"SELECT $db, {values}, now()",
                        {"db": self.database} | {c: [row[i] for row in self._loads] for i, c in enumerate(columns)})
        for table, record in self._captures.items():
            if record is None:
                self.captures.pop(table, None)
            else:
                self.captures[table] = record
        self.watermarks |= {table: watermark for table, (watermark, _) in self._cursors.items()}
        self._columns, self._captures, self._cursors, self._loads = {}, {}, {}, []

    def _replace(self, con: duckdb.DuckDBPyConnection, book: str, records: dict, first: tuple[str, str],
                 second: tuple[str, str], stamp: str) -> None:
        """Make ``records`` (table -> two values, or None: no row) the rows of ``book`` for their tables; ``first``
        and ``second`` name the two values' columns and types, ``stamp`` the column that gets ``now()``."""
        con.execute(f"DELETE FROM {META_SCHEMA}.{book} WHERE database = $db AND list_contains($tables, table_name)",
                    {"db": self.database, "tables": list(records)})
        kept = {table: values for table, values in records.items() if values is not None}
        if kept:
            con.execute(f"INSERT INTO {META_SCHEMA}.{book} (database, table_name, {first[0]}, {second[0]}, {stamp}) "
                        f"SELECT $db, UNNEST($tables), UNNEST(CAST($first AS {first[1]}[])), "
                        f"UNNEST(CAST($second AS {second[1]}[])), now()",
                        {"db": self.database, "tables": list(kept), "first": [v[0] for v in kept.values()],
                         "second": [v[1] for v in kept.values()]})
