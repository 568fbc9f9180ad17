"""Shared by the benchmarks: throwaway databases on the configured (or embedded) server."""

from __future__ import annotations

import time

from pipelines import migrate, postgres
from pipelines.databases import database_url
from pipelines.settings import DATABASES, load


def fresh_databases(prefix: str = "bench") -> dict[str, str]:
    """Drop and recreate ``{prefix}_cheeko`` / ``{prefix}_cognova``, migrated; returns their URLs."""
    admin = postgres.with_database(database_url(load(), "cheeko"), "postgres")
    urls = {}
    for name in DATABASES:
        db = f"{prefix}_{name}"
        postgres.drop_database(admin, db)
        postgres.ensure_database(admin, db)
        urls[name] = postgres.with_database(admin, db)
        migrate.upgrade(name, urls[name])
    return urls


def drop_databases(prefix: str = "bench") -> None:
    admin = postgres.with_database(database_url(load(), "cheeko"), "postgres")
    for name in DATABASES:
        postgres.drop_database(admin, f"{prefix}_{name}")


def timed(action) -> float:
    """Seconds ``action()`` takes."""
    began = time.perf_counter()
    action()
    return time.perf_counter() - began
