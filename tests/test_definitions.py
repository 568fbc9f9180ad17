"""The Dagster code location loads offline, fast, without touching a database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_are_loadable():
    from assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert set(defs.resources) == {"warehouse", "sources", "embedding_model"}


def test_code_location_loads_in_a_fresh_process_without_databases(tmp_path):
    # Embedded defaults in an empty home: loading must neither start the server nor open the warehouse.
    env = {k: v for k, v in os.environ.items() if k not in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL", "WAREHOUSE_DUCKDB_PATH")}
    env["WAREHOUSE_HOME"] = str(tmp_path)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys, dagster as dg; from assets.definitions import defs; dg.Definitions.validate_loadable(defs); "
                    "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'a model library loaded'"],
                   cwd=ROOT, env=env, check=True, timeout=120)
    elapsed = time.perf_counter() - began
    print(f"code location loaded in {elapsed:.1f}s")
    assert list(tmp_path.iterdir()) == []  # no server started, no warehouse file created
