"""Where the two operational databases and the warehouse are, per the configuration contract.

A configured URL (``CHEEKO_DATABASE_URL``, ``COGNOVA_DATABASE_URL``) wins;
otherwise the embedded server under ``WAREHOUSE_HOME`` serves the database,
and is started (idempotently) the first time it is asked for.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.embedded import EmbeddedServer
from pipelines.settings import CATALOG_DATABASE, DATABASES, Settings
from pipelines.warehouse import Lake


def database_url(settings: Settings, database: str, *, start_embedded: bool = True) -> str:
    """libpq URL of ``cheeko`` or ``cognova``; starts the embedded server if it serves it."""
    configured = settings.database_url(database)
    if configured:
        return configured
    server = EmbeddedServer.from_settings(settings)
    if start_embedded:
        server.start()
    return server.url(database)


def database_urls(settings: Settings, *, start_embedded: bool = True) -> dict[str, str]:
    """URLs of both databases, keyed by name."""
    return {name: database_url(settings, name, start_embedded=start_embedded) for name in DATABASES}


def warehouse_location(settings: Settings, *, start_embedded: bool = True) -> Path | Lake:
    """Where the warehouse is (``WAREHOUSE_CATALOG``): the DuckDB file, or a DuckLake whose catalog is the
    configured database or, for plain ``ducklake``, ``CATALOG_DATABASE`` on the embedded server (created, and
    the server started, the first time it is asked for)."""
    if not settings.uses_lake:
        return settings.duckdb_path
    catalog = settings.lake_catalog_url
    if catalog is None:
        server = EmbeddedServer.from_settings(settings)
        if start_embedded:
            server.start(databases=(CATALOG_DATABASE,))
        catalog = server.url(CATALOG_DATABASE)
    return Lake(catalog_url=catalog, data_path=settings.lake_data)
