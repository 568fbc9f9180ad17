"""Alembic histories: upgrade -> downgrade -> upgrade on a real PostgreSQL."""

from __future__ import annotations

import pytest

from pipelines import migrate, postgres
from pipelines.settings import DATABASES


def tables(url: str) -> set[str]:
    with postgres.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        return {name for (name,) in rows}


@pytest.mark.parametrize("database", DATABASES)
def test_upgrade_downgrade_upgrade(make_databases, database):
    url = make_databases(migrated=False).url(database)
    assert set(migrate.current(database, url).values()) == {None}
    assert not migrate.upgrade(database, url).adopted
    first = tables(url)
    assert migrate.current(database, url) == migrate.head(database)
    assert len(first) >= (40 if database == "cheeko" else 17)

    migrate.downgrade(database, url)
    assert tables(url) == set()
    with postgres.connect(url) as conn:  # the pipeline's own schema (cheeko_warehouse) goes too
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'warehouse'").fetchone()[0] == 0
    assert set(migrate.current(database, url).values()) == {None}

    migrate.upgrade(database, url)
    assert tables(url) == first
    assert migrate.current(database, url) == migrate.head(database)


def test_upgrade_is_idempotent(migrated):
    before = tables(migrated.cheeko)
    migrate.upgrade("cheeko", migrated.cheeko)
    assert tables(migrated.cheeko) == before


def test_unknown_database_is_refused():
    with pytest.raises(ValueError, match="no migration history"):
        migrate.alembic_config("payments", "postgresql://x@localhost/payments")
