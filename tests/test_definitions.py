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
    assert set(defs.resources) == {"warehouse", "sources"}


def test_code_location_loads_in_a_fresh_process_without_databases(tmp_path):
    # Point the configuration at a server that does not exist: loading must not connect.
    env = {**os.environ, "CHEEKO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "COGNOVA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "WAREHOUSE_HOME": str(tmp_path)}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dagster as dg; from assets.definitions import defs; dg.Definitions.validate_loadable(defs)"],
                   cwd=ROOT, env=env, check=True, timeout=120)
    elapsed = time.perf_counter() - began
    print(f"code location loaded in {elapsed:.1f}s")
    assert not (tmp_path / "pgdata").exists()  # no embedded server was started
