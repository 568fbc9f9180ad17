"""Alembic environment: the shared logic is pipelines.migrate.run_migrations."""

from pipelines.migrate import run_migrations

run_migrations()
