"""The one way this project opens the warehouse.

Only this module calls ``duckdb.connect``. The warehouse is one of two backends, chosen by
``WAREHOUSE_CATALOG`` (``databases.warehouse_location`` resolves it):

- a DuckDB file (:class:`pathlib.Path`, the default): one writer at a time, no reader beside it;
- a DuckLake (:class:`Lake`): the catalog in PostgreSQL, the tables as Parquet files under a data path.
  Writers of different tables commit concurrently and readers query the live catalog while runs write.
  The connection is an in-memory DuckDB with the lake attached and ``USE``d, so the same SQL
  (``raw_cheeko.t``, ``staging.t``, ``marts.t``) reads and writes it.

A connection here always runs in UTC (so ``TIMESTAMPTZ`` values read back as UTC), has the PostgreSQL
extension loaded from its pip wheel (nothing is downloaded at run time), and has the warehouse's
bookkeeping schema ``_warehouse`` in place. SQL that runs here stays within what both backends take:
DuckLake has no PRIMARY KEY or UNIQUE constraint (so no ``INSERT OR REPLACE``) and no ENUM type.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import duckdb

from pipelines.settings import masked

log = logging.getLogger(__name__)
META_SCHEMA = "_warehouse"
# How long a command waits for another process's run to release the file (a daily run takes seconds to minutes).
LOCK_WAIT_SECONDS = 600.0
RAW_SCHEMAS = {"cheeko": "raw_cheeko", "cognova": "raw_cognova"}
LAKE_ALIAS = "lake"  # the name a DuckLake is attached under (and made the default catalog)
# Compaction rewrites a Parquet file once this share of its rows is deleted (DuckLake's default, 0.95, leaves
# a file half emptied by a reloaded window as it is, and such a file is never merged either).
REWRITE_DELETED_SHARE = 0.25

# Bookkeeping written in the same transaction as the rows it describes. One row per key (the first
# columns up to table_name / column_name), kept so by the writers (DELETE, then INSERT): DuckLake takes no
# PRIMARY KEY. Files made before DuckLake keep theirs, which the same writes satisfy.
META_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.cursors (
    database      VARCHAR NOT NULL,
    table_name    VARCHAR NOT NULL,
    watermark     TIMESTAMPTZ,          -- latest cursor value loaded
    watermark_key VARCHAR,              -- primary key of the latest row at that value (ties)
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.source_columns (
    database       VARCHAR NOT NULL,
    table_name     VARCHAR NOT NULL,
    column_name    VARCHAR NOT NULL,
    source_type    VARCHAR NOT NULL,    -- PostgreSQL's format_type()
    warehouse_type VARCHAR,             -- NULL when the privacy policy drops the column
    ordinal        INTEGER NOT NULL
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
    captured_at   TIMESTAMPTZ NOT NULL
);
"""


EXTENSIONS = ("postgres", "ducklake", "httpfs")  # each installed from its pip wheel, never downloaded


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


@dataclass(frozen=True)
class Lake:
    """A DuckLake warehouse: its catalog is the PostgreSQL database ``catalog_url``, its tables are Parquet
    files under ``data_path`` (a local folder, or an object-store URL such as ``s3://bucket/warehouse/``)."""

    catalog_url: str
    data_path: str

    def __str__(self) -> str:
        return f"DuckLake (catalog {masked(self.catalog_url)}, data {self.data_path})"

    def attach_statement(self, alias: str = LAKE_ALIAS, *, read_only: bool = False, printed: bool = False) -> str:
        """The ``ATTACH`` that opens this lake under ``alias`` (its text comes from settings, not from data);
        ``printed``: the password shown as ``***``, for printing."""
        # No data inlining: small inserts kept as rows in the catalog made every scan a query to PostgreSQL
        # (measured: re-extracting the 12-device fleet 7.7 s inlined, 5.5 s not); compaction merges small files.
        options = [f"DATA_PATH {literal(self.data_path)}", "DATA_INLINING_ROW_LIMIT 0"]
        options += ["READ_ONLY"] if read_only else []
        catalog = libpq_keywords(masked(self.catalog_url) if printed else self.catalog_url)
        return f"ATTACH {literal('ducklake:postgres:' + catalog)} AS {alias} ({', '.join(options)})"


Location = Path | Lake  # where the warehouse is: a DuckDB file, or a DuckLake


def libpq_keywords(url: str) -> str:
    """``postgresql://user:pw@host:port/db?opt=v`` as libpq's ``key=value`` form, which the DuckLake
    extension's ``postgres:`` catalog takes."""
    parts = urlsplit(url)
    pairs = {"host": parts.hostname, "port": parts.port, "dbname": unquote(parts.path.lstrip("/")) or None,
             "user": unquote(parts.username) if parts.username else None,
             "password": unquote(parts.password) if parts.password else None}
    pairs |= {k: unquote(v) for k, _, v in (pair.partition("=") for pair in parts.query.split("&")) if v}
    return " ".join(f"{key}={_libpq_value(value)}" for key, value in pairs.items() if value is not None)


def _libpq_value(value: object) -> str:
    """A libpq keyword value: as it is when plain, else single-quoted with backslashes and quotes escaped."""
    text = str(value)
    if text and all(c.isalnum() or c in "._/-" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def exists(where: Location) -> bool:
    """True when the warehouse has been written at least once (the file exists; the lake has a catalog)."""
    if isinstance(where, Path):
        return where.exists()
    try:
        with connect(where, read_only=True) as con:
            return con.execute("SELECT count(*) FROM duckdb_schemas() WHERE database_name = current_database() "
                               "AND schema_name = $s", {"s": META_SCHEMA}).fetchone()[0] > 0
    except duckdb.Error:
        return False


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, for an ``except`` block about to re-raise: when the failure was the
    COMMIT itself (a DuckLake conflict, an interrupt), no transaction is left, and a bare ROLLBACK's own error
    would hide the one that matters. Nor when an attached source database's connection is gone: DuckDB has rolled
    back its own transaction by then, and only the source's ROLLBACK failed."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass  # nothing open: the commit failed, and took the transaction with it
    except duckdb.Error as error:
        if 'Failed to execute query "ROLLBACK"' not in str(error):
            raise


def discard(where: Location) -> bool:
    """Empty the warehouse (the demo rebuilds it from freshly generated rows); True if it held anything.
    A file is removed; a lake drops every schema and then deletes the Parquet files no snapshot needs."""
    if isinstance(where, Path):
        stale = [p for p in (where, where.with_name(where.name + ".wal")) if p.exists()]
        for path in stale:
            path.unlink()
        return bool(stale)
    if not exists(where):
        return False
    with connect(where) as con:
        schemas = [s for (s,) in con.execute("SELECT schema_name FROM duckdb_schemas() WHERE database_name = "
                                             "current_database() AND schema_name <> 'main' AND NOT internal").fetchall()]
        for schema in schemas:
            con.execute(f"DROP SCHEMA {quote(schema)} CASCADE")  # a name from the catalogue
    compact(where, keep=dt.timedelta(0))
    return True


def copy_into_lake(source: Path, lake: Lake, *, progress=lambda line: None) -> dict[str, int]:
    """Copy every table of the warehouse file ``source`` into ``lake``, with its comments, in one transaction
    (file to DuckLake, once). Returns the rows copied per ``schema.table``.

    Refuses a lake that already holds rows, so it never mixes two warehouses; the file is only read. The macros
    come too: staging keeps its windowed ``*_between`` macros beside its tables and rebuilds a window with them.
    """
    with connect(lake) as con:
        held = [f"{s}.{t}" for s, t, n in con.execute(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() WHERE database_name = "
            "current_database()").fetchall() if n]
        if held:
            raise ValueError(f"{lake} already holds rows ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}): "
                             "copy into an empty catalog")
        con.execute(f"ATTACH {literal(str(source))} AS migrate_source (READ_ONLY)")
        try:
            return _copy_tables(con, progress)
        finally:
            con.execute("DETACH migrate_source")


def _copy_tables(con: duckdb.DuckDBPyConnection, progress) -> dict[str, int]:
    tables = con.execute("SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = "
                         "'migrate_source' ORDER BY 1, 2").fetchall()
    present = {(s, t) for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE "
                                               "database_name = current_database()").fetchall()}
    copied = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for schema, table, comment in tables:
            target, origin = f"{quote(schema)}.{quote(table)}", f"migrate_source.{quote(schema)}.{quote(table)}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            try:
                if (schema, table) in present:  # the bookkeeping tables connect() just made
                    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {origin}")
                else:
                    con.execute(f"CREATE TABLE {target} AS SELECT * FROM {origin}")
            except duckdb.Error as error:
                raise ValueError(f"{schema}.{table} cannot be copied into the lake: {error}") from None
            if comment:
                con.execute(f"COMMENT ON TABLE {target} IS {literal(comment)}")
            for column, text in con.execute(
                    "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = 'migrate_source' "
                    "AND schema_name = $s AND table_name = $t AND comment IS NOT NULL", {"s": schema, "t": table}
                    ).fetchall():
                con.execute(f"COMMENT ON COLUMN {target}.{quote(column)} IS {literal(text)}")
            copied[f"{schema}.{table}"] = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            progress(f"{schema}.{table}: {copied[f'{schema}.{table}']:,} rows")
        macros = con.execute("SELECT schema_name, function_name, function_type, parameters, macro_definition FROM "
                             "duckdb_functions() WHERE database_name = 'migrate_source' AND function_type IN "
                             "('macro', 'table_macro')").fetchall()
        _create_macros(con, macros)
        progress(f"{len(macros)} macros")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return copied


def _create_macros(con: duckdb.DuckDBPyConnection, macros: list[tuple]) -> None:
    """Create ``(schema, name, kind, parameters, definition)`` macros in the lake, each after the ones it calls
    (DuckDB checks a scalar macro's functions when it is created; the catalogue lists them in no such order)."""
    waiting = list(macros)
    while waiting:
        failed: list[tuple[tuple, duckdb.Error]] = []
        for macro in waiting:
            schema, name, kind, parameters, definition = macro
            # The definition is the file's own catalogue text (DuckDB's rendering of the macro), not data.
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            try:
                con.execute(f"CREATE OR REPLACE MACRO {quote(schema)}.{quote(name)}({', '.join(map(quote, parameters))})"
                            f" AS {'TABLE ' if kind == 'table_macro' else ''}{definition}")
            except duckdb.CatalogException as error:
                failed.append((macro, error))
        if len(failed) == len(waiting):
            raise ValueError(f"macro {failed[0][0][1]} cannot be created in the lake: {failed[0][1]}")
        waiting = [macro for macro, _ in failed]


def compact(where: Lake, *, schemas: tuple[str, ...] | None = None,
            keep: dt.timedelta | None = dt.timedelta(days=7)) -> dict[str, int]:
    """DuckLake's maintenance, for the tables of ``schemas`` (default: all): rewrite the Parquet files that
    deletes have thinned and merge small adjacent ones (each load adds files); then, unless ``keep`` is None,
    expire the snapshots older than ``keep`` (so ``AT (VERSION => n)`` reaches back that far) and delete the
    files no remaining snapshot reads. Returns what it did."""
    with connect(where) as con:
        before = _lake_files(con)
        tables = [(s, t) for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE "
                                                  "database_name = current_database()").fetchall()
                  if schemas is None or s in schemas]
        # Names are written, not bound: these functions ignore bound catalog and table names. They come from
        # the catalogue.
        for schema, table in tables:
            args = f"'{LAKE_ALIAS}', {literal(table)}, schema => {literal(schema)}"
            con.execute(f"CALL ducklake_rewrite_data_files({args}, delete_threshold => {REWRITE_DELETED_SHARE})")
            con.execute(f"CALL ducklake_merge_adjacent_files({args})")
        expired = deleted = 0
        if keep is not None:
            # fetchall, not fetchone: these functions commit when their query ends, and a query left unfinished
            # is abandoned (with what it did) by the connection's next statement.
            expired = len(con.execute(f"FROM ducklake_expire_snapshots('{LAKE_ALIAS}', older_than => $t)",
                                      {"t": dt.datetime.now(dt.UTC) - keep}).fetchall())
            deleted = len(con.execute(f"FROM ducklake_cleanup_old_files('{LAKE_ALIAS}', cleanup_all => true)"
                                      ).fetchall())
        return {"tables": len(tables), "files_before": before, "files_after": _lake_files(con),
                "snapshots_expired": expired, "files_deleted": deleted}


def lake_status(where: Lake) -> dict:
    """The lake's current snapshot (``version``), how many snapshots are kept and the oldest one's time, its
    tables and the data files its current snapshot reads."""
    with connect(where, read_only=True) as con:
        version, kept, oldest = con.execute(f"SELECT max(snapshot_id), count(*), min(snapshot_time) FROM "
                                            f"ducklake_snapshots('{LAKE_ALIAS}')").fetchone()
        tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                             ).fetchone()[0]
        return {"version": version, "snapshots": kept, "oldest": oldest, "tables": tables, "files": _lake_files(con)}


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the connection's warehouse is a DuckLake, not the DuckDB file."""
    return con.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()"
                       ).fetchone()[0] == "ducklake"


def lake_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The DuckLake snapshot a connection's warehouse is at (None on the DuckDB file)."""
    if not is_lake(con):
        return None
    return con.execute(f"SELECT id FROM ducklake_current_snapshot('{LAKE_ALIAS}')").fetchone()[0]


def _lake_files(con: duckdb.DuckDBPyConnection) -> int:
    """Parquet data files the lake's current snapshot reads."""
    return con.execute(f"SELECT count(*) FROM __ducklake_metadata_{LAKE_ALIAS}.ducklake_data_file "
                       "WHERE end_snapshot IS NULL").fetchone()[0]


def quote(identifier: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


@contextmanager
def connect(where: Location, *, read_only: bool = False, wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse at ``where``: a DuckDB file (created if missing, unless read-only) or a :class:`Lake`
    (its catalog initialised on first use, unless read-only).

    While another process holds the file, waits up to ``wait`` seconds for it (default: a writer
    waits ``LOCK_WAIT_SECONDS``, a reader not at all), then raises :class:`WarehouseBusy`. A lake has no
    such lock: writers of different tables commit side by side, readers never wait.
    """
    if isinstance(where, Lake):
        con = _LAKE_ENGINE.borrow()
    else:
        if wait is None:
            wait = 0.0 if read_only else LOCK_WAIT_SECONDS
        if not read_only:
            where.parent.mkdir(parents=True, exist_ok=True)
        con = _open(where, read_only, wait)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if isinstance(where, Lake):
            _attach_lake(con, where, read_only)
        if not read_only:
            # One transaction: on a DuckLake each statement of its own reads the catalog (35 ms for the lot
            # where this takes 6, measured); the same on the file.
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(META_DDL)
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        yield con
    finally:
        if isinstance(where, Lake):
            _LAKE_ENGINE.give_back(con)
        else:
            con.close()


class _SharedEngine:
    """The in-memory DuckDB that a process's lake connections share, one at a time, so that the postgres and
    ducklake extensions are loaded once per process, not once per connection.

    Loading an extension checks its signature: 100-150 ms for each of the two, so a connection took 0.37 s
    where it now takes 0.10 s (``benchmarks/lake_connect.py``). A run's steps share one connection (the
    ``Warehouse`` resource), but every command, sensor and publish opens its own, and the lake's tests opened
    811 a pass. A connection lent out is a cursor of the engine; when it comes back its
    transaction is rolled back and every catalog it attached (the lake, sources, snapshot files) detached, which
    closes their connections to PostgreSQL and their files: the next borrower finds an engine as new but for the
    extensions and the lake itself. While one is lent (another thread, or a connection opened inside another), a
    borrower gets a DuckDB of its own, as before. An engine that cannot be cleaned is closed, and one inherited
    across ``fork`` is left to the parent: the next borrower starts a new one.

    The lake stays attached between borrowers (:meth:`lake_attached`): attaching it and loading its catalog on
    first use took about 90 ms of a 145 ms connection. That holds nothing a borrower could see: DuckLake reads
    the catalog's latest snapshot at each transaction, so what other processes committed meanwhile is there; a
    catalog connection cut meanwhile is opened again by the postgres extension; a different lake, or the same one
    read-only where it was attached for writing, is attached afresh.
    """

    # The catalogs every DuckDB has (its own database, the system and temp catalogs): never detached.
    _OWN = ("memory", "system", "temp")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: duckdb.DuckDBPyConnection | None = None
        self._pid = 0
        self._lent: duckdb.DuckDBPyConnection | None = None
        self._kept: str | None = None  # the ATTACH statement of the lake left attached as LAKE_ALIAS

    def borrow(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                self._engine, self._lent, self._kept = None, None, None  # the parent's, copied by fork: not ours
            if self._lent is not None:
                return duckdb.connect()
            if self._engine is None:
                self._engine, self._pid = duckdb.connect(), os.getpid()
            self._lent = self._engine.cursor()
            return self._lent

    def lake_attached(self, con: duckdb.DuckDBPyConnection, statement: str) -> bool:
        """Whether ``con`` already has the lake of ``statement`` attached (left by the last borrower). If not, it is
        ready to attach one as ``LAKE_ALIAS`` (another lake left there is detached), and kept once it has."""
        if con is not self._lent:
            return False  # a DuckDB of its own
        present = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                              [LAKE_ALIAS]).fetchone()[0]
        if present and self._kept == statement:
            return True
        if present:
            con.execute(f"DETACH {LAKE_ALIAS}")
        self._kept = None
        return False

    def keep_lake(self, con: duckdb.DuckDBPyConnection, statement: str) -> None:
        """``con`` attached the lake of ``statement`` as ``LAKE_ALIAS``: leave it attached when ``con`` comes back."""
        if con is self._lent:
            self._kept = statement

    def release(self, statements: set[str]) -> None:
        """Detach the kept lake if it was attached by one of ``statements`` and no one borrows it."""
        with self._lock:
            if self._kept not in statements or self._lent is not None:
                return
            self._kept = None
            engine = self._engine
        if engine is not None:
            engine.execute(f"DETACH DATABASE IF EXISTS {LAKE_ALIAS}")

    def give_back(self, con: duckdb.DuckDBPyConnection) -> None:
        if con is not self._lent:
            con.close()  # a DuckDB of its own
            return
        try:
            try:
                con.execute("ROLLBACK")  # whatever the borrower left open (none: DuckDB says so, and nothing changes)
            except duckdb.Error:
                pass
            con.execute("USE memory")
            own = [*self._OWN, LAKE_ALIAS] if self._kept else list(self._OWN)
            for (name,) in con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal AND "
                                       "database_name NOT IN (SELECT unnest($own))", {"own": own}).fetchall():
                con.execute(f"DETACH {quote(name)}")
            con.close()
        except duckdb.Error as error:
            log.debug("a lake connection could not be cleaned (%s); its DuckDB is closed", error)
            with self._lock:
                engine, self._engine, self._kept = self._engine, None, None
            if engine is not None:
                engine.close()
        finally:
            with self._lock:
                self._lent = None


_LAKE_ENGINE = _SharedEngine()


def release(lake: Lake) -> None:
    """Let go of ``lake`` if this process keeps it attached between connections (:class:`_SharedEngine`), closing
    its connections to the catalog database: before that database is copied (PostgreSQL copies only a database
    nobody is connected to) or dropped."""
    _LAKE_ENGINE.release({lake.attach_statement(read_only=read_only) for read_only in (False, True)})


def _attach_lake(con: duckdb.DuckDBPyConnection, lake: Lake, read_only: bool) -> None:
    """Attach ``lake`` and make it the default catalog, so unqualified ``schema.table`` names resolve in it."""
    statement = lake.attach_statement(read_only=read_only)
    if not _LAKE_ENGINE.lake_attached(con, statement):
        load_extension(con, "postgres")  # the catalog's
        load_extension(con, "ducklake")
        if "://" in lake.data_path:
            # An object store: DuckDB's httpfs reads and writes it, with the credentials of a DuckDB persistent
            # secret (made once per machine; DuckDB loads it on every connection, so nothing here names one).
            load_extension(con, "httpfs")
        elif not read_only:
            Path(lake.data_path).mkdir(parents=True, exist_ok=True)
        con.execute(statement)
        _LAKE_ENGINE.keep_lake(con, statement)
    con.execute(f"USE {LAKE_ALIAS}")


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
    """Attach an operational database read-only under ``alias`` (idempotent).

    The postgres extension is loaded here, not when the warehouse is opened: loading it took 0.12-0.15 s per
    connection, and most of a run's steps open the warehouse without reading a source."""
    attached = {row[0] for row in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    if alias not in attached:
        load_extension(con, "postgres")
        # The extension's default ctid scan ignores indexes; event windows need them.
        con.execute("SET pg_use_ctid_scan = false")
        con.execute(f"ATTACH {literal(url)} AS {alias} (TYPE postgres, READ_ONLY)")


def detach_source(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Detach a source attached by :func:`attach_source`, if it is. A connection left in a failed transaction
    cannot detach; it is left attached then (the error that failed the transaction is the one to report)."""
    try:
        con.execute(f"DETACH DATABASE IF EXISTS {quote(alias)}")
    except duckdb.Error:
        pass


def use_snapshot(con: duckdb.DuckDBPyConnection, alias: str, snapshot_id: str) -> None:
    """Make the open DuckDB transaction read ``alias`` as of an exported snapshot.

    Must be the first use of ``alias`` in the transaction: PostgreSQL only
    accepts ``SET TRANSACTION SNAPSHOT`` before the transaction's first query.
    """
    if not snapshot_id.replace("-", "").isalnum():
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    con.execute(f"CALL postgres_execute('{alias}', 'SET TRANSACTION SNAPSHOT ''{snapshot_id}''')")


def tables(con: duckdb.DuckDBPyConnection, schema: str | None = None) -> set[tuple[str, str]]:
    """The warehouse's tables ``(schema, table)``, of ``schema`` only if given (the warehouse holds no views).

    Read from ``duckdb_columns()``, not ``duckdb_tables()``: on a DuckLake the latter reads every table's
    statistics again after any commit, 300-580 ms at the tests' size, where this takes 8-90 (10 against 9 ms when
    nothing changed), measured."""
    return set(con.execute("SELECT DISTINCT schema_name, table_name FROM duckdb_columns() WHERE database_name = "
                           "current_database() AND ($schema IS NULL OR schema_name = $schema)",
                           {"schema": schema}).fetchall())


def table_comment(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> str | None:
    """The committed comment of the warehouse's ``schema.table`` (None: none, or no such table).

    On a DuckLake, read from its catalog's tags (20-25 ms): ``duckdb_tables()`` there reads every table's
    statistics again after any commit, 350-440 ms at the tests' size, measured."""
    if is_lake(con):
        metadata = quote(f"__ducklake_metadata_{LAKE_ALIAS}")
        row = con.execute(
            f"SELECT tag.value FROM {metadata}.ducklake_tag tag "
            f"JOIN {metadata}.ducklake_table t ON t.table_id = tag.object_id "
            f"JOIN {metadata}.ducklake_schema s ON s.schema_id = t.schema_id "
            "WHERE tag.key = 'comment' AND tag.end_snapshot IS NULL AND t.end_snapshot IS NULL "
            "AND s.end_snapshot IS NULL AND s.schema_name = ? AND t.table_name = ?", [schema, table]).fetchone()
    else:
        row = con.execute("SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
                          "AND schema_name = ? AND table_name = ?", [schema, table]).fetchone()
    return row[0] if row else None


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    """The columns of the warehouse's ``schema.table`` in order; empty when there is no such table.

    Not ``duckdb_columns()``: that lists every attached catalog, the source databases' and a lake's PostgreSQL
    catalog included, and took 20-30 ms a call where this takes 1-4.
    """
    try:
        return [row[0] for row in con.execute(f"DESCRIBE {quote(schema)}.{quote(table)}").fetchall()]
    except duckdb.CatalogException:
        return []


def preview(con: duckdb.DuckDBPyConnection, qualified_table: str, limit: int = 5) -> str:
    """The first rows of ``schema.table`` as a markdown table (for asset metadata).

    Python rows, not a DataFrame: a daily run previews 79 tables, and the conversion took 6-7 ms of each one's 7."""
    cursor = con.execute(f"SELECT * FROM {qualified_table} LIMIT {int(limit)}")
    found, columns = cursor.fetchall(), [column[0] for column in cursor.description]
    if not found:
        return "(no rows)"
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in found]
    return "\n".join([header, rule, *rows])


def _cell(value) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def literal(text: str) -> str:
    """A DuckDB string literal, for the statements that take no bound parameters (ATTACH,
    COMMENT ON, COPY ... TO); the text comes from settings, the contract or a file path."""
    return "'" + text.replace("'", "''") + "'"
