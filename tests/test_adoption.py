"""Adopting a database the app made: only the pipeline's tables are installed, the app's never touched,
and a database that lacks what the pipeline needs is refused by table and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command

from pipelines import migrate, postgres
from pipelines.settings import CHEEKO, COGNOVA

REPO = Path(__file__).resolve().parents[1]


def app_made(make_databases, database: str = CHEEKO) -> str:
    """A database holding the app's tables as the app's own migrations left them: no stamp of ours."""
    url = make_databases(migrated=False).url(database)
    command.upgrade(migrate.alembic_config(database, url), "head")
    with postgres.connect(url) as conn:
        conn.execute("DROP TABLE alembic_version")
    return url


def catalogue(url: str, schema: str = "public") -> dict[str, list[tuple]]:
    """Every table of ``schema`` with its columns, types, defaults and nullability, and its row count."""
    with postgres.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, column_default, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,)).fetchall()
        out: dict[str, list[tuple]] = {}
        for table, *column in rows:
            out.setdefault(table, []).append(tuple(column))
        for table in out:
            out[table].append(("rows", conn.execute(f'SELECT count(*) FROM {schema}."{table}"').fetchone()[0]))
    return out


def test_an_app_made_database_is_adopted_and_its_tables_left_alone(make_databases):
    url = app_made(make_databases)
    with postgres.connect(url) as conn:
        conn.execute("INSERT INTO sys_user (id, username) VALUES (7, 'kept')")
    before = catalogue(url)
    assert migrate.made_by_app(CHEEKO, url)

    outcome = migrate.upgrade(CHEEKO, url)

    assert outcome.adopted
    assert outcome.revisions == {"cheeko": None, "cheeko_warehouse": migrate.head(CHEEKO)["cheeko_warehouse"]}
    assert catalogue(url) == before  # not one table, column, default or row of the app's changed
    assert set(catalogue(url, "warehouse")) == {"alembic_version", "memory_files", "memory_chunk_sources",
                                                "email_deliveries", "device_streaks", "device_progress",
                                                "learning_progress"}
    # Idempotent: adopting again installs nothing new and still leaves the app alone.
    assert migrate.upgrade(CHEEKO, url).adopted
    assert catalogue(url) == before
    # Downgrading an adopted database removes only what the pipeline made.
    migrate.downgrade(CHEEKO, url)
    assert catalogue(url) == before
    with postgres.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'warehouse'").fetchone()[0] == 0


def test_a_cognova_database_is_adopted_without_installing_anything(make_databases):
    url = app_made(make_databases, COGNOVA)
    before = catalogue(url)
    assert migrate.upgrade(COGNOVA, url).adopted
    assert catalogue(url) == before


def test_adoption_names_every_table_and_column_the_pipeline_lacks(make_databases):
    url = app_made(make_databases)
    with postgres.connect(url) as conn:
        conn.execute("ALTER TABLE analytics_game_attempts DROP COLUMN game_type")
        conn.execute("ALTER TABLE analytics_game_sessions DROP COLUMN mode_type")
        conn.execute("ALTER TABLE rfid_scan_log RENAME COLUMN created_at TO scanned_at")
        conn.execute("ALTER TABLE memory_chunks DROP COLUMN content_hash")
        conn.execute("DROP TABLE ai_ota")
    before = catalogue(url)

    with pytest.raises(migrate.MigrationError) as refused:
        migrate.upgrade(CHEEKO, url)

    lines = str(refused.value).splitlines()
    assert "cannot be adopted" in lines[0]
    problems = [line.strip() for line in lines[1:]]
    assert "cheeko.analytics_game_attempts: no column game_type, which sql/staging/game_attempts.sql reads" in problems
    assert "cheeko.analytics_game_sessions: no column mode_type, which sql/staging/game_sessions.sql reads" in problems
    assert any(p.startswith("cheeko.rfid_scan_log: event_time created_at is not a column of the source table "
                            "(declared in pipelines/source_tables.toml [cheeko.rfid_scan_log]") for p in problems)
    assert "cheeko.rfid_scan_log: no column created_at, which sql/staging/zone_offsets.sql reads" in problems
    assert any(p.startswith("cheeko.ai_ota: no such table in the source database") for p in problems)
    assert "cheeko.memory_chunks.content_hash: missing, and the memory sync (pipelines/memory_sync.py) reads or writes it" in problems
    assert len(problems) == 6, problems
    # Refused means untouched: no pipeline schema either.
    assert catalogue(url) == before
    with postgres.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'warehouse'").fetchone()[0] == 0


def test_warehouse_db_adopt_from_the_command_line(make_databases, tmp_path):
    pair = make_databases(migrated=False)
    url = app_made(make_databases)
    env = {"PATH": "/usr/bin:/bin", "WAREHOUSE_HOME": str(tmp_path), "CHEEKO_DATABASE_URL": url,
           "COGNOVA_DATABASE_URL": pair.cognova, "WAREHOUSE_PSEUDONYM_KEY": "k"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "db", "adopt", "--database", "cheeko"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cheeko: adopted" in done.stdout and "SQL files (staging, marts, reports) bind" in done.stdout
    # An empty database was not made by the app: adopt says so and changes nothing.
    refused = subprocess.run([sys.executable, "-m", "pipelines.cli", "db", "adopt", "--database", "cognova"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "not made by the app" in refused.stdout


def test_a_database_of_the_old_layout_gets_a_clear_error(make_databases):
    url = make_databases(migrated=False).url(CHEEKO)
    with postgres.connect(url) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('cheeko_0003')")
    with pytest.raises(migrate.MigrationError, match="stamped cheeko_0003, a revision of an earlier layout"):
        migrate.upgrade(CHEEKO, url)
