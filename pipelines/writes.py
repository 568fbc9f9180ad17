"""The one thin transactional module that writes to the operational databases.

Every write to Cheeko or Cognova goes through here: bulk rows travel by
``COPY`` (never row-by-row inserts), values are never spliced into SQL, and
each unit of work is one transaction, retried only on transient errors.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import polars as pl

from pipelines import postgres

T = TypeVar("T")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
COPY_BATCH_ROWS = 200_000  # bounds the CSV buffer held in memory at once


def quote_identifier(name: str) -> str:
    """``name`` quoted for SQL; only plain snake_case names from our own lists pass."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain table or column name: {name!r}")
    return f'"{name}"'


@contextmanager
def transaction(url: str) -> Iterator:
    """One unit of work: a connection whose transaction commits on success, rolls back on error."""
    with postgres.connect(url) as conn:
        with conn.transaction():
            yield conn


def with_retries(work: Callable[[], T], *, attempts: int = 4, base_delay: float = 0.5) -> T:
    """Run ``work`` (which opens its own transaction), retrying transient failures with backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as error:  # noqa: BLE001 - re-raised unless transient
            if attempt == attempts or not postgres.is_transient(error):
                raise
            time.sleep(base_delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def copy_frame(conn, table: str, frame: pl.DataFrame, *, skip_existing: bool = False) -> int:
    """Append ``frame``'s rows to ``table`` by COPY, inside the caller's transaction.

    Columns are matched by name, so the frame may omit columns with defaults
    (identity ids, ``now()`` timestamps). With ``skip_existing`` the rows go
    through a temporary table and ``INSERT ... ON CONFLICT DO NOTHING``, so
    loading the same rows twice is harmless. Returns the rows added.
    """
    if frame.height == 0:
        return 0
    target = quote_identifier(table)
    columns = ", ".join(quote_identifier(c) for c in frame.columns)
    into = target
    if skip_existing:
        into = quote_identifier(f"_load_{table}")
        conn.execute(f"CREATE TEMP TABLE {into} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
    statement = f"COPY {into} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for offset in range(0, frame.height, COPY_BATCH_ROWS):
            buffer = io.BytesIO()
            frame.slice(offset, COPY_BATCH_ROWS).write_csv(buffer, include_header=False, null_value="\\N")
            copy.write(buffer.getvalue())
    if not skip_existing:
        return frame.height
    added = conn.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {into} ON CONFLICT DO NOTHING").rowcount
    conn.execute(f"DROP TABLE {into}")
    return added


def copy_rows(conn, table: str, columns: list[str], types: list[str], rows: Iterable[tuple]) -> int:
    """Append ``rows`` to ``table`` by binary COPY, inside the caller's transaction.

    Binary, because vectors travel as packed floats instead of text. ``types``
    are PostgreSQL type names, one per column (``vector`` included: the
    connection learns pgvector's types here). Returns the rows written.
    """
    if "vector" in types:
        postgres.register_vector(conn)
    target = quote_identifier(table)
    names = ", ".join(quote_identifier(c) for c in columns)
    written = 0
    with conn.cursor() as cur, cur.copy(f"COPY {target} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def sync_identity(conn, table: str, column: str = "id") -> None:
    """Move ``table``'s identity sequence past the ids a bulk load supplied."""
    t, c = quote_identifier(table), quote_identifier(column)
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST((SELECT max({c}) FROM {t}), 1))",
        (t, column),
    )


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did to the target table."""

    inserted: int
    updated: int
    unchanged: int
    deleted: int


def upsert(conn, table: str, frame: pl.DataFrame, key: list[str], *, delete_missing: bool = False,
           touch: str | None = "updated_at", schema: str | None = None) -> UpsertResult:
    """Make ``table`` hold ``frame``'s rows, matched on ``key``, inside the caller's transaction.

    The rows are copied into a temporary table, then ``INSERT ... ON CONFLICT
    (key) DO UPDATE``, but only where a value differs: an unchanged row keeps
    its ``touch`` column (``updated_at``), so a re-run with no new data
    changes nothing. With ``delete_missing`` rows whose key ``frame`` lacks
    are deleted. ``schema`` names the table's schema when it is not on the search path.
    """
    target = quote_identifier(table) if schema is None else f"{quote_identifier(schema)}.{quote_identifier(table)}"
    stage = quote_identifier(f"_upsert_{table}")
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP")
    if frame.height:
        columns = ", ".join(quote_identifier(c) for c in frame.columns)
        with conn.cursor() as cur, cur.copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
            for offset in range(0, frame.height, COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                frame.slice(offset, COPY_BATCH_ROWS).write_csv(buffer, include_header=False, null_value="\\N")
                copy.write(buffer.getvalue())
    values = [c for c in frame.columns if c not in key]
    keys = ", ".join(quote_identifier(c) for c in key)
    assignments = [f"{quote_identifier(c)} = EXCLUDED.{quote_identifier(c)}" for c in values]
    if touch:
        assignments.append(f"{quote_identifier(touch)} = now()")
    changed = (f"({', '.join('t.' + quote_identifier(c) for c in values)}) IS DISTINCT FROM "
               f"({', '.join('EXCLUDED.' + quote_identifier(c) for c in values)})")
    columns = ", ".join(quote_identifier(c) for c in frame.columns)
    inserted = updated = 0
    if frame.height:
        rows = conn.execute(
            f"INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {stage} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(assignments)} WHERE {changed} "
            f"RETURNING (xmax = 0)"
        ).fetchall()
        inserted = sum(1 for (new,) in rows if new)
        updated = len(rows) - inserted
    deleted = 0
    if delete_missing:
        match = " AND ".join(f"s.{quote_identifier(c)} = t.{quote_identifier(c)}" for c in key)
        deleted = conn.execute(f"DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})").rowcount
    conn.execute(f"DROP TABLE {stage}")
    return UpsertResult(inserted=inserted, updated=updated, unchanged=frame.height - inserted - updated, deleted=deleted)
