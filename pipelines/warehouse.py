"""The one way this project opens the DuckDB warehouse.

Only this module calls ``duckdb.connect``. A connection here always runs in
UTC (so ``TIMESTAMPTZ`` values read back as UTC), has the PostgreSQL
extension loaded from its pip wheel (nothing is downloaded at run time), and
has the warehouse's bookkeeping schema ``_warehouse`` in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)
META_SCHEMA = "_warehouse"
# How long a command waits for another process's run to release the file (a daily run takes seconds to minutes).
LOCK_WAIT_SECONDS = 600.0
RAW_SCHEMAS = {"cheeko": "raw_cheeko", "cognova": "raw_cognova"}

# Bookkeeping written in the same transaction as the rows it describes.
META_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.cursors (
    database      VARCHAR NOT NULL,
    table_name    VARCHAR NOT NULL,
    watermark     TIMESTAMPTZ,          -- latest cursor value loaded
    watermark_key VARCHAR,              -- primary key of the latest row at that value (ties)
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (database, table_name)
);
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.source_columns (
    database       VARCHAR NOT NULL,
    table_name     VARCHAR NOT NULL,
    column_name    VARCHAR NOT NULL,
    source_type    VARCHAR NOT NULL,    -- PostgreSQL's format_type()
    warehouse_type VARCHAR,             -- NULL when the privacy policy drops the column
    ordinal        INTEGER NOT NULL,
    PRIMARY KEY (database, table_name, column_name)
);
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
    database      VARCHAR NOT NULL,
    table_name    VARCHAR NOT NULL,
    load          VARCHAR NOT NULL,
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    rows_written  BIGINT NOT NULL,
    rows_deleted  BIGINT NOT NULL,
    finished_at   TIMESTAMPTZ NOT NULL
);
-- The privacy rule each column was loaded under (NULL: loaded before rules were recorded, under "copy").
ALTER TABLE {META_SCHEMA}.source_columns ADD COLUMN IF NOT EXISTS rule VARCHAR;
-- Added by change capture (issue 17); IF NOT EXISTS, so warehouses built before it gain them on opening.
ALTER TABLE {META_SCHEMA}.loads ADD COLUMN IF NOT EXISTS rows_repaired BIGINT;  -- missing keys reloaded
ALTER TABLE {META_SCHEMA}.loads ADD COLUMN IF NOT EXISTS capture VARCHAR;       -- how changed rows were found
-- The source snapshot each incremental table was last loaded as of: its next load reads the rows written by
-- the transactions this snapshot did not see. No row (a new table, a warehouse from before change capture):
-- the next load reads the whole table.
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.captures (
    database      VARCHAR NOT NULL,
    table_name    VARCHAR NOT NULL,
    xid_snapshot  VARCHAR NOT NULL,     -- pg_current_snapshot() as text, xmin:xmax:xip (64-bit ids)
    plan          VARCHAR NOT NULL,     -- fingerprint of the columns and policy the rows were read with
    captured_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (database, table_name)
);
"""


EXTENSIONS = ("postgres", "ducklake")  # each installed from its pip wheel, never downloaded


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load a DuckDB extension, installing it from its ``duckdb-extension-<name>`` wheel when missing."""
    if name not in EXTENSIONS:
        raise ValueError(f"unknown extension {name!r}; expected one of {EXTENSIONS}")
    try:
        con.execute(f"LOAD {name}")  # a name from EXTENSIONS: LOAD takes no parameters
    except duckdb.Error:
        from duckdb_extensions import import_extension

        import_extension(name, con=con)
        con.execute(f"LOAD {name}")


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than the caller would wait."""


def _open(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting up to ``wait`` seconds while another process holds the file.

    DuckDB refuses a second process at once (not even a reader may open a file a writer holds).
    Runs queued by Dagster take turns through the pool; a command run by hand while a scheduled
    run writes waits for it here instead of failing.
    """
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "could not set lock on file" not in str(error).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"{path} is held by another process (a run writing it?) and stayed so for "
                                    f"{wait:.0f}s; try again when it has finished, or read the analyst snapshot "
                                    f"(extracts/latest.duckdb). DuckDB said: {error}") from None
            if not told:
                log.warning("waiting for %s: another process holds it (up to %.0fs)", path, wait)
                told = True
            time.sleep(0.5)


@contextmanager
def connect(path: Path, *, read_only: bool = False, wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file at ``path`` (created if missing, unless read-only).

    While another process holds the file, waits up to ``wait`` seconds for it (default: a writer
    waits ``LOCK_WAIT_SECONDS``, a reader not at all), then raises :class:`WarehouseBusy`.
    """
    if wait is None:
        wait = 0.0 if read_only else LOCK_WAIT_SECONDS
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, wait)
    try:
        con.execute("SET TimeZone = 'UTC'")
        load_extension(con, "postgres")
        # The extension's default ctid scan ignores indexes; event windows need them.
        con.execute("SET pg_use_ctid_scan = false")
        if not read_only:
            con.execute(META_DDL)
        yield con
    finally:
        con.close()


@contextmanager
def in_memory() -> Iterator[duckdb.DuckDBPyConnection]:
    """A throwaway in-memory DuckDB (for running a mart's SQL on given rows), in UTC."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def attach_source(con: duckdb.DuckDBPyConnection, alias: str, url: str) -> None:
    """Attach an operational database read-only under ``alias`` (idempotent)."""
    attached = {row[0] for row in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    if alias not in attached:
        con.execute(f"ATTACH {literal(url)} AS {alias} (TYPE postgres, READ_ONLY)")


def use_snapshot(con: duckdb.DuckDBPyConnection, alias: str, snapshot_id: str) -> None:
    """Make the open DuckDB transaction read ``alias`` as of an exported snapshot.

    Must be the first use of ``alias`` in the transaction: PostgreSQL only
    accepts ``SET TRANSACTION SNAPSHOT`` before the transaction's first query.
    """
    if not snapshot_id.replace("-", "").isalnum():
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    con.execute(f"CALL postgres_execute('{alias}', 'SET TRANSACTION SNAPSHOT ''{snapshot_id}''')")


def preview(con: duckdb.DuckDBPyConnection, qualified_table: str, limit: int = 5) -> str:
    """The first rows of ``schema.table`` as a markdown table (for asset metadata)."""
    frame = con.execute(f"SELECT * FROM {qualified_table} LIMIT {int(limit)}").pl()
    if frame.is_empty():
        return "(no rows)"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def _cell(value) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def literal(text: str) -> str:
    """A DuckDB string literal, for the statements that take no bound parameters (ATTACH,
    COMMENT ON, COPY ... TO); the text comes from settings, the contract or a file path."""
    return "'" + text.replace("'", "''") + "'"
