"""The declarative list of source tables (``source_tables.toml``), as typed objects.

Each table declares one load strategy; see the file's header for what each means.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CATALOGUE_FILE = Path(__file__).with_name("source_tables.toml")
LOADS = ("full", "incremental", "daily")


class CatalogueError(ValueError):
    """``source_tables.toml`` says something the extractor cannot do; the message names the table."""


@dataclass(frozen=True)
class SourceTable:
    """One operational table and how it is loaded into the warehouse."""

    database: str
    name: str
    load: str
    description: str
    columns: dict[str, str] = field(default_factory=dict)  # column -> description
    event_time: tuple[str, ...] = ()  # daily: partitions are cut on the first non-null of these
    # incremental: first non-null of these is the row's update time; read only where change capture cannot
    # (a source before PostgreSQL 13), and kept as the watermark shown in metadata
    cursor: tuple[str, ...] = ()
    reconcile_deletes: bool = False  # incremental: drop rows whose key is gone at the source
    lookback_minutes: int = 60

    @property
    def key(self) -> str:
        """``database.table``, the name used in messages and bookkeeping."""
        return f"{self.database}.{self.name}"

    @property
    def partitioned(self) -> bool:
        return self.load == "daily"

    @property
    def declaration(self) -> str:
        """Where the table is declared, for messages: ``pipelines/source_tables.toml [cheeko.ai_device]``."""
        name = self.name if self.name.isidentifier() else f'"{self.name}"'
        return f"pipelines/{CATALOGUE_FILE.name} [{self.database}.{name}]"

    def declared_columns(self) -> dict[str, tuple[str, ...]]:
        """The columns the declaration names for its load, by setting (``event_time``, ``cursor``)."""
        return {name: value for name, value in (("event_time", self.event_time), ("cursor", self.cursor)) if value}

    def undeclarable(self, present: set[str]) -> str | None:
        """Why the table cannot load as declared when the source has only ``present`` columns; None if it can.

        One line that names the table, the setting, the missing columns and the declaration.
        """
        if not present:
            return f"{self.key}: no such table in the source database (declared in {self.declaration})"
        for setting, columns in self.declared_columns().items():
            missing = [c for c in columns if c not in present]
            if missing:
                return (f"{self.key}: {setting} {', '.join(missing)} is not a column of the source table "
                        f"(declared in {self.declaration}; the table has {', '.join(sorted(present))})")
        return None


def _names(value: str | list[str] | None) -> tuple[str, ...]:
    """A column setting, given as one name or a list of names (the first non-null wins)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _table(database: str, name: str, body: dict, lookback: int) -> SourceTable:
    load = body.get("load")
    if load not in LOADS:
        raise CatalogueError(f"{database}.{name}: load must be one of {LOADS}, got {load!r}")
    if load == "daily" and not body.get("event_time"):
        raise CatalogueError(f"{database}.{name}: a daily table needs event_time")
    if load == "incremental" and not body.get("cursor"):
        raise CatalogueError(f"{database}.{name}: an incremental table needs cursor")
    return SourceTable(
        database=database,
        name=name,
        load=load,
        description=body.get("description", ""),
        columns=dict(body.get("columns", {})),
        event_time=_names(body.get("event_time")),
        cursor=_names(body.get("cursor")),
        reconcile_deletes=bool(body.get("reconcile_deletes", False)),
        lookback_minutes=int(body.get("lookback_minutes", lookback)),
    )


@cache
def source_tables(path: Path = CATALOGUE_FILE) -> tuple[SourceTable, ...]:
    """Every source table, Cheeko's first, in the file's order."""
    raw = tomllib.loads(path.read_text())
    lookback = int(raw.get("lookback_minutes", 60))
    return tuple(
        _table(database, name, body, lookback)
        for database in ("cheeko", "cognova")
        for name, body in raw.get(database, {}).items()
    )


def source_table(database: str, name: str) -> SourceTable:
    """The table ``database.name``; KeyError naming it if the catalogue lacks it."""
    for table in source_tables():
        if (table.database, table.name) == (database, name):
            return table
    raise KeyError(f"{database}.{name} is not in {CATALOGUE_FILE.name}")
