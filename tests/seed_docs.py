"""Parse the two schema documents in ``shared/seeds/`` into plain data.

The documents are the upstream description of the operational databases:

* ``000_c5872eb12a975f9b.txt`` (Cheeko, Prisma) is a web page flattened to
  text. An overview lists every table ("  • sys_user — core user account");
  "Model Details" then details some of them: a table-name line, a
  "Purpose:" line, the header ``FieldTypeNullableDescription`` and one row per
  column with the four cells run together (``usernameString (100)YesUnique
  login username``). Composite keys follow as "Unique constraint: (a, b)."
* ``002_fc7720062784f697.txt`` (Cognova, Drizzle) has one markdown table
  ``| Column | Type | Nullable | Default | Description |`` per table, under
  a table-name line.

Defaults, unique flags and foreign keys are read from the words the documents
use ("(default: X)", "Unique ...", "FK to t", "FK to t.c (cascade delete)").
The parsers raise ``ValueError`` on a row they cannot read rather than skip
it: a silently dropped column would be a column nobody checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
CHEEKO_DOC = SEEDS / "000_c5872eb12a975f9b.txt"
COGNOVA_DOC = SEEDS / "002_fc7720062784f697.txt"


@dataclass(frozen=True)
class Column:
    """One documented column, in the document's own vocabulary."""

    name: str
    doc_type: str  # as written, e.g. "String (100)", "timestamptz"
    nullable: bool
    default: str | None  # as written, e.g. '"user"', "now()", "[]"; None if none documented
    primary_key: bool
    unique: bool  # single-column unique
    fk_table: str | None
    fk_column: str | None  # Cognova names it ("user.id"); Cheeko does not
    fk_on_delete: str | None  # "CASCADE" / "SET NULL" where documented (Cognova)
    description: str


@dataclass(frozen=True)
class Table:
    """One documented table with its columns and composite unique constraints."""

    name: str
    columns: tuple[Column, ...]
    unique_constraints: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class SeedDocument:
    """A parsed document: detailed tables, plus every table name it mentions."""

    tables: tuple[Table, ...]
    # Cheeko's overview names tables it never details; empty for Cognova.
    overview: tuple[str, ...] = ()


_IDENT = r"[a-z_][a-z0-9_]*"
_FK = re.compile(
    rf"\bFK to (?P<table>{_IDENT})(?:\.(?P<column>{_IDENT}))?"
    r"(?:\s*\((?P<action>cascade delete|set null on delete)\))?"
)
_ON_DELETE = {"cascade delete": "CASCADE", "set null on delete": "SET NULL"}
# "Unique login username", "Unique FK to ...", and Cheeko's one "Firebase Auth UID (unique)".
_UNIQUE = re.compile(r"^Unique\b|\(unique\)")


def _column(name: str, doc_type: str, nullable: str, default: str | None, description: str) -> Column:
    """Build a Column from cell texts, reading the flags out of the description."""
    if not re.fullmatch(_IDENT, name) or nullable not in ("Yes", "No"):
        raise ValueError(f"unreadable column row: {name!r} {doc_type!r} {nullable!r} {description!r}")
    fk = _FK.search(description)
    return Column(
        name=name,
        doc_type=doc_type,
        nullable=nullable == "Yes",
        default=default,
        primary_key=description.startswith("Primary key"),
        unique=bool(_UNIQUE.search(description)),
        fk_table=fk["table"] if fk else None,
        fk_column=fk["column"] if fk else None,
        fk_on_delete=_ON_DELETE[fk["action"]] if fk and fk["action"] else None,
        description=description,
    )


class _Tables:
    """Accumulates tables in document order, refusing a table detailed twice."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Column]] = {}
        self._uniques: dict[str, list[tuple[str, ...]]] = {}

    def start(self, name: str) -> None:
        if name in self._columns:
            raise ValueError(f"table {name} is detailed twice")
        self._columns[name] = []
        self._uniques[name] = []

    def add_column(self, table: str, column: Column) -> None:
        self._columns[table].append(column)

    def add_unique(self, table: str, columns: tuple[str, ...]) -> None:
        self._uniques[table].append(columns)

    def freeze(self) -> tuple[Table, ...]:
        return tuple(
            Table(name, tuple(cols), tuple(self._uniques[name])) for name, cols in self._columns.items()
        )


# ---- Cheeko -----------------------------------------------------------------------

_CHEEKO_HEADER = "FieldTypeNullableDescription"
_OVERVIEW_ITEM = re.compile(rf"^•\s*(?P<name>{_IDENT})\s+—")
# Cells run together, so the row is split on the known Prisma types: an unknown
# type makes the row unreadable (and the parser raise) instead of mis-split.
_CHEEKO_ROW = re.compile(
    rf"^(?P<name>{_IDENT})"
    r"(?P<type>(?:BigInt|SmallInt|Int|String|Boolean|DateTime|Decimal|Json|UUID|Unsupported)"
    r"(?:\s*\([^)]*\))?(?:\[\])?)"
    r"(?P<nullable>Yes|No)(?P<description>.*)$"
)
_CHEEKO_DEFAULT = re.compile(r"\(default: (?P<value>[^)]*)\)")
_COMPOSITE_UNIQUE = re.compile(r"^Unique constraint: \((?P<columns>[^)]*)\)")


def parse_cheeko(text: str) -> SeedDocument:
    """Parse the Cheeko (Prisma) document."""
    overview_part, sep, details = text.partition("Model Details")
    if not sep:
        raise ValueError("no 'Model Details' section")
    overview: list[str] = []
    for line in overview_part.splitlines():
        if (m := _OVERVIEW_ITEM.match(line.strip())) and m["name"] not in overview:
            overview.append(m["name"])  # rfid_content_pack is listed twice: one table

    tables = _Tables()
    current: str | None = None
    in_rows = False
    for line in details.splitlines():
        s = line.strip()
        if not s:
            in_rows = False  # a blank line ends a table's rows
        elif s == _CHEEKO_HEADER:
            if current is None:
                raise ValueError("column header before any table name")
            in_rows = True
        elif in_rows:
            if not (m := _CHEEKO_ROW.match(s)):
                raise ValueError(f"unreadable row in {current}: {s!r}")
            default = _CHEEKO_DEFAULT.search(m["description"])
            tables.add_column(current, _column(
                m["name"], m["type"], m["nullable"], default["value"] if default else None, m["description"],
            ))
        elif m := _COMPOSITE_UNIQUE.match(s):
            tables.add_unique(current, tuple(c.strip() for c in m["columns"].split(",")))
        elif re.fullmatch(_IDENT, s):
            current = s
            tables.start(s)
        # anything else ("Purpose: ...", index notes) is prose
    return SeedDocument(tables.freeze(), tuple(overview))


# ---- Cognova ----------------------------------------------------------------------

_COGNOVA_HEADER = "| Column | Type | Nullable | Default | Description |"

# Rows of the document that are known to be defective, with their correction.
# Keyed by (table, row as written). Only these rows are repaired: any other
# unreadable row raises. An entry that no longer matches also raises, so the
# map is revisited when the document is fixed.
COGNOVA_ERRATA: dict[tuple[str, str], str] = {
    # The email row of `user` lost its column name, shifting every cell left.
    # "Unique email address" and BetterAuth's user schema make it `email`.
    ("user", "| text | No | - | Unique email address | |"):
        "| email | text | No | - | Unique email address |",
}


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().removeprefix("|").removesuffix("|").split("|")]


def parse_cognova(text: str) -> SeedDocument:
    """Parse the Cognova (Drizzle) document, applying :data:`COGNOVA_ERRATA`."""
    tables = _Tables()
    unused_errata = set(COGNOVA_ERRATA)
    last_name: str | None = None  # the latest bare table-name line
    current: str | None = None
    for line in text.splitlines():
        s = line.strip()
        if s == _COGNOVA_HEADER:
            if last_name is None:
                raise ValueError("markdown table without a table-name line above it")
            current, last_name = last_name, None
            tables.start(current)
        elif current is not None and s.startswith("|"):
            if re.fullmatch(r"\|(?:-+\|)+", s):
                continue  # the |---|---| separator
            if (current, s) in COGNOVA_ERRATA:
                unused_errata.discard((current, s))
                s = COGNOVA_ERRATA[current, s]
            cells = _cells(s)
            if len(cells) != 5:
                raise ValueError(f"row in {current} has {len(cells)} cells: {s!r}")
            name, doc_type, nullable, default, description = cells
            tables.add_column(current, _column(
                name, doc_type, nullable, None if default == "-" else default, description,
            ))
        else:
            current = None  # any non-row line ends the table
            if re.fullmatch(_IDENT, s):
                last_name = s
    if unused_errata:
        raise ValueError(f"errata no longer match the document: {sorted(unused_errata)}")
    return SeedDocument(tables.freeze())


@cache
def cheeko_document() -> SeedDocument:
    """The parsed Cheeko document from ``shared/seeds``."""
    return parse_cheeko(CHEEKO_DOC.read_text(encoding="utf-8"))


@cache
def cognova_document() -> SeedDocument:
    """The parsed Cognova document from ``shared/seeds``."""
    return parse_cognova(COGNOVA_DOC.read_text(encoding="utf-8"))
