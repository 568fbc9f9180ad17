"""The tables the Cheeko seed only names are created exactly as ``metrics.md`` gives their production columns.

metrics.md is parsed at test time (:mod:`metrics_doc`), so a migration that
drifts from it fails here: every column with its type, nullability, default
and identity, no column more, primary and unique keys, foreign keys, and the
listed indexes and no others.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metrics_doc import production_tables
from test_schema_matches_seeds import catalogs, connections, read_catalog  # noqa: F401 - fixtures reused

TABLES = production_tables()


def test_the_section_is_read_whole():
    assert set(TABLES) == {"analytics_game_sessions", "analytics_game_attempts", "analytics_media_playback",
                           "rfid_scan_log", "kid_activity_log", "analytics_streaks", "analytics_user_progress",
                           "kid_learning_progress", "game_session"}
    assert {name for name, t in TABLES.items() if t.app_writes} == {"analytics_streaks", "analytics_user_progress",
                                                                   "kid_learning_progress"}
    assert sum(len(t.columns) for t in TABLES.values()) == 92


def _default_matches(conn, documented: str, actual: str | None, column_type: str) -> bool:
    if actual is None:
        return False
    if documented.endswith("()"):
        return actual == documented
    return conn.execute(f"SELECT ({actual}) IS NOT DISTINCT FROM CAST({documented} AS {column_type})").fetchone()[0]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_columns_match_metrics(name, catalogs, connections):  # noqa: F811 - pytest fixtures
    table, catalog, conn = TABLES[name], catalogs["cheeko"], connections["cheeko"]
    actual = catalog.columns.get(name)
    assert actual is not None, f"cheeko.{name} is missing"
    problems = []
    for column in table.columns:
        where = f"cheeko.{name}.{column.name}"
        db = actual.get(column.name)
        if db is None:
            problems.append(f"{where}: missing")
            continue
        if db.type != column.type:
            problems.append(f"{where}: type {db.type}, metrics.md {column.type}")
        if db.not_null != column.not_null:
            problems.append(f"{where}: {'NOT NULL' if db.not_null else 'NULL'}, metrics.md the other")
        if db.identity != column.identity:
            problems.append(f"{where}: identity {db.identity}, metrics.md {column.identity}")
        if column.default is None and db.default is not None:
            problems.append(f"{where}: default {db.default}, metrics.md none")
        elif column.default is not None and not _default_matches(conn, column.default, db.default, db.type):
            problems.append(f"{where}: default {db.default}, metrics.md {column.default}")
    extra = set(actual) - {c.name for c in table.columns}
    if extra:
        problems.append(f"cheeko.{name}: columns metrics.md does not list: {sorted(extra)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_keys_and_indexes_match_metrics(name, catalogs):  # noqa: F811 - pytest fixtures
    table, catalog = TABLES[name], catalogs["cheeko"]
    indexes = catalog.indexes.get(name, [])
    primary = [set(ix.columns) for ix in indexes if ix.primary]
    assert primary == [{c.name for c in table.columns if c.primary_key}]
    unique = {frozenset(ix.columns) for ix in indexes if ix.unique and not ix.primary}
    expected_unique = {frozenset([c.name]) for c in table.columns if c.unique} | {frozenset(u) for u in table.unique_constraints}
    assert unique == expected_unique
    plain = sorted(ix.columns for ix in indexes if not ix.unique)
    assert plain == sorted((column,) for column in table.indexes)
    fks = {(fk.columns, fk.ref_table) for fk in catalog.foreign_keys.get(name, [])}
    assert fks == {((c.name,), c.references) for c in table.columns if c.references}


def test_no_pipeline_code_writes_the_apps_tables():
    """metrics.md: the warehouse never writes the tables the app writes (only the fleet generator, which plays the app)."""
    root = Path(__file__).resolve().parents[1]
    app_tables = "|".join(name for name, t in TABLES.items() if t.app_writes)
    writes = re.compile(rf"(INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|upsert\(conn,)\s*[\"']?({app_tables})\b", re.IGNORECASE)
    sources = [p for p in (root / "pipelines").rglob("*.py") if "generator" not in p.parts]
    sources += list((root / "sql").rglob("*.sql")) + list((root / "assets").rglob("*.py"))
    offending = [f"{p.relative_to(root)}: {m.group(0)}" for p in sources for m in writes.finditer(p.read_text())]
    assert offending == []
