"""The asset graph's lineage is the SQL's: every edge into a staging table, mart or the reports is a table
its SQL reads, and every table a SQL file reads is an edge. Parsed here independently of pipelines.lineage."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from assets.definitions import defs
from assets.memory import MEMORY_CHUNKS_KEY
from assets.reports import EMAIL_REPORTS_KEY
from pipelines import lineage

SQL = Path(__file__).resolve().parents[1] / "sql"
SCHEMAS = ("raw_cheeko", "raw_cognova", "staging", "marts")


def _tables_read(path: Path) -> set[dg.AssetKey]:
    text = re.sub(r"--.*", "", path.read_text())
    found = {dg.AssetKey([schema, table]) for schema, table in re.findall(rf"\b({'|'.join(SCHEMAS)})\.(\w+)\b", text)}
    for staging in (SQL / "staging").glob("*.sql"):
        for macro in re.findall(r"MACRO (\w+)\([^)]*\) AS TABLE", staging.read_text()):
            if re.search(rf"\b{macro}\(", text):
                found.add(dg.AssetKey(["staging", staging.stem]))
    return found - ({dg.AssetKey(["staging", path.stem])} if path.parent.name == "staging" else set())


def test_every_sql_file_is_an_asset_whose_inputs_are_the_tables_it_reads():
    graph = defs.resolve_asset_graph()
    files = sorted(SQL.glob("*.sql")) + sorted(p for p in (SQL / "staging").glob("*.sql") if p.stem != "macros")
    assert len(files) == 13 + 10
    for path in files:
        key = dg.AssetKey(["staging" if path.parent.name == "staging" else "marts", path.stem])
        assert graph.get(key).parent_keys == _tables_read(path), path


def test_the_reports_read_what_their_queries_read():
    graph = defs.resolve_asset_graph()
    wanted = set().union(*(_tables_read(p) for p in (SQL / "reports").glob("*.sql")))
    assert graph.get(EMAIL_REPORTS_KEY).parent_keys == wanted
    # Found wrong when lineage was typed by hand: the reports read these, and not fleet_daily.
    assert {dg.AssetKey(["raw_cognova", "token_usage"]), dg.AssetKey(["raw_cheeko", "content_library"])} <= wanted
    assert dg.AssetKey(["marts", "fleet_daily"]) not in wanted


def test_lineage_fixed_where_hand_typed_lineage_was_wrong():
    graph = defs.resolve_asset_graph()
    monthly = graph.get(dg.AssetKey(["marts", "token_usage_monthly"])).parent_keys
    assert monthly == {dg.AssetKey(["staging", "priced_usage"])}
    devices = graph.get(dg.AssetKey(["staging", "devices"])).parent_keys
    assert {dg.AssetKey(["raw_cheeko", "kid_profile"]), dg.AssetKey(["raw_cheeko", "parent_profile"])} <= devices
    assert graph.get(MEMORY_CHUNKS_KEY).parent_keys == {dg.AssetKey(["cheeko", "device_memories"])}


def test_a_comment_naming_a_table_is_not_a_read(tmp_path):
    sql = tmp_path / "x.sql"
    sql.write_text("-- see marts.RULES and staging.devices\nSELECT * FROM /* raw_cheeko.ai_device */ staging.chat_turns")
    assert lineage.reads(sql) == {"staging.chat_turns"}
