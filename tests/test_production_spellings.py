"""The whole warehouse on databases spelled the way the apps' ORMs spell them.

The same generated fleet is loaded twice: once as our migrations make it
(``timestamp(6) with time zone``, ``uuid`` ids), once respelled as an ORM
might have made it (every time a naive ``timestamp``, read as UTC; every
uuid a ``varchar(36)``; flags ``smallint``; the embedding a ``vector``
without a dimension; no foreign keys). Every raw table extracts from both
and every mart and published table comes out the same, value for value.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines import generator, postgres, rollups, warehouse
from pipelines.marts import MARTS
from pipelines.source_tables import source_tables
from test_extract import extract_tables

END = dt.date(2026, 3, 31)
AS_OF = dt.datetime(2026, 4, 1, 3, 0, tzinfo=dt.UTC)
WINDOW = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2028, 1, 1, tzinfo=dt.UTC))
OPTIONS = generator.Options(devices=16, days=6, seed=31, end=END, messy=True)


def respell(url: str) -> dict[str, int]:
    """Rewrite every column of ``url``'s public schema the way an ORM might have spelled it; counts per change."""
    done = {"naive timestamps": 0, "varchar ids": 0, "smallint flags": 0}
    with postgres.connect(url) as conn:
        for table, name in conn.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE n.nspname = 'public' AND contype = 'f'").fetchall():
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        if conn.execute("SELECT udt_name FROM information_schema.columns WHERE table_name = 'memory_chunks' "
                        "AND column_name = 'embedding'").fetchone() == ("vector",):
            conn.execute("DROP INDEX IF EXISTS idx_memory_chunks_embedding")
            conn.execute("ALTER TABLE memory_chunks ALTER COLUMN embedding TYPE vector")
            done["dimensionless vectors"] = 1
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE table_schema = 'public' AND t.table_type = 'BASE TABLE' AND table_name <> 'alembic_version'").fetchall()
        for table, column, data_type in columns:
            target = f'"{table}"'
            if data_type == "timestamp with time zone":
                conn.execute(f'ALTER TABLE {target} ALTER COLUMN "{column}" TYPE timestamp(6) without time zone '
                             f'USING "{column}" AT TIME ZONE \'UTC\'')
                done["naive timestamps"] += 1
            elif data_type == "uuid":
                conn.execute(f'ALTER TABLE {target} ALTER COLUMN "{column}" DROP DEFAULT, '
                             f'ALTER COLUMN "{column}" TYPE varchar(36) USING "{column}"::text')
                done["varchar ids"] += 1
            elif data_type == "integer" and column in ("status", "gender", "sort", "param_type"):
                conn.execute(f'ALTER TABLE {target} ALTER COLUMN "{column}" TYPE smallint')
                done["smallint flags"] += 1
    return done


def build(pair, path: Path) -> dict[str, list[tuple]]:
    extract_tables(path, {"cheeko": pair.cheeko, "cognova": pair.cognova}, source_tables(), window=WINDOW)
    with warehouse.connect(path) as con:
        rollups.build(con, as_of_time=AS_OF, first_day=END - dt.timedelta(days=5), last_day=END)
        marts = {m.name: _rows(con, f"marts.{m.name}") for m in MARTS}
        rollups.publish(con, pair.cheeko, as_of_date=END)
        marts["quality"] = sorted(rollups.quality_counts(con, as_of_time=AS_OF, cheeko_url=pair.cheeko).items())
    with postgres.connect(pair.cheeko) as conn:
        for table in rollups.PUBLISHED:
            rows = conn.execute(f"SELECT * FROM warehouse.{table}").fetchall()
            marts[f"published {table}"] = sorted(tuple(_plain(v) for v in r[:-1]) for r in rows)  # updated_at aside
    return marts


def _rows(con, table: str) -> list[tuple]:
    return sorted(tuple(_plain(v) for v in row) for row in con.execute(f"SELECT * FROM {table}").fetchall())


def _plain(value):
    """One spelling for values whose type differs only by spelling: a uuid and its text."""
    return str(value) if value is not None and type(value).__name__ == "UUID" else value


@pytest.fixture(scope="module")
def both(make_databases, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spellings")
    ours, theirs = make_databases(), make_databases()
    for pair in (ours, theirs):
        generator.generate(pair.cheeko, pair.cognova, OPTIONS, tmp / f"gen{id(pair)}", progress=lambda _: None)
    changed = {name: respell(url) for name, url in (("cheeko", theirs.cheeko), ("cognova", theirs.cognova))}
    return build(ours, tmp / "ours.duckdb"), build(theirs, tmp / "theirs.duckdb"), changed


def test_the_respelling_touched_every_kind(both):
    _, _, changed = both
    assert changed["cheeko"]["naive timestamps"] > 100 and changed["cheeko"]["varchar ids"] > 20
    assert changed["cheeko"]["smallint flags"] > 5 and changed["cognova"]["naive timestamps"] > 20
    assert changed["cheeko"]["dimensionless vectors"] == 1


@pytest.mark.parametrize("name", [m.name for m in MARTS] + ["quality"] + [f"published {t}" for t in rollups.PUBLISHED])
def test_every_mart_is_the_same_whatever_the_spelling(both, name):
    ours, theirs, _ = both
    assert ours[name], f"{name}: empty on the standard spelling, so the comparison would prove nothing"
    assert theirs[name] == ours[name]
