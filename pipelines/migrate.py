"""Schema migrations: Alembic histories, and adopting a database an app created.

Each operational database has the app's own schema and, for Cheeko, the
pipeline's tables beside it (schema ``warehouse``). Each is one Alembic
history under ``migrations/``:

- ``cheeko`` and ``cognova``: the apps' tables. In production Prisma and
  Drizzle make them; these histories stand in for the apps' migrations on
  the embedded databases and in tests.
- ``cheeko_warehouse``: what the pipeline owns in Cheeko (memory-sync state,
  email claims, published progress), versioned in ``warehouse.alembic_version``.

:func:`upgrade` on a database whose app tables exist without our version
stamp (a production database the app made) adopts it: the app's history is
never run there, the app's tables are checked against what the pipeline
needs (:mod:`pipelines.adoption`), and only the pipeline's history is applied.
The Alembic configuration is built here rather than read from an
``alembic.ini``, so the URL always comes from the configuration contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, text

from pipelines import postgres
from pipelines.settings import DATABASES

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Each database's histories, in the order they upgrade (downgrade goes the other way).
HISTORIES = {"cheeko": ("cheeko", "cheeko_warehouse"), "cognova": ("cognova",)}
APP_HISTORIES = frozenset(DATABASES)
# Histories versioned inside a schema of their own rather than in public.alembic_version.
VERSION_SCHEMA = {"cheeko_warehouse": "warehouse"}


class MigrationError(RuntimeError):
    """A database cannot be migrated or adopted as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Outcome:
    """What :func:`upgrade` did to one database."""

    database: str
    adopted: bool  # the app made the database: only the pipeline's histories ran
    revisions: dict[str, str | None]


def alembic_config(history: str, url: str) -> Config:
    """An Alembic ``Config`` for ``history`` (``cheeko``, ``cheeko_warehouse`` or ``cognova``) at ``url``."""
    if not (MIGRATIONS_DIR / history / "versions").is_dir() or history not in {h for hs in HISTORIES.values() for h in hs}:
        raise ValueError(f"no migration history for {history!r}; expected one of "
                         f"{sorted(h for hs in HISTORIES.values() for h in hs)}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR / history))
    # Alembic's ini-style options interpolate %; a URL may contain it.
    config.set_main_option("sqlalchemy.url", postgres.sqlalchemy_url(url).replace("%", "%%"))
    config.attributes["history"] = history
    config.attributes["version_table_schema"] = VERSION_SCHEMA.get(history)
    return config


def _histories(database: str) -> tuple[str, ...]:
    if database not in HISTORIES:
        raise ValueError(f"no migration history for {database!r}; expected one of {DATABASES}")
    return HISTORIES[database]


def _revision_in(history: str, url: str) -> str | None:
    engine = create_engine(postgres.sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            opts = {"version_table_schema": VERSION_SCHEMA[history]} if history in VERSION_SCHEMA else {}
            return MigrationContext.configure(conn, opts=opts).get_current_revision()
    finally:
        engine.dispose()


def current(database: str, url: str) -> dict[str, str | None]:
    """The revision of each of ``database``'s histories (None: not applied)."""
    return {history: _revision_in(history, url) for history in _histories(database)}


def head(database: str) -> dict[str, str]:
    """The newest revision of each of ``database``'s histories."""
    return {history: ScriptDirectory.from_config(alembic_config(history, "postgresql://unused/x")).get_current_head()
            for history in _histories(database)}


def made_by_app(database: str, url: str) -> bool:
    """True when the app's tables are there but our app history never ran: a database the app created."""
    if _revision_in(database, url) is not None:
        return False
    from pipelines.source_tables import source_tables

    names = [t.name for t in source_tables() if t.database == database]
    with postgres.connect(url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s))",
                            (names,)).fetchone()[0]


def _check_known(history: str, url: str) -> None:
    revision = _revision_in(history, url)
    script = ScriptDirectory.from_config(alembic_config(history, "postgresql://unused/x"))
    if revision is not None and revision not in {r.revision for r in script.walk_revisions()}:
        raise MigrationError(
            f"{postgres.redact(url)} is stamped {revision}, a revision of an earlier layout of this project's "
            f"migrations (before the production columns); this database cannot be upgraded in place. Recreate it: "
            f"drop the database (for the embedded server, `warehouse pg stop` and remove $WAREHOUSE_HOME/pgdata), "
            f"then `warehouse db upgrade` and `warehouse generate`")


def upgrade(database: str, url: str, revision: str = "head") -> Outcome:
    """Migrate ``database`` up to ``revision`` (default: every history's head), adopting an app-made database.

    A database the app created is adopted: its tables are checked (a
    :class:`MigrationError` names each table and column the pipeline needs
    and misses) and only the pipeline's own histories run.
    """
    adopted = made_by_app(database, url)
    if adopted:
        adopt(database, url)
    histories = [h for h in _histories(database) if not (adopted and h in APP_HISTORIES)]
    for history in histories:
        _check_known(history, url)
    if revision != "head":
        owners = [h for h in histories if _has_revision(h, revision)]
        if not owners:
            raise MigrationError(f"{database}: no revision {revision!r} in {', '.join(histories)}")
        histories = owners
    for history in histories:
        command.upgrade(alembic_config(history, url), revision)
    return Outcome(database, adopted, current(database, url))


def adopt(database: str, url: str) -> list[str]:
    """Check that a database the app made holds what the pipeline needs, then install the pipeline's tables.

    Never touches the app's tables. Raises :class:`MigrationError` listing
    every table and column the pipeline needs and the database lacks; returns
    what was checked (one line each) when it holds them.
    """
    from pipelines import adoption

    problems, checked = adoption.check(database, url)
    if problems:
        raise MigrationError(f"{database} ({postgres.redact(url)}) cannot be adopted: it lacks what the pipeline "
                             f"reads or writes:\n  " + "\n  ".join(problems))
    for history in _histories(database):
        if history not in APP_HISTORIES:
            _check_known(history, url)
            command.upgrade(alembic_config(history, url), "head")
    return checked


def _has_revision(history: str, revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config(history, "postgresql://unused/x"))
    return revision in {r.revision for r in script.walk_revisions()}


def downgrade(database: str, url: str, revision: str = "base") -> None:
    """Migrate ``database`` down to ``revision`` (default: drop everything this project made).

    On an adopted database only the pipeline's histories are downgraded: the
    app's tables are the app's.
    """
    histories = [h for h in reversed(_histories(database))
                 if not (h in APP_HISTORIES and _revision_in(h, url) is None)]
    if revision != "base":
        histories = [h for h in histories if _has_revision(h, revision)]
    for history in histories:
        command.downgrade(alembic_config(history, url), revision)
        schema = VERSION_SCHEMA.get(history)
        if schema and revision == "base":
            _drop_version_schema(url, schema)


def _drop_version_schema(url: str, schema: str) -> None:
    """Drop ``schema`` when only its version table is left (the pipeline's schema goes with its last table)."""
    with postgres.connect(url) as conn:
        others = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE n.nspname = %s AND c.relname <> 'alembic_version' AND c.relkind IN ('r', 'v', 'm', 'S')",
                              (schema,)).fetchone()[0]
        if others == 0:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # a name from VERSION_SCHEMA, not a value
            conn.commit()


def run_migrations() -> None:
    """Body of every history's ``env.py``: run online against the configured URL.

    Migrations are hand-written SQL, so there is no metadata to autogenerate
    from. The whole upgrade is one transaction (PostgreSQL DDL is
    transactional), so a failed migration leaves the database as it was. A
    history versioned in a schema of its own creates that schema first.
    """
    from alembic import context

    schema = context.config.attributes.get("version_table_schema")
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            if schema:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                connection.execute(text(f"COMMENT ON SCHEMA \"{schema}\" IS "
                                        f"'companion-warehouse pipeline state; written only by the pipeline'"))
                connection.commit()
            context.configure(connection=connection, transaction_per_migration=False, version_table_schema=schema)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
