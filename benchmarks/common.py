"""Shared by the benchmarks: throwaway databases on the configured (or embedded) server."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from pipelines import dagster_home, generator, migrate, postgres
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


def instance_on_postgres(home: Path, admin_url: str, database: str) -> None:
    """Make ``home`` a Dagster instance on PostgreSQL as ``warehouse run`` uses it on the embedded defaults:
    deploy/dagster.postgres.yaml in a fresh ``database`` on ``admin_url``'s server (its DAGSTER_PG_* variables set
    here), with events written in batches (pipelines/dagster_home.py). Drop ``database`` afterwards."""
    postgres.drop_database(admin_url, database)
    postgres.ensure_database(admin_url, database)
    server = urlsplit(admin_url)
    shutil.copyfile(dagster_home.ON_POSTGRES, home / "dagster.yaml")
    os.environ.update({"DAGSTER_PG_HOST": server.hostname, "DAGSTER_PG_PORT": str(server.port or 5432),
                       "DAGSTER_PG_USER": server.username or "postgres", "DAGSTER_PG_PASSWORD": server.password or "",
                       "DAGSTER_PG_DB": database, dagster_home.EVENT_BATCH_SIZE[0]: dagster_home.EVENT_BATCH_SIZE[1]})


def drop_databases(prefix: str = "bench") -> None:
    admin = postgres.with_database(database_url(load(), "cheeko"), "postgres")
    for name in DATABASES:
        postgres.drop_database(admin, f"{prefix}_{name}")


def timed(action) -> float:
    """Seconds ``action()`` takes."""
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


END = dt.date(2026, 11, 20)  # fixed, so every benchmark run measures the same dataset


def arguments(doc: str, more=lambda parser: None) -> argparse.Namespace:
    """``--devices`` and ``--days``, defaulting to the size the issues measure (2000 x 90), and what ``more`` adds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    more(parser)
    return parser.parse_args()


def generate_fleet(urls: dict[str, str], args: argparse.Namespace, out_dir: Path) -> generator.Result:
    """A clean fleet of ``args.devices`` x ``args.days`` ending on ``END`` (seed 7)."""
    return generator.generate(urls["cheeko"], urls["cognova"],
                              generator.Options(devices=args.devices, days=args.days, seed=7, end=END),
                              out_dir, progress=lambda _: None)


def query_one(url: str, statement: str, params: dict | None = None) -> tuple:
    """The first row of ``statement``, on a connection that is closed afterwards."""
    with postgres.connect(url) as conn:
        return conn.execute(statement, params).fetchone()


def query_all(url: str, statement: str, params: dict | None = None) -> list[tuple]:
    """Every row of ``statement``, on a connection that is closed afterwards."""
    with postgres.connect(url) as conn:
        return conn.execute(statement, params).fetchall()
