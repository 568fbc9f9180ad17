"""The one way this project opens PostgreSQL connections.

Only this module imports psycopg. Callers get plain ``psycopg.Connection``
objects and use them through their methods; writes to the operational
databases go through :mod:`pipelines.writes`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# Errors that say "try again": the server is starting, the connection
# dropped, or a serializable transaction lost a race.
TRANSIENT_ERRORS = (
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


def server_url(port: int, database: str, host: str = "127.0.0.1", user: str = "postgres") -> str:
    """libpq URL of a database on a local server (the embedded one)."""
    return f"postgresql://{user}@{host}:{port}/{database}"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """A libpq URL in the form SQLAlchemy (and so Alembic) wants for psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def redact(url: str) -> str:
    """The URL with any password replaced, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    """Open a connection; the caller closes it (or uses it as a context manager)."""
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)


@contextmanager
def read_only(url: str) -> Iterator[psycopg.Connection]:
    """A connection whose transaction is REPEATABLE READ, READ ONLY: one snapshot."""
    with connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn
        conn.rollback()


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    """Block until the server at ``url`` accepts connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as err:
            last_error = err
            time.sleep(0.2)
    raise TimeoutError(f"PostgreSQL at {redact(url)} not ready after {timeout:.0f}s: {last_error}")


def ensure_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``admin_url`` if missing; True if created."""
    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (used by tests to start from nothing)."""
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying (see ``TRANSIENT_ERRORS``)."""
    return isinstance(error, TRANSIENT_ERRORS)
