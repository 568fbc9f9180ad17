"""The concurrency pool each asset that writes the warehouse claims (``dagster.yaml`` gives every pool one slot).

The DuckDB file has one writer at a time, so on it every writer shares one pool, ``warehouse_writer``. A DuckLake
commits writers of different tables side by side, but two transactions that each delete from and insert into the
same table (what every load does) conflict at commit (measured: 11 of 20 commits of a second writer failed), so
on a lake the pool is per group of assets whose tables overlap:

- ``warehouse_raw``: both raw groups (they share the ``_warehouse`` bookkeeping tables);
- ``warehouse_rollups``: staging, the marts, their checks and the write-back; also the analyst snapshot, which
  must not copy marts half rebuilt by a backfill (a run that publishes after writing holds every pool it
  writes, so its snapshot is consistent; a publish on its own waits for mart writers, not for raw loads, whose
  tables each change in one transaction);
- ``warehouse_reports``: the report tick reads marts (each query sees one committed state) and writes only
  PostgreSQL, so it no longer queues behind a backfill.

The pool is part of the asset definitions, so it is decided when they load, from ``WAREHOUSE_CATALOG`` alone
(the rest of the configuration is read, and checked, when a run starts).
"""

from __future__ import annotations

import os

from pipelines.settings import LAKE

FILE_POOL = "warehouse_writer"
LAKE_POOLS = {"cheeko_raw": "warehouse_raw", "cognova_raw": "warehouse_raw", "rollups": "warehouse_rollups",
              "reports": "warehouse_reports", "extracts": "warehouse_rollups"}


def lake_configured() -> bool:
    """True when ``WAREHOUSE_CATALOG`` names a DuckLake (read as the definitions load)."""
    return os.environ.get("WAREHOUSE_CATALOG", "").strip().startswith(LAKE)


def writer_pool(group: str) -> str:
    """The pool of the writing assets of ``group`` under the backend ``WAREHOUSE_CATALOG`` names."""
    return LAKE_POOLS[group] if lake_configured() else FILE_POOL
