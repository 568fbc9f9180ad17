"""The markdown preview each raw table and mart shows in its materialization's metadata (``warehouse.preview``)."""

from __future__ import annotations

import duckdb

from pipelines import warehouse


def test_a_preview_is_a_markdown_table_of_the_first_rows_with_cells_made_safe():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts; CREATE TABLE marts.t (id INTEGER, note VARCHAR, seen_at TIMESTAMPTZ)")
    assert warehouse.preview(con, "marts.t") == "(no rows)"
    con.execute("SET TimeZone = 'UTC'")
    con.execute("INSERT INTO marts.t VALUES (1, 'a | b\nc', '2026-11-30 10:00:00+00'), (2, NULL, NULL), "
                "(3, repeat('x', 50), NULL)")
    assert warehouse.preview(con, "marts.t", limit=3).splitlines() == [
        "| id | note | seen_at |",
        "|---|---|---|",
        "| 1 | a \\| b c | 2026-11-30 10:00:00+00:00 |",
        "| 2 |  |  |",
        f"| 3 | {'x' * 37}... |  |",
    ]
    assert len(warehouse.preview(con, "marts.t", limit=2).splitlines()) == 4
