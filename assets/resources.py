"""Dagster resources: thin wrappers over the engine room's connection helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from assets.instance_storage import hold_storage_connections
from pipelines import settings as settings_module
from pipelines import warehouse
from pipelines.databases import database_url, warehouse_location
from pipelines.embedding import Embedder
from pipelines.postgres import Snapshot


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


class SourceDatabases(dg.ConfigurableResource):
    """Both operational databases, read through one snapshot per database per run.

    The first step that reads a database exports a REPEATABLE READ, READ ONLY
    snapshot of it; every later step of the run reads the same snapshot, so
    the tables of one run are mutually consistent. (That holds for the
    in-process executor the code location uses: one resource per run, and
    ``warehouse run`` is one run.)
    """

    _snapshots: dict[str, Snapshot] = PrivateAttr(default_factory=dict)

    def url(self, database: str) -> str:
        """libpq URL of ``cheeko`` or ``cognova``."""
        return database_url(settings_module.load(), database)

    def snapshot(self, database: str) -> Snapshot:
        """The run's snapshot of ``database``, exported on first use."""
        if database not in self._snapshots:
            self._snapshots[database] = Snapshot(self.url(database))
        return self._snapshots[database]

    @contextmanager
    def attached(self, con: duckdb.DuckDBPyConnection, database: str, step: str) -> Iterator[str]:
        """``database`` attached to a warehouse connection for the ``with`` block; yields the alias to read it by.

        Detached again at the end: the run's steps share one connection, and an attached PostgreSQL catalog makes
        every later ``duckdb_columns()`` / ``duckdb_tables()`` list the source's tables too (4 -> 13 ms a call,
        measured; the marts and the snapshot make dozens). The alias is the step's own (``src_<database>_<step>``):
        a step whose generator Dagster leaves to the garbage collector detaches late, and must not take away the
        attachment another step is reading through."""
        alias = f"src_{database}_{step}"
        warehouse.attach_source(con, alias, self.url(database))
        try:
            yield alias
        finally:
            warehouse.detach_source(con, alias)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _hold_storage_connections(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for snapshot in self._snapshots.values():
            snapshot.close()
        self._snapshots.clear()


def _hold_storage_connections(context: dg.InitResourceContext) -> None:
    """The run's events stored over held connections (:func:`assets.instance_storage.hold_storage_connections`):
    in a run the daemon launched, a new connection per event otherwise. A resource built outside a run has no
    instance."""
    if context.instance is not None:
        hold_storage_connections(context.instance)


class Warehouse(dg.ConfigurableResource):
    """The warehouse: the DuckDB file (``WAREHOUSE_DUCKDB_PATH``, one writer at a time) or, with
    ``WAREHOUSE_CATALOG=ducklake``, a DuckLake (catalog in PostgreSQL, Parquet under ``WAREHOUSE_LAKE_DATA``).

    One connection serves the whole run (opening the file costs tens of
    milliseconds, and this process is the file's only writer anyway); it is
    closed when the run ends.
    """

    _stack: ExitStack | None = PrivateAttr(default=None)
    _con: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The run's read-write connection to the warehouse."""
        if self._con is None:
            self._stack = ExitStack()
            self._con = self._stack.enter_context(warehouse.connect(warehouse_location(settings_module.load())))
        yield self._con

    @property
    def pseudonym_key(self) -> str:
        """The key of the privacy policy's keyed hash (``WAREHOUSE_PSEUDONYM_KEY``)."""
        return settings_module.load().require_pseudonym_key()

    @property
    def extracts(self):
        """Where the analyst snapshots of this warehouse are published (``$WAREHOUSE_HOME/extracts``)."""
        return settings_module.load().extracts

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _hold_storage_connections(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._con = None, None


class EmbeddingModel(dg.ConfigurableResource):
    """The sentence-embedding model (all-MiniLM-L6-v2, bundled, offline), loaded once per run.

    Unset fields follow the configuration contract: ``WAREHOUSE_EMBED_BATCH_SIZE``,
    ``WAREHOUSE_EMBED_DEVICE`` (``auto``: CUDA when present) and ``WAREHOUSE_EMBED_BACKEND``.
    """

    batch_size: int | None = None
    device: str | None = None
    backend: str | None = None
    _embedder: Embedder | None = PrivateAttr(default=None)

    def get(self) -> Embedder:
        """The run's embedder; the model itself loads on the first ``encode``."""
        if self._embedder is None:
            settings = settings_module.load()
            self._embedder = Embedder(batch_size=self.batch_size or settings.embed_batch_size,
                                      device=self.device or settings.embed_device,
                                      backend=self.backend or settings.embed_backend)
        return self._embedder

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._embedder = None
