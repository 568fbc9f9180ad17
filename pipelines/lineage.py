"""Lineage read from the SQL: which warehouse tables each staging table, mart and report query reads.

The way dbt's ``ref()`` gives a project its graph, a reference in a SQL file
(``raw_cheeko.t``, ``raw_cognova.t``, ``staging.t``, ``marts.t``, or a call of a
table macro a staging file defines) is the one place a dependency is written.
The asset graph (``assets/``) reads it from here and the marts' build order
(``pipelines.rollups``) from the same parser, so a new ``JOIN`` can never
leave them stale.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pipelines.marts import MARTS
from pipelines.rollups import SQL_DIR, STAGING, references

# staging.prices is loaded from pipelines/price_sheet.toml, not from a SQL file.
PRICES = "prices"
REPORTS_DIR = SQL_DIR / "reports"


def reads(path: Path) -> frozenset[str]:
    """The warehouse tables the SQL file at ``path`` reads, as ``schema.table`` (comments aside: they name tables in
    passing); a table it creates is not a read."""
    made = f"staging.{path.stem}" if path.parent.name == "staging" else None
    return frozenset(references(path.read_text()) - {made})


def staging_tables() -> tuple[str, ...]:
    """Every staging table (and the streaks table macro), in build order: the price sheet first."""
    return (PRICES, *STAGING)


@cache
def staging_inputs() -> dict[str, frozenset[str]]:
    """What each staging table reads."""
    return {name: frozenset() if name == PRICES else reads(SQL_DIR / "staging" / f"{name}.sql")
            for name in staging_tables()}


@cache
def mart_inputs() -> dict[str, frozenset[str]]:
    """What each mart's SQL (``sql/<mart>.sql``) reads."""
    return {m.name: reads(SQL_DIR / f"{m.name}.sql") for m in MARTS}


@cache
def report_inputs() -> dict[str, frozenset[str]]:
    """What each report query (``sql/reports/<name>.sql``) reads."""
    return {path.stem: reads(path) for path in sorted(REPORTS_DIR.glob("*.sql"))}


def key_path(qualified: str) -> list[str]:
    """The asset key path of a warehouse table: ``raw_cheeko.ai_device`` -> ``["raw_cheeko", "ai_device"]``."""
    schema, table = qualified.split(".")
    return [schema, table]
