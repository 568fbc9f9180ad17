"""The one way this project opens PostgreSQL connections.

Only this module imports psycopg. Callers get plain ``psycopg.Connection``
objects and use them through their methods; writes to the operational
databases go through :mod:`pipelines.writes`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.datetime import TimestampBinaryLoader, TimestampLoader

from pipelines.settings import masked

# Re-exported so callers can type and catch without importing psycopg.
Connection = psycopg.Connection
Error = psycopg.Error
UndefinedTable = psycopg.errors.UndefinedTable
errors = psycopg.errors

# Errors that say "try again": a serialization or deadlock loss, a dropped or
# refused connection, or a server shutting down. Not every OperationalError
# qualifies: a statement timeout, a full disk or out-of-memory must surface.
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03"}


def server_url(port: int, database: str, host: str = "127.0.0.1", user: str = "postgres") -> str:
    """libpq URL of a database on a local server (the embedded one)."""
    return f"postgresql://{user}@{host}:{port}/{database}"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """A libpq URL in the form SQLAlchemy (and so Alembic) wants for psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def redact(url: str) -> str:
    """The URL with any password (``user:password@`` or ``?password=``) replaced, safe to print or log."""
    return masked(url)


class _UtcTimestampLoader(TimestampLoader):
    """``timestamp without time zone`` read as UTC (see :func:`connect`)."""

    def load(self, data):
        value = super().load(data)
        return value.replace(tzinfo=dt.UTC)


class _UtcTimestampBinaryLoader(TimestampBinaryLoader):
    def load(self, data):
        value = super().load(data)
        return value.replace(tzinfo=dt.UTC)


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    """Open a connection; the caller closes it (or uses it as a context manager).

    Every connection runs with ``TimeZone=UTC`` and reads ``timestamp``
    columns without a time zone as UTC instants: the ORMs (Prisma's default
    ``timestamp(3)``) store UTC wall time there, and a naive value must never
    meet an aware one, in Python or in a comparison PostgreSQL makes with the
    session's zone.
    """
    options = conninfo_to_dict(url).get("options") or ""
    conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout,
                           options=f"{options} -c TimeZone=UTC".strip())
    conn.adapters.register_loader("timestamp", _UtcTimestampLoader)
    conn.adapters.register_loader("timestamp", _UtcTimestampBinaryLoader)
    return conn


@contextmanager
def read_only(url: str) -> Iterator[psycopg.Connection]:
    """A connection whose transaction is REPEATABLE READ, READ ONLY: one snapshot."""
    with connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn
        conn.rollback()


def register_vector(conn: psycopg.Connection) -> None:
    """Teach ``conn`` pgvector's types (numpy arrays in and out); once per connection."""
    if conn.adapters.types.get("vector") is None:
        from pgvector.psycopg import register_vector as register

        register(conn)


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    """Block until the server at ``url`` accepts connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as err:
            last_error = err
            time.sleep(0.2)
    raise TimeoutError(f"PostgreSQL at {redact(url)} not ready after {timeout:.0f}s: {last_error}")


def ensure_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``admin_url`` if missing; True if created."""
    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (used by tests to start from nothing)."""
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying: see ``TRANSIENT_SQLSTATES``; class 08 (connection
    exceptions); and an OperationalError with no SQLSTATE (the connection itself failed)."""
    if not isinstance(error, psycopg.Error):
        return False
    state = error.sqlstate
    if state is None:
        return isinstance(error, psycopg.OperationalError)
    return state in TRANSIENT_SQLSTATES or state.startswith("08")


def missing_columns(conn: psycopg.Connection, needed: dict[str, tuple[str, ...]]) -> list[str]:
    """``table.column`` for each of ``needed``'s columns that ``public`` lacks (``table`` alone when the table is missing)."""
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (list(needed),)).fetchall()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    out = []
    for table, columns in needed.items():
        if table not in present:
            out.append(table)
        else:
            out += [f"{table}.{c}" for c in columns if c not in present[table]]
    return out


_PG_SNAPSHOT = re.compile(r"^(\d{1,20}):(\d{1,20}):((?:\d{1,20})(?:,\d{1,20})*)?$")


@dataclass(frozen=True)
class XidSnapshot:
    """A ``pg_snapshot`` (``pg_current_snapshot()::text``, ``xmin:xmax:xip,...``): which transactions a
    snapshot sees, as 64-bit transaction ids (``epoch << 32 | xid``), so they never wrap around.

    Every transaction below ``xmin`` had finished when the snapshot was taken; none from ``xmax`` on had.
    """

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> XidSnapshot:
        """The snapshot ``text`` describes; ValueError when it is not one."""
        match = _PG_SNAPSHOT.match(text or "")
        if not match or int(match[1]) > int(match[2]):
            raise ValueError(f"not a pg_snapshot: {text!r}")
        return cls(int(match[1]), int(match[2]), tuple(int(x) for x in match[3].split(",")) if match[3] else ())

    @property
    def epoch(self) -> int:
        """How many times the 32-bit transaction counter had wrapped around when the snapshot was taken."""
        return self.xmax >> 32

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in self.xip)}"


@dataclass(frozen=True)
class SourceColumn:
    """A column of an operational table, as PostgreSQL describes it."""

    name: str
    type: str  # format_type(), e.g. "character varying(20)", "numeric(10,3)", "text[]"
    not_null: bool
    ordinal: int


class Snapshot:
    """One consistent, read-only view of an operational database.

    Holds a REPEATABLE READ, READ ONLY transaction open and exports its
    snapshot, so other sessions (DuckDB's postgres extension) can read the
    same data with ``SET TRANSACTION SNAPSHOT``. Catalogue look-ups and the
    row counts that checks compare against run in that same transaction.
    Close it (or use it as a context manager) when the run is done.

    ``xids`` is the same snapshot as PostgreSQL's ``pg_current_snapshot()``
    (13 and later; None before): change capture records it, and the next run
    reads the rows written by the transactions it did not see.
    """

    def __init__(self, url: str):
        self.url = url
        self._conn = connect(url)
        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # One round trip. now() is the server's clock at the start of the transaction: the "now" of everything
        # read through it. In REPEATABLE READ pg_current_snapshot() is the transaction's snapshot, the one exported.
        current = "pg_current_snapshot()::text" if self._conn.info.server_version >= 130000 else "NULL"
        self.id, self.started_at, xids = self._conn.execute(
            f"SELECT pg_export_snapshot(), now(), {current}").fetchone()
        self.xids: XidSnapshot | None = XidSnapshot.parse(xids) if xids else None
        self._tables: tuple[dict[str, list[SourceColumn]], dict[str, list[str]]] | None = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._conn.closed:
            self._conn.rollback()
            self._conn.close()

    def columns(self, table: str) -> list[SourceColumn]:
        """The live columns of ``public.table`` in order; empty if the table is missing."""
        return self._catalogue()[0].get(table, [])

    def primary_key(self, table: str) -> list[str]:
        """The primary key columns of ``public.table``."""
        return self._catalogue()[1].get(table, [])

    def _catalogue(self) -> tuple[dict[str, list[SourceColumn]], dict[str, list[str]]]:
        """Columns and primary keys of every table in ``public``, read once per snapshot."""
        if self._tables is None:
            columns: dict[str, list[SourceColumn]] = {}
            for table, *column in self._conn.execute(
                """
                SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attnum
                FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY c.relname, a.attnum
                """
            ).fetchall():
                columns.setdefault(table, []).append(SourceColumn(*column))
            keys: dict[str, list[str]] = {}
            for table, column in self._conn.execute(
                """
                SELECT c.relname, a.attname FROM pg_index i
                JOIN pg_class c ON c.oid = i.indrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE n.nspname = 'public' AND i.indisprimary
                ORDER BY c.relname, array_position(i.indkey, a.attnum)
                """
            ).fetchall():
                keys.setdefault(table, []).append(column)
            self._tables = (columns, keys)
        return self._tables

    def count(self, table: str, columns: tuple[str, ...] = (), start=None, end=None) -> int:
        """Rows of ``table``, or those whose first non-null of ``columns`` is in ``[start, end)``."""
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        params: tuple = ()
        if columns:
            # coalesce(a, b) in the window, spelled so that indexes on a and on b can serve it.
            branches = [sql.SQL("({earlier}{c} >= %s AND {c} < %s)").format(
                earlier=sql.SQL("").join(sql.SQL("{} IS NULL AND ").format(sql.Identifier(e)) for e in columns[:i]),
                c=sql.Identifier(column)) for i, column in enumerate(columns)]
            query += sql.SQL(" WHERE ") + sql.SQL(" OR ").join(branches)
            params = (start, end) * len(columns)
        return self._conn.execute(query, params).fetchone()[0]

    def non_null(self, table: str, columns: list[str]) -> tuple[int, dict[str, int]]:
        """Rows of ``table``, and how many hold a value in each of ``columns`` (counts only, never a value)."""
        counts = sql.SQL(", ").join(sql.SQL("count({})").format(sql.Identifier(c)) for c in columns)
        row = self._conn.execute(sql.SQL("SELECT count(*), {} FROM {}").format(counts, sql.Identifier(table))).fetchone()
        return row[0], dict(zip(columns, row[1:], strict=True))

    def bounds(self, table: str, columns: tuple[str, ...], before) -> tuple:
        """(smallest, largest) first non-null of ``columns`` in ``table`` below ``before``; (None, None) when none."""
        c = _first_of(columns)
        query = sql.SQL("SELECT min({c}), max({c}) FROM {t} WHERE {c} < %s").format(c=c, t=sql.Identifier(table))
        return tuple(self._conn.execute(query, (before,)).fetchone())


def _first_of(columns: tuple[str, ...]) -> sql.Composable:
    """``coalesce(a, b, ...)`` of quoted columns (just the column when there is one)."""
    names = [sql.Identifier(c) for c in columns]
    return names[0] if len(names) == 1 else sql.SQL("coalesce({})").format(sql.SQL(", ").join(names))
