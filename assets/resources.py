"""Dagster resources: thin wrappers over the engine room's connection helpers."""

from __future__ import annotations

import dagster as dg

from pipelines import settings as settings_module
from pipelines.databases import database_url


class OperationalDatabase(dg.ConfigurableResource):
    """One operational PostgreSQL database (``cheeko`` or ``cognova``).

    The URL comes from the configuration contract (``CHEEKO_DATABASE_URL`` /
    ``COGNOVA_DATABASE_URL``), falling back to the embedded server, which is
    started on first use, never while definitions load.
    """

    database: str

    def url(self) -> str:
        """libpq URL of this database."""
        return database_url(settings_module.load(), self.database)
