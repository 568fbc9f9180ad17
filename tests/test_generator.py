"""The fleet generator against a real PostgreSQL: determinism, consistency,
realistic behaviour, every --messy fault, and --append-days."""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines import generator, postgres
from pipelines.generator.assemble import CHEEKO_LOAD_ORDER, COGNOVA_LOAD_ORDER
from pipelines.generator.messy import respell

END = dt.date(2026, 3, 31)  # the data crosses the US and EU DST changes in March
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def fingerprints(url: str, tables: list[str]) -> dict[str, str]:
    """A content hash per table, independent of physical row order."""
    out = {}
    with postgres.connect(url) as conn:
        for table in tables:
            quoted = f'"{table}"'
            out[table] = conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {quoted} t"
            ).fetchone()[0]
    return out


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with postgres.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(url: str, sql: str, params: tuple = ()):
    return query(url, sql, params)[0][0]


@pytest.fixture(scope="module")
def clean(make_databases: Callable, tmp_path_factory: pytest.TempPathFactory):
    """A clean 40-device, 21-day dataset, and the generator's result."""
    pair = make_databases()
    out = tmp_path_factory.mktemp("clean")
    result = generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=40, days=21, seed=11, end=END), out,
                                progress=lambda _: None)
    return pair, result, out


@pytest.fixture(scope="module")
def messy(make_databases: Callable, tmp_path_factory: pytest.TempPathFactory):
    pair = make_databases()
    out = tmp_path_factory.mktemp("messy")
    result = generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=40, days=21, seed=11, end=END, messy=True),
                                out, progress=lambda _: None)
    return pair, result, out


# -- determinism ----------------------------------------------------------------


def test_same_seed_gives_identical_databases(clean, make_databases, tmp_path):
    pair, _, _ = clean
    again = make_databases()
    generator.generate(again.cheeko, again.cognova, generator.Options(devices=40, days=21, seed=11, end=END), tmp_path,
                       progress=lambda _: None)
    assert fingerprints(again.cheeko, CHEEKO_LOAD_ORDER) == fingerprints(pair.cheeko, CHEEKO_LOAD_ORDER)
    assert fingerprints(again.cognova, COGNOVA_LOAD_ORDER) == fingerprints(pair.cognova, COGNOVA_LOAD_ORDER)


def test_another_seed_gives_other_data(clean, make_databases, tmp_path):
    pair, _, _ = clean
    other = make_databases()
    generator.generate(other.cheeko, other.cognova, generator.Options(devices=40, days=21, seed=12, end=END), tmp_path,
                       progress=lambda _: None)
    mine, theirs = fingerprints(pair.cheeko, ["ai_device", "ai_agent_chat_history"]), fingerprints(other.cheeko, ["ai_device", "ai_agent_chat_history"])
    assert mine["ai_device"] != theirs["ai_device"]
    assert mine["ai_agent_chat_history"] != theirs["ai_agent_chat_history"]


def test_refuses_to_generate_over_existing_data(clean, tmp_path):
    pair, _, _ = clean
    with pytest.raises(generator.GeneratorError, match="--reset"):
        generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=5, days=2, end=END), tmp_path, progress=lambda _: None)


# -- consistency -------------------------------------------------------------------


def test_every_table_the_product_fills_has_rows(clean):
    pair, result, _ = clean
    warehouse_written = {"analytics_streaks", "analytics_user_progress", "kid_learning_progress", "memory_chunks", "email_report_history"}
    empty = [t for t in CHEEKO_LOAD_ORDER if t not in warehouse_written and scalar(pair.cheeko, f'SELECT count(*) FROM "{t}"') == 0]
    empty += [f"cognova.{t}" for t in COGNOVA_LOAD_ORDER if scalar(pair.cognova, f'SELECT count(*) FROM "{t}"') == 0]
    assert empty == []
    assert result.total_rows == sum(result.rows.values()) > 10_000


def test_clean_rows_are_internally_consistent(clean):
    pair, _, _ = clean
    url = pair.cheeko
    # Every MAC in an event table belongs to a registered device, in canonical form.
    for table in ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log", "device_token_usage"):
        orphans = scalar(url, f"SELECT count(*) FROM {table} e WHERE NOT EXISTS (SELECT 1 FROM ai_device d WHERE d.mac_address = e.mac_address)")
        assert orphans == 0, table
    macs = [m for (m,) in query(url, "SELECT mac_address FROM ai_device")]
    assert all(MAC.match(m) for m in macs)
    # Stored totals agree with their details when the data is clean.
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens <> input_tokens + output_tokens") == 0
    assert scalar(url, """
        SELECT count(*) FROM analytics_game_sessions s
        JOIN (SELECT session_id, count(*) n, count(*) FILTER (WHERE is_correct) c FROM analytics_game_attempts GROUP BY 1) a USING (session_id)
        WHERE s.total_questions <> a.n OR s.correct_answers <> a.c""") == 0
    # A day's token row counts exactly the chat turns of that device on that local day.
    mismatched = scalar(url, """
        WITH zone AS (
            SELECT d.mac_address, coalesce(k.timezone, p.timezone, 'UTC') AS tz
            FROM ai_device d LEFT JOIN kid_profile k ON k.id = d.kid_id LEFT JOIN parent_profile p ON p.user_id = d.user_id),
        turns AS (
            SELECT h.mac_address, (h.created_at AT TIME ZONE z.tz)::date AS day, count(*) AS n
            FROM ai_agent_chat_history h JOIN zone z USING (mac_address) GROUP BY 1, 2)
        SELECT count(*) FROM device_token_usage u FULL JOIN turns t ON t.mac_address = u.mac_address AND t.day = u.usage_date
        WHERE u.message_count IS DISTINCT FROM t.n""")
    assert mismatched == 0
    # Games end after they start; attempts fall inside their session.
    assert scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE ended_at < started_at") == 0
    assert scalar(url, """SELECT count(*) FROM analytics_game_attempts a JOIN analytics_game_sessions s USING (session_id)
                          WHERE a.attempted_at < s.started_at OR a.attempted_at > coalesce(s.ended_at, 'infinity')""") == 0
    # Nothing happens after the last generated day, nor before a device was set up.
    assert scalar(url, "SELECT max(created_at) FROM ai_agent_chat_history") < dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
    assert scalar(url, """SELECT count(*) FROM ai_agent_chat_history h JOIN ai_device d USING (mac_address)
                          WHERE h.created_at < d.create_date""") == 0
    # Cognova: conversation totals match their messages.
    assert scalar(pair.cognova, """
        SELECT count(*) FROM conversations c JOIN (SELECT conversation_id, count(*) n FROM conversation_messages GROUP BY 1) m
        ON m.conversation_id = c.id WHERE c.message_count <> m.n""") == 0


def test_behaviour_looks_real(clean):
    pair, _, _ = clean
    url = pair.cheeko
    zones = {z for (z,) in query(url, "SELECT DISTINCT timezone FROM parent_profile WHERE timezone IS NOT NULL")}
    assert {"Asia/Kolkata"} <= zones and zones & {"America/New_York", "America/Los_Angeles"} and zones & {"Europe/London", "Europe/Berlin"}
    assert all(z in zoneinfo.available_timezones() for z in zones)
    # New signups during the window, and devices that went quiet (churn).
    assert scalar(url, "SELECT count(*) FROM ai_device WHERE create_date >= %s", (END - dt.timedelta(days=20),)) > 0
    # Streaks that are built and broken: runs of 3+ active days, and gaps.
    days = query(url, """SELECT mac_address, array_agg(DISTINCT usage_date ORDER BY usage_date)
                         FROM device_token_usage GROUP BY 1""")
    longest, broken = 0, 0
    for _, active in days:
        run = 1
        for a, b in zip(active, active[1:]):
            run = run + 1 if (b - a).days == 1 else 1
            broken += (b - a).days > 1
            longest = max(longest, run)
    assert longest >= 3 and broken > 0
    # Children use it after school more than at 3 a.m. local time.
    hours = dict(query(url, """SELECT extract(hour FROM h.created_at AT TIME ZONE coalesce(p.timezone, 'UTC'))::int, count(*)
                               FROM ai_agent_chat_history h JOIN ai_device d USING (mac_address)
                               JOIN parent_profile p ON p.user_id = d.user_id GROUP BY 1"""))
    assert hours.get(17, 0) > 10 * hours.get(3, 0)
    # Several subjects and every game type; both success and failure in Cognova runs.
    assert scalar(url, "SELECT count(DISTINCT subject) FROM analytics_game_attempts") >= 4
    statuses = {s for (s,) in query(pair.cognova, "SELECT DISTINCT status FROM cron_agent_runs")}
    assert {"success", "error", "budget_exceeded", "cancelled", "running"} <= statuses


def test_planted_facts_are_recorded_where_they_are(clean):
    pair, result, out = clean
    lines = (out / "planted_facts.jsonl").read_text().splitlines()
    facts = [json.loads(line) for line in lines]
    assert len(facts) == len(result.facts) > 0
    files = dict(((m, t), c) for m, t, c in query(pair.cheeko, "SELECT mac_id, file_type, content FROM device_memories WHERE file_type = 'personality'"))
    for fact in facts:
        text = files[(fact["mac_id"], fact["file_type"])].split("\n")
        assert text[fact["line"] - 1] == fact["text"]
        assert fact["value"] in fact["text"]
    assert {f["fact"] for f in facts} >= {"favourite_animal", "pet", "best_friend"}


def test_memory_files_are_multi_section_markdown(clean):
    pair, _, _ = clean
    daily = query(pair.cheeko, "SELECT content FROM device_memories WHERE file_type = 'daily' LIMIT 20")
    assert daily
    for (content,) in daily:
        assert content.startswith("# Daily memory ") and content.count("\n## ") >= 3


# -- messy --------------------------------------------------------------------------------


def test_messy_plants_every_fault(messy):
    pair, result, _ = messy
    url = pair.cheeko
    faults = result.faults
    for name in ("mac_respelled", "mac_invalid", "timezone_unknown", "token_total_mismatch", "session_total_mismatch",
                 "duplicate_analytics_game_attempts", "duplicate_analytics_media_playback",
                 "memory_empty", "memory_whitespace", "memory_huge", "memory_emoji_control", "memory_long_line"):
        assert faults.get(name, 0) > 0, name
    assert scalar(url, "SELECT count(*) FROM ai_agent_chat_history WHERE mac_address ~ '-' OR mac_address ~ '[A-F]' OR mac_address ~ '^[0-9a-f]{12}$'") > 0
    assert scalar(url, "SELECT count(*) FROM parent_profile WHERE timezone = ANY(%s)", (["Asia/Bangalore", "IST+5:30", "Mars/Olympus_Mons", "America/NewYork", "GMT+530"],)) \
        + scalar(url, "SELECT count(*) FROM kid_profile WHERE timezone = ANY(%s)", (["Asia/Bangalore", "IST+5:30", "Mars/Olympus_Mons", "America/NewYork", "GMT+530"],)) \
        == faults["timezone_unknown"]
    assert scalar(url, """SELECT count(*) - count(DISTINCT (session_id, question_key, attempted_at)) FROM analytics_game_attempts""") \
        == faults["duplicate_analytics_game_attempts"]
    assert scalar(url, """SELECT count(*) - count(DISTINCT (mac_address, content_id, event_type, occurred_at)) FROM analytics_media_playback""") \
        == faults["duplicate_analytics_media_playback"]
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens <> input_tokens + output_tokens") == faults["token_total_mismatch"]
    future = sum(v for k, v in faults.items() if k.startswith("future_"))
    assert future > 0
    assert scalar(url, """SELECT (SELECT count(*) FROM ai_agent_chat_history WHERE created_at > %(t)s)
                               + (SELECT count(*) FROM analytics_game_attempts WHERE attempted_at > %(t)s)
                               + (SELECT count(*) FROM analytics_media_playback WHERE occurred_at > %(t)s)
                               + (SELECT count(*) FROM rfid_scan_log WHERE scanned_at > %(t)s)""",
                  {"t": dt.datetime(2026, 4, 2, tzinfo=dt.UTC)}) == future
    sizes = dict(query(url, "SELECT file_type || ':' || CASE WHEN content = '' THEN 'empty' WHEN btrim(content, E' \\t\\n') = '' THEN 'blank' "
                            "WHEN length(content) > 2000000 THEN 'huge' ELSE 'other' END, count(*) FROM device_memories WHERE file_type = 'scratch' GROUP BY 1"))
    assert sizes.get("scratch:empty") == 1 and sizes.get("scratch:blank") == 1 and sizes.get("scratch:huge") == 1


def test_respell_keeps_the_device():
    mac = "24:0a:c4:1b:2c:3d"
    dashed, bare, mixed = (respell(mac, style) for style in range(3))
    assert dashed == "24-0A-C4-1B-2C-3D"
    assert bare == "240ac41b2c3d"
    assert mixed != mac and mixed.lower() == mac and mixed != mixed.lower()
    assert {re.sub(r"[^0-9a-f]", "", s.lower()) for s in (dashed, bare, mixed)} == {"240ac41b2c3d"}


# -- append --------------------------------------------------------------------------------


def test_append_days_continues_updates_and_deletes(make_databases, tmp_path):
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=30, days=10, seed=5, end=END), tmp_path, progress=lambda _: None)
    before = fingerprints(pair.cheeko, ["content_library", "device_playlist", "sys_dict_data"])
    max_update = scalar(pair.cheeko, "SELECT max(updated_at) FROM device_memories")
    chat_before = scalar(pair.cheeko, "SELECT count(*) FROM ai_agent_chat_history")
    old_chat = fingerprints(pair.cheeko, ["ai_agent_chat_history"])["ai_agent_chat_history"]
    old_ids = [str(i) for (i,) in query(pair.cheeko, "SELECT id FROM ai_agent_chat_history")]
    daily_before = scalar(pair.cheeko, "SELECT count(*) FROM device_memories WHERE file_type = 'daily' AND file_date <= %s", (END,))

    result = generator.append(pair.cheeko, pair.cognova, 2, tmp_path, progress=lambda _: None)

    assert (result.start, result.end) == (END + dt.timedelta(days=1), END + dt.timedelta(days=2))
    new_days = scalar(pair.cheeko, "SELECT count(DISTINCT usage_date) FROM device_token_usage WHERE usage_date > %s", (END,))
    assert new_days == 2
    assert scalar(pair.cheeko, "SELECT count(*) FROM ai_agent_chat_history") > chat_before
    # Existing event rows are untouched: the old ones hash the same.
    old_again = scalar(pair.cheeko, "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY t::text)) "
                                    "FROM ai_agent_chat_history t WHERE id = ANY(%s::uuid[])", (old_ids,))
    assert old_again == old_chat
    # Updates move update columns forward; deletes remove rows from dimensions.
    assert scalar(pair.cheeko, "SELECT count(*) FROM device_memories WHERE updated_at > %s AND file_type = 'personality'", (max_update,)) >= 3
    assert scalar(pair.cheeko, "SELECT count(*) FROM device_memories WHERE file_type = 'daily' AND file_date <= %s", (END,)) == daily_before - 2
    after = fingerprints(pair.cheeko, ["content_library", "device_playlist", "sys_dict_data"])
    assert all(before[t] != after[t] for t in before)
    assert scalar(pair.cognova, "SELECT count(*) FROM tasks WHERE modified_at::date = %s", (END + dt.timedelta(days=2),)) >= 5
    meta = json.loads(scalar(pair.cheeko, "SELECT param_value FROM sys_params WHERE param_code = 'warehouse.generator'"))
    assert meta["end"] == (END + dt.timedelta(days=2)).isoformat()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["kind"] for r in manifest["runs"]] == ["generate", "append"]


def test_append_needs_a_generated_dataset(make_databases, tmp_path):
    pair = make_databases()
    with pytest.raises(generator.GeneratorError, match="run generate first"):
        generator.append(pair.cheeko, pair.cognova, 1, tmp_path, progress=lambda _: None)


@pytest.mark.parametrize(("devices", "days", "is_messy"), [(1, 1, False), (2, 3, True), (5, 2, False), (3, 1, True)])
def test_tiny_fleets_build_with_typed_columns(devices, days, is_messy):
    """Quiet days give empty arrays; every column must still get its type."""
    import polars as pl

    from pipelines.generator.assemble import build_append, build_initial

    for seed in range(3):
        data = build_initial(seed, devices, days, END, is_messy, progress=lambda _: None)
        appended = build_append(data.meta, 2, progress=lambda _: None)
        for dataset in (data, appended):
            untyped = [(t, c) for (_, t), f in dataset.tables.items() for c, ty in f.schema.items() if ty == pl.Object]
            assert untyped == []
