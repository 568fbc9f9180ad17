"""The concurrency pool each asset that writes the warehouse claims (``dagster.yaml`` gives every pool one slot).

The DuckDB file has one writer at a time, so on it every writer shares one pool, ``warehouse_writer``. A DuckLake
commits writers of different tables side by side, but two transactions that delete from the same table conflict
(measured: 12 of 20 commits of a second writer failed), so on a lake the pool is per group of assets whose
tables overlap: both raw groups write the ``_warehouse`` bookkeeping tables (one pool), the rollups write
``staging``, ``marts`` and their own state, the reports and the analyst snapshot read only. The hourly report
tick and a backfill no longer queue behind each other.

The pool is part of the asset definitions, so it is decided when they load, from ``WAREHOUSE_CATALOG`` alone
(the rest of the configuration is read, and checked, when a run starts).
"""

from __future__ import annotations

import os

from pipelines.settings import LAKE

FILE_POOL = "warehouse_writer"
LAKE_POOLS = {"cheeko_raw": "warehouse_raw", "cognova_raw": "warehouse_raw", "rollups": "warehouse_rollups",
              "reports": "warehouse_reports", "extracts": "warehouse_extracts"}


def writer_pool(group: str) -> str:
    """The pool of the writing assets of ``group`` under the backend ``WAREHOUSE_CATALOG`` names."""
    if not os.environ.get("WAREHOUSE_CATALOG", "").strip().startswith(LAKE):
        return FILE_POOL
    return LAKE_POOLS[group]
