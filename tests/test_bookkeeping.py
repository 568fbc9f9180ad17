"""The ``_warehouse`` books of a source's loads (pipelines/bookkeeping.py), on a real warehouse (the DuckDB file, or
a DuckLake with --warehouse-backend=ducklake): what the loads record is written in one go, in the caller's
transaction, replaces the tables' earlier rows, and leaves other tables and databases alone."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines import warehouse
from pipelines.bookkeeping import Books, RecordedColumn
from pipelines.postgres import XidSnapshot

pytestmark = pytest.mark.both_backends

T1 = dt.datetime(2026, 3, 30, 12, 0, 0, 123456, tzinfo=dt.UTC)
WINDOW = (dt.datetime(2026, 3, 30, tzinfo=dt.UTC), dt.datetime(2026, 3, 31, tzinfo=dt.UTC))


def loads(con) -> list[tuple]:
    return con.execute("SELECT database, table_name, load, window_start, window_end, rows_written, rows_deleted, "
                       "rows_repaired, capture FROM _warehouse.loads ORDER BY database, table_name").fetchall()


def test_what_the_loads_recorded_is_written_at_once_and_read_back(warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        other = Books("cognova")
        other.record_capture("a", XidSnapshot.parse("5:6:"), "theirs")
        other.record_cursor("a", T1, "1")
        con.execute("BEGIN TRANSACTION")
        other.write(con)
        con.execute("COMMIT")

        books = Books.read(con, "cheeko")
        assert (books.captures, books.watermarks, books.columns) == ({}, {}, {})
        con.execute("BEGIN TRANSACTION")
        books.record_capture("a", XidSnapshot.parse("10:20:"), "plan-a")
        books.record_capture("b", XidSnapshot.parse("11:21:15"), "plan-b")
        books.record_cursor("a", T1, "42")
        books.record_load("a", "incremental", None, written=3, deleted=1, repaired=2, capture="xmin")
        books.record_load("b", "daily", WINDOW, written=5, deleted=0, repaired=0, capture=None)
        assert books.pending
        books.write(con)
        con.execute("COMMIT")
        assert not books.pending

        again = Books.read(con, "cheeko")
        assert again.captures == books.captures == {"a": ("10:20:", "plan-a"), "b": ("11:21:15", "plan-b")}
        assert again.watermarks == books.watermarks == {"a": T1}
        assert loads(con) == [("cheeko", "a", "incremental", None, None, 3, 1, 2, "xmin"),
                              ("cheeko", "b", "daily", *WINDOW, 5, 0, 0, None)]
        # Another database's rows of the same table names are its own.
        theirs = Books.read(con, "cognova")
        assert (theirs.captures, theirs.watermarks) == ({"a": ("5:6:", "theirs")}, {"a": T1})


def test_a_later_write_replaces_a_tables_rows_and_none_removes_its_capture(warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        books = Books.read(con, "cheeko")
        for hours, xids in ((1, "10:20:"), (2, "30:40:")):
            con.execute("BEGIN TRANSACTION")
            books.record_capture("a", XidSnapshot.parse(xids), "plan")
            books.record_capture("b", XidSnapshot.parse(xids), "plan")
            books.record_cursor("a", T1 + dt.timedelta(hours=hours), xids)
            books.write(con)
            con.execute("COMMIT")
        con.execute("BEGIN TRANSACTION")
        books.record_capture("b", None, "plan")  # rows found by the cursor: no snapshot bounds them any more
        books.write(con)
        con.execute("COMMIT")
        again = Books.read(con, "cheeko")
        assert again.captures == books.captures == {"a": ("30:40:", "plan")}
        assert again.watermarks == books.watermarks == {"a": T1 + dt.timedelta(hours=2)}
        assert con.execute("SELECT watermark_key FROM _warehouse.cursors").fetchall() == [("30:40:",)]


def test_a_rolled_back_transaction_writes_nothing(warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        books = Books.read(con, "cheeko")
        con.execute("BEGIN TRANSACTION")
        books.record_capture("a", XidSnapshot.parse("10:20:"), "plan")
        books.record_load("a", "full", None, written=1, deleted=0, repaired=0, capture=None)
        books.write(con)
        con.execute("ROLLBACK")
        again = Books.read(con, "cheeko")
        assert again.captures == {} and loads(con) == []


def test_recorded_columns_are_written_with_the_rest_in_ordinal_order(warehouse_at):
    with warehouse.connect(warehouse_at) as con:
        books = Books.read(con, "cheeko")
        rows = [("b", "text", "VARCHAR", 2, "copy"), ("a", "integer", "INTEGER", 1, "copy"),
                ("gone", "text", None, 10_000, None)]
        con.execute("BEGIN TRANSACTION")
        books.record_columns("t", rows)
        books.record_columns("u", rows[:1])
        assert books.pending
        books.write(con)
        con.execute("COMMIT")
        expected = [RecordedColumn("a", "integer", "INTEGER", "copy"), RecordedColumn("b", "text", "VARCHAR", "copy"),
                    RecordedColumn("gone", "text", None, None)]
        assert books.columns == {"t": expected, "u": expected[1:2]}
        assert Books.read(con, "cheeko").columns == books.columns
        # A later write replaces a table's columns, and only that table's.
        con.execute("BEGIN TRANSACTION")
        books.record_columns("t", rows[1:2])
        books.write(con)
        con.execute("COMMIT")
        assert Books.read(con, "cheeko").columns == {"t": expected[:1], "u": expected[1:2]}
