"""The data dictionary: one description for every published table and column.

The same words appear in three places: the Dagster UI's column schemas, the
``COMMENT``s embedded in every analyst extract, and the markdown dictionary
written beside them. Raw tables are described by ``source_tables.toml``
(from the seed documents) and the privacy policy; marts by the contract in
:mod:`pipelines.marts`; the two tables that describe a snapshot itself
(``main.snapshot_info``, ``main.data_dictionary``) here.

Each entry also carries the table's grain (``key``): a mart's key, a raw
table's primary key. Extracts are sorted by it, so two extracts of the same
data are the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines import privacy
from pipelines.marts import MARTS
from pipelines.source_tables import SourceTable, source_tables
from pipelines.warehouse import RAW_SCHEMAS

PRIVACY_NOTES = {
    "hash": "pseudonymised: keyed SHA-256 of the trimmed, lower-cased value (equal values match across tables; "
            "not reversible without the key)",
    "year": "coarsened to 1 January of its year",
    "length": "only its length in characters is kept",
}
LOAD_NOTES = {
    "full": "replaced whole each run",
    "incremental": "merged incrementally on its primary key",
    "daily": "one partition per UTC day",
}


@dataclass(frozen=True)
class TableEntry:
    """One table an analyst can see: ``schema.table``, what it holds, and its columns."""

    schema: str
    table: str
    description: str
    columns: dict[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # source columns the privacy policy keeps out of the warehouse
    key: tuple[str, ...] = ()  # the grain: one row per value of these columns (extracts are sorted by it)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def raw_column_description(table: SourceTable, column: str) -> str:
    """A raw column's description, with the privacy rule applied to it, if any."""
    text = table.columns.get(column, "") or "Not described in the seed documents (added at the source)."
    rule = privacy.rule(table.database, table.name, column)
    return f"{text} [privacy: {PRIVACY_NOTES[rule]}]" if rule in PRIVACY_NOTES else text


def primary_key(table: SourceTable) -> tuple[str, ...]:
    """The columns the catalogue (the seed documents) describes as the primary key, in their order."""
    return tuple(name for name, text in table.columns.items() if text.lower().startswith("primary key"))


def raw_entry(table: SourceTable) -> TableEntry:
    columns = {name: raw_column_description(table, name) for name in table.columns
               if privacy.is_read(privacy.rule(table.database, table.name, name))}
    dropped = tuple(name for name in table.columns if not privacy.is_read(privacy.rule(table.database, table.name, name)))
    description = (f"{table.description} Copied from {table.database}.public.{table.name} "
                   f"({LOAD_NOTES[table.load]}).")
    return TableEntry(RAW_SCHEMAS[table.database], table.name, description, columns, dropped, primary_key(table))


# The tables that describe a snapshot itself, in schema main (pipelines.analyst_extracts makes them).
SNAPSHOT_INFO = TableEntry(
    "main", "snapshot_info",
    "One row about this snapshot: when it was published, by which run, how far the marts reach.",
    {"published_at": "When the snapshot was published (UTC).",
     "run_id": "The Dagster run that published it; null when it was published outside a run.",
     "fleet_daily_through": "The latest day of marts.fleet_daily: the marts hold data up to this UTC day "
                            "(null when that mart is empty or absent).",
     "tables": "How many tables of marts, raw_cheeko and raw_cognova the snapshot holds.",
     "lake_version": "The DuckLake snapshot this copy was made from: the live lake answers "
                     "`SELECT ... AT (VERSION => lake_version)` with the same rows (null when the warehouse is "
                     "a DuckDB file)."})
DATA_DICTIONARY = TableEntry(
    "main", "data_dictionary",
    "Every table and column of this file and what it holds, each table's row (column_name NULL) before its "
    "columns'; the same words are the tables' and columns' COMMENTs.",
    {"table_schema": "Schema of the table: marts, raw_cheeko, raw_cognova or main.",
     "table_name": "Name of the table.",
     "column_name": "Name of the column; NULL on the row that describes the table.",
     "data_type": "DuckDB type of the column; NULL on the row that describes the table.",
     "description": "What the table or column holds."})


def entries() -> list[TableEntry]:
    """Every table the extracts publish: the marts first, then the raw tables, then the snapshot's own."""
    marts = [TableEntry("marts", m.name, m.description, dict(m.columns), key=m.key) for m in MARTS]
    return marts + [raw_entry(t) for t in source_tables()] + [DATA_DICTIONARY, SNAPSHOT_INFO]


def lookup() -> dict[str, TableEntry]:
    """``{"schema.table": entry}``."""
    return {entry.qualified: entry for entry in entries()}


def column_description(entry: TableEntry, column: str) -> str:
    """The column's description; a column the contract does not know yet still gets a sentence."""
    return entry.columns.get(column) or "Not described in the contract (added at the source or by a newer build)."
