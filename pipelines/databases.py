"""Where the two operational databases are, per the configuration contract.

A configured URL (``CHEEKO_DATABASE_URL``, ``COGNOVA_DATABASE_URL``) wins;
otherwise the embedded server under ``WAREHOUSE_HOME`` serves the database,
and is started (idempotently) the first time it is asked for.
"""

from __future__ import annotations

from pipelines.embedded import EmbeddedServer
from pipelines.settings import DATABASES, Settings


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
