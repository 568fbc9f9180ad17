"""The privacy policy (``privacy.toml``), applied as the warehouse reads each row.

The policy gives every source column a rule, ``copy`` included, and fails
closed: a column it does not name is *withheld* (:data:`WITHHELD`), never
read, until someone classifies it. :func:`select_expression` turns a source
column into the DuckDB expression that reads it: a dropped or withheld column
is never selected, so a secret never leaves PostgreSQL; hashed, coarsened and
length-only columns are transformed in the same ``SELECT`` that copies the rows.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

POLICY_FILE = Path(__file__).with_name("privacy.toml")
RULES = ("copy", "hash", "year", "length", "drop")
WITHHELD = "withheld"  # what a column the policy does not name gets: not read, like "drop", until classified


class PolicyError(ValueError):
    """``privacy.toml`` is malformed; the message names the table and rule."""


@cache
def policy(path: Path = POLICY_FILE) -> dict[tuple[str, str], dict[str, str]]:
    """``{(database, table): {column: rule}}`` for every column the policy names."""
    raw = tomllib.loads(path.read_text())
    out: dict[tuple[str, str], dict[str, str]] = {}
    for database, tables in raw.items():
        for table, rules in tables.items():
            columns: dict[str, str] = {}
            for rule, names in rules.items():
                if rule not in RULES:
                    raise PolicyError(f"{database}.{table}: unknown rule {rule!r}; expected one of {RULES}")
                for name in names:
                    if name in columns:
                        raise PolicyError(f"{database}.{table}.{name}: named by both {columns[name]!r} and {rule!r}")
                    columns[name] = rule
            out[(database, table)] = columns
    return out


def rule(database: str, table: str, column: str) -> str:
    """The policy's rule for a column: one of :data:`RULES`, or :data:`WITHHELD` when the policy does not name it."""
    return policy().get((database, table), {}).get(column, WITHHELD)


def unclassified(database: str, table: str, columns: list[str]) -> list[str]:
    """The columns of ``columns`` the policy does not name: withheld until someone classifies them."""
    return [c for c in columns if rule(database, table, c) == WITHHELD]


def is_read(rule_name: str) -> bool:
    """Whether a column under ``rule_name`` is read from the source at all."""
    return rule_name not in ("drop", WITHHELD)


def reveals_more(new: str, old: str | None) -> bool:
    """Whether values loaded under ``old`` (None: not recorded) show more than ``new`` allows, so they must be
    rewritten or removed: any change to a rule other than ``copy``; an unrecorded one unless ``new`` is ``copy``."""
    return new != "copy" and new != old


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_expression(rule_name: str, column: str, warehouse_type: str) -> tuple[str, str] | None:
    """``(expression, warehouse type)`` reading ``column`` under ``rule_name``; None when it is not read.

    ``hash`` takes the key as the first bound parameter ``$key``.
    """
    col = quote(column)
    if not is_read(rule_name):
        return None
    if rule_name == "hash":
        # Keyed SHA-256 of the normalised value: stable across tables, useless without the key.
        return f"CASE WHEN {col} IS NULL THEN NULL ELSE sha256($key || lower(trim(CAST({col} AS VARCHAR)))) END", "VARCHAR"
    if rule_name == "year":
        return f"make_date(year({col}), 1, 1)", "DATE"
    if rule_name == "length":
        return f"length(CAST({col} AS VARCHAR))", "BIGINT"
    if warehouse_type == "JSON":
        return f"CAST({col} AS JSON)", "JSON"
    return col, warehouse_type
