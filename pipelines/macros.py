"""The shared macros every mart, staging table and quality check calls (``sql/staging/macros.sql``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from pipelines import warehouse

SQL = Path(__file__).resolve().parent.parent / "sql" / "staging" / "macros.sql"
# A macro returning the digest of the file the others were created from.
VERSION_MACRO = "staging_macros_version"


def ensure(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the shared macros unless the warehouse holds this version of them; True if they were (re)created.

    Every mart step, the quality checks and the adoption check need them. On a DuckLake each macro is a catalog
    change: recreating them statement by statement took about 0.5 s, and made the next query of every connection
    reload the catalog (0.1-0.2 s), a dozen times a run. So they are created in one transaction, with
    ``staging_macros_version()`` returning the digest of their file: a changed file replaces them all."""
    sql = SQL.read_text()
    version = hashlib.sha256(sql.encode()).hexdigest()[:16]
    try:
        if con.execute(f"SELECT {VERSION_MACRO}()").fetchone()[0] == version:
            return False
    except duckdb.CatalogException:
        pass  # never created, or by a version of the pipeline before this macro
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(sql)
        con.execute(f"CREATE OR REPLACE MACRO {VERSION_MACRO}() AS {warehouse.literal(version)}")
        con.execute("COMMIT")
    except BaseException:
        warehouse.rollback(con)
        raise
    return True
