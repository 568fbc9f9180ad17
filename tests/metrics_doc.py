"""Parse the production columns that ``shared/design/metrics.md`` gives the tables the Cheeko seed only names.

The section "Tables the Cheeko document names but does not detail: the
production columns" has one paragraph per table, Prisma's schema in words::

    `rfid_scan_log` — `id` bigint identity PK; `mac_address` varchar(50) NOT
    NULL; `rfid_uid` varchar(100) NOT NULL; `action_taken` varchar(100);
    `created_at` DEFAULT now().

Items are separated by ``;``: one or more backticked column names, then an
optional type (none given: a time, ``timestamptz(6)``, as the section says),
``identity``, ``PK``, ``NOT NULL``, ``UNIQUE``, ``DEFAULT <value>`` and a
parenthetical remark (the values a column takes, or ``FK `table```). ``UNIQUE (`a`,
`b`)`` is a composite key; "Indexes on `a`, `b`." lists single-column
indexes. Anything the parser cannot read raises ``ValueError``: a skipped
word would be a rule nobody checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

METRICS = Path(__file__).resolve().parents[2] / "shared" / "design" / "metrics.md"
SECTION = "## Tables the Cheeko document names but does not detail: the production columns"
TYPES = {"bigint": "bigint", "int": "integer", "uuid": "uuid", "text": "text", "boolean": "boolean",
         "jsonb": "jsonb", "date": "date"}
TIME = "timestamp(6) with time zone"  # "Every time is `timestamptz(6)`"
_NAMES = re.compile(r"^((?:`\w+`(?:,\s*)?)+)(.*)$")
_PAREN = re.compile(r"\s+\(([^()]*)\)")  # a remark: "(`Math`, `Riddle`, ...)", "(the game type)", "(FK `t`)"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as PostgreSQL's format_type() prints it
    identity: bool = False
    primary_key: bool = False
    not_null: bool = False
    unique: bool = False
    default: str | None = None  # as written: now(), 0, 'completed', '{}', false
    references: str | None = None  # FK target table


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    unique_constraints: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[str, ...] = ()  # single-column, non-unique
    app_writes: bool = False  # "**Written by the app**"


@dataclass
class _Builder:
    name: str
    columns: list[Column] = field(default_factory=list)
    uniques: list[tuple[str, ...]] = field(default_factory=list)


def _column(name: str, spec: str, references: str | None) -> Column:
    words = spec.split()
    col_type = TIME
    if words and (m := re.fullmatch(r"varchar\((\d+)\)", words[0])):
        col_type, words = f"character varying({m.group(1)})", words[1:]
    elif words and words[0] in TYPES:
        col_type, words = TYPES[words[0]], words[1:]
    text = " ".join(words)
    default = None
    if "DEFAULT " in text:
        text, default = text.split("DEFAULT ", 1)
        default = default.strip()
    flags = text.split()
    known = {"identity", "PK", "NOT", "NULL", "UNIQUE"}
    if set(flags) - known:
        raise ValueError(f"metrics.md: cannot read {name!r}: {spec!r}")
    return Column(name, col_type, identity="identity" in flags, primary_key="PK" in flags,
                  not_null="NOT" in flags or "PK" in flags, unique="UNIQUE" in flags, default=default,
                  references=references)


def _table(paragraph: str) -> Table:
    head, body = paragraph.split(" — ", 1)
    name = re.match(r"`(\w+)`", head).group(1)
    written = re.search(r"\*\*Written by the app\.?\*\*", body)
    app_writes = written is not None
    body = body[: written.start()] if written else body
    indexes: tuple[str, ...] = ()
    if m := re.search(r"Indexes on ((?:`\w+`(?:,\s*)?)+)\.", body):
        indexes = tuple(re.findall(r"`(\w+)`", m.group(1)))
        body = body[: m.start()]
    built = _Builder(name)
    for item in (part.strip() for part in body.strip().rstrip(".").split(";")):
        if not item:
            continue
        if item.startswith("UNIQUE ("):
            built.uniques.append(tuple(re.findall(r"`(\w+)`", item)))
            continue
        fk = next((m.group(1) for r in _PAREN.findall(item) if (m := re.fullmatch(r"FK `(\w+)`", r))), None)
        item = _PAREN.sub("", item)
        m = _NAMES.match(item)
        if not m:
            raise ValueError(f"metrics.md: cannot read an item of {name}: {item!r}")
        for column in re.findall(r"`(\w+)`", m.group(1)):
            built.columns.append(_column(column, m.group(2).strip(), fk))
    return Table(name, tuple(built.columns), tuple(built.uniques), indexes, app_writes)


@cache
def production_tables() -> dict[str, Table]:
    """Every table of the section, by name."""
    text = METRICS.read_text()
    section = text[text.index(SECTION) + len(SECTION):]
    section = section[: section.index("\n## ")]
    paragraphs = [" ".join(p.split()) for p in section.split("\n\n")]
    tables = [_table(p) for p in paragraphs if re.match(r"`\w+`( \([^)]*\))? — ", p)]
    return {t.name: t for t in tables}
