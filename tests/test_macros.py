"""The shared macros (pipelines/macros.py) on a real warehouse (the DuckDB file, or a DuckLake with
--warehouse-backend=ducklake): created once, left alone while their file is unchanged (on a lake: no catalog
change, so no connection reloads the catalog), replaced all together when it changes."""

from __future__ import annotations

import pytest

from pipelines import macros, warehouse

pytestmark = pytest.mark.both_backends


def defined(con) -> dict[str, str]:
    return dict(con.execute("SELECT function_name, macro_definition FROM duckdb_functions() WHERE database_name = "
                            "current_database() AND function_type IN ('macro', 'table_macro')").fetchall())


def test_created_once_and_replaced_when_their_file_changes(warehouse_at, tmp_path, monkeypatch):
    with warehouse.connect(warehouse_at) as con:
        assert macros.ensure(con)
        first = defined(con)
        assert {"trimmed", "normal_mac", "local_day", macros.VERSION_MACRO} <= first.keys()
        assert con.execute("SELECT normal_mac(' AA-bb-CC-dd-EE-ff ')").fetchone()[0] == "aa:bb:cc:dd:ee:ff"
        version = warehouse.lake_version(con)
        assert not macros.ensure(con)
        assert defined(con) == first
        assert warehouse.lake_version(con) == version  # None == None on the file

        changed = tmp_path / "macros.sql"
        changed.write_text(macros.SQL.read_text().replace("nullif(trimmed(zone), '')", "nullif(trimmed(zone), '-')"))
        monkeypatch.setattr(macros, "SQL", changed)
        assert macros.ensure(con)
        assert con.execute("SELECT set_zone('-'), set_zone('')").fetchone() == (None, "")
        assert defined(con)[macros.VERSION_MACRO] != first[macros.VERSION_MACRO]
        if version is not None:
            assert warehouse.lake_version(con) == version + 1  # one transaction for them all
        assert not macros.ensure(con)
