"""Schema migrations: one Alembic history per operational database.

The histories live in ``migrations/cheeko`` and ``migrations/cognova``. The
Alembic configuration is built here rather than read from an ``alembic.ini``,
so the URL always comes from the configuration contract.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from pipelines import postgres
from pipelines.settings import DATABASES

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database: str, url: str) -> Config:
    """An Alembic ``Config`` for ``database`` (``cheeko`` or ``cognova``) at ``url``."""
    if database not in DATABASES:
        raise ValueError(f"no migration history for {database!r}; expected one of {DATABASES}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR / database))
    # Alembic's ini-style options interpolate %; a URL may contain it.
    config.set_main_option("sqlalchemy.url", postgres.sqlalchemy_url(url).replace("%", "%%"))
    config.attributes["database"] = database
    return config


def upgrade(database: str, url: str, revision: str = "head") -> None:
    """Migrate ``database`` up to ``revision``."""
    command.upgrade(alembic_config(database, url), revision)


def downgrade(database: str, url: str, revision: str = "base") -> None:
    """Migrate ``database`` down to ``revision`` (default: drop everything)."""
    command.downgrade(alembic_config(database, url), revision)


def current(database: str, url: str) -> str | None:
    """The revision ``database`` is at, or None before the first migration."""
    engine = create_engine(postgres.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head(database: str) -> str:
    """The newest revision in ``database``'s history."""
    script = ScriptDirectory.from_config(alembic_config(database, "postgresql://unused/x"))
    return script.get_current_head()


def run_migrations() -> None:
    """Body of both histories' ``env.py``: run online against the configured URL.

    Migrations are hand-written SQL, so there is no metadata to autogenerate
    from. The whole upgrade is one transaction (PostgreSQL DDL is
    transactional), so a failed migration leaves the database as it was.
    """
    from alembic import context

    engine = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=False)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
