"""The fleet generator against a real PostgreSQL: determinism, consistency,
realistic behaviour, every --messy fault, and --append-days."""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Callable

import pytest

from pipelines import generator, postgres
from pipelines.generator.assemble import CHEEKO_LOAD_ORDER, COGNOVA_LOAD_ORDER, horizon
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
    # Nothing happens after the end of the last local day anywhere, nor before a device was set up.
    as_of = dt.datetime.fromtimestamp(horizon(END), dt.UTC)
    late = scalar(url, """SELECT (SELECT count(*) FROM ai_agent_chat_history WHERE created_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_game_attempts WHERE attempted_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_media_playback WHERE occurred_at >= %(t)s)
                               + (SELECT count(*) FROM rfid_scan_log WHERE scanned_at >= %(t)s)
                               + (SELECT count(*) FROM kid_activity_log WHERE occurred_at >= %(t)s)
                               + (SELECT count(*) FROM ai_device WHERE last_connected_at >= %(t)s)
                               + (SELECT count(*) FROM device_memories WHERE updated_at >= %(t)s)
                               + (SELECT count(*) FROM music_playlist WHERE created_at >= %(t)s)""", {"t": as_of})
    assert late == 0
    for table, column in (("analytics_game_sessions", "started_at"), ("analytics_media_playback", "occurred_at"),
                          ("rfid_scan_log", "scanned_at"), ("kid_activity_log", "occurred_at")):
        before_setup = scalar(url, f"""SELECT count(*) FROM {table} e JOIN ai_device d ON d.mac_address = e.mac_address
                                        WHERE e.{column} < d.create_date""") if table != "kid_activity_log" else scalar(url, """
            SELECT count(*) FROM kid_activity_log a WHERE a.occurred_at < (SELECT min(d.create_date) FROM ai_device d WHERE d.kid_id = a.kid_id)""")
        assert before_setup == 0, table
    # A device was last connected at its last event.
    assert scalar(url, """SELECT count(*) FROM ai_device d JOIN (SELECT mac_address, max(created_at) t FROM ai_agent_chat_history GROUP BY 1) h
                          USING (mac_address) WHERE d.last_connected_at < h.t""") == 0
    assert scalar(url, "SELECT count(*) FROM sys_user_token t JOIN sys_user u ON u.id = t.user_id WHERE t.created_at < u.created_at") == 0
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
    assert scalar(url, """SELECT count(*) FROM kid_profile k JOIN parent_profile p ON p.user_id = k.user_id
                          WHERE k.timezone IS NOT NULL AND k.timezone IS DISTINCT FROM p.timezone""") > 0
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE avg_ttft_seconds IS NULL") > 0
    assert scalar(url, "SELECT count(*) FROM rfid_scan_log WHERE resolved_type = 'series'") > 0
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
    by_child: dict[tuple[int, str], set[str]] = {}
    for fact in facts:
        by_child.setdefault((fact["kid_id"], fact["fact"]), set()).add(fact["value"])
    assert all(len(values) == 1 for values in by_child.values())


def test_memory_files_are_multi_section_markdown(clean):
    pair, _, _ = clean
    daily = query(pair.cheeko, "SELECT content FROM device_memories WHERE file_type = 'daily' LIMIT 20")
    assert daily
    for (content,) in daily:
        assert content.startswith("# Daily memory ") and content.count("\n## ") >= 3


# -- messy --------------------------------------------------------------------------------


BAD_ZONES = ["Asia/Bangalore", "IST+5:30", "Mars/Olympus_Mons", "America/NewYork", "GMT+530"]
CANONICAL = "'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'"
NORMALISABLE = "'^[0-9a-f]{12}$'"


def _mac_faults(url: str, table: str, column: str = "mac_address") -> tuple[int, int]:
    """(respelled, invalid) rows: not canonical but normalisable, and not normalisable at all."""
    normalised = f"regexp_replace(lower({column}), '[^0-9a-z]', '', 'g')"
    return tuple(query(url, f"""SELECT count(*) FILTER (WHERE {column} !~ {CANONICAL} AND {normalised} ~ {NORMALISABLE}
                                                             AND length({column}) IN (12, 17)),
                                       count(*) FILTER (WHERE NOT ({normalised} ~ {NORMALISABLE} AND length({column}) IN (12, 17)))
                                FROM {table}""")[0])


def test_messy_plants_every_fault_exactly_as_counted(messy):
    pair, result, _ = messy
    url, faults = pair.cheeko, result.faults
    for name in ("mac_respelled", "mac_invalid", "timezone_unknown", "token_total_mismatch", "session_total_mismatch",
                 "duplicate_analytics_game_attempts", "duplicate_analytics_media_playback", "duplicate_rfid_scan_log",
                 "duplicate_ai_agent_chat_history", "future_ai_agent_chat_history", "future_analytics_game_attempts",
                 "future_analytics_media_playback", "future_rfid_scan_log", "memory_empty", "memory_whitespace",
                 "memory_huge", "memory_emoji_control", "memory_long_line"):
        assert faults.get(name, 0) > 0, name
    respelled = invalid = 0
    for table, column in (("ai_agent_chat_history", "mac_address"), ("analytics_media_playback", "mac_address"),
                          ("rfid_scan_log", "mac_address"), ("device_token_usage", "mac_address"),
                          ("device_memories", "mac_id"), ("analytics_game_sessions", "mac_address"),
                          ("analytics_game_attempts", "mac_address")):
        r, i = _mac_faults(url, table, column)
        respelled, invalid = respelled + r, invalid + i
    # Duplicated rows repeat a respelled or invalid row never (faults are disjoint), so counts add up exactly.
    assert (respelled, invalid) == (faults["mac_respelled"], faults["mac_invalid"])
    zones = scalar(url, "SELECT (SELECT count(*) FROM parent_profile WHERE timezone = ANY(%(z)s)) "
                        "+ (SELECT count(*) FROM kid_profile WHERE timezone = ANY(%(z)s))", {"z": BAD_ZONES})
    assert zones == faults["timezone_unknown"]
    natural_keys = {
        "analytics_game_attempts": "session_id, question_key, attempted_at",
        "analytics_media_playback": "mac_address, content_id, event_type, occurred_at",
        "rfid_scan_log": "uid, mac_address, scanned_at",
        "ai_agent_chat_history": "session_id, chat_type, content, created_at",
    }
    for table, natural_key in natural_keys.items():
        assert scalar(url, f"SELECT count(*) - count(DISTINCT ({natural_key})) FROM {table}") == faults[f"duplicate_{table}"], table
    after = dt.datetime.combine(END, dt.time(0), dt.UTC) + dt.timedelta(days=30)
    for table, column in (("ai_agent_chat_history", "created_at"), ("analytics_game_attempts", "attempted_at"),
                          ("analytics_media_playback", "occurred_at"), ("rfid_scan_log", "scanned_at"),
                          ("analytics_game_sessions", "started_at")):
        assert scalar(url, f"SELECT count(*) FROM {table} WHERE {column} > %s", (after,)) == faults[f"future_{table}"], table
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens <> input_tokens + output_tokens") \
        == faults["token_total_mismatch"]
    # Totals that disagree with the (deduplicated) attempts: exactly the planted ones.
    assert scalar(url, """
        SELECT count(*) FROM analytics_game_sessions s
        JOIN (SELECT session_id, count(*) n, count(*) FILTER (WHERE is_correct) c
              FROM (SELECT DISTINCT session_id, question_key, attempted_at, is_correct FROM analytics_game_attempts) d
              GROUP BY 1) a USING (session_id)
        WHERE s.total_questions <> a.n OR s.correct_answers <> a.c""") == faults["session_total_mismatch"]
    sizes = dict(query(url, "SELECT CASE WHEN content = '' THEN 'empty' WHEN btrim(content, E' \\t\\n') = '' THEN 'blank' "
                            "WHEN length(content) > 2000000 THEN 'huge' WHEN strpos(content, repeat('x', 100000)) > 0 THEN 'long_line' ELSE 'other' END, "
                            "count(*) FROM device_memories WHERE file_type = 'scratch' GROUP BY 1"))
    assert sizes == {"empty": 1, "blank": 1, "huge": 1, "long_line": 1, "other": 1}


def test_messy_append_keeps_counting(messy, tmp_path):
    pair, _, out = messy
    appended = generator.append(pair.cheeko, pair.cognova, 1, out, progress=lambda _: None)
    assert appended.faults.get("mac_respelled", 0) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][-1]["kind"] == "append" and manifest["runs"][-1]["faults"] == appended.faults


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
    # Personality files edited by the append keep every planted fact on its recorded line.
    files = dict(((m, t), c) for m, t, c in query(pair.cheeko, "SELECT mac_id, file_type, content FROM device_memories WHERE file_type = 'personality'"))
    for line in (tmp_path / "planted_facts.jsonl").read_text().splitlines():
        fact = json.loads(line)
        assert files[(fact["mac_id"], "personality")].split("\n")[fact["line"] - 1] == fact["text"]
    meta = json.loads(scalar(pair.cheeko, "SELECT param_value FROM sys_params WHERE param_code = 'warehouse.generator'"))
    assert meta["end"] == (END + dt.timedelta(days=2)).isoformat()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["kind"] for r in manifest["runs"]] == ["generate", "append"]


def test_append_needs_a_generated_dataset(make_databases, tmp_path):
    pair = make_databases()
    with pytest.raises(generator.GeneratorError, match="run generate first"):
        generator.append(pair.cheeko, pair.cognova, 1, tmp_path, progress=lambda _: None)


def test_unmigrated_database_gets_a_clear_error(make_databases, tmp_path):
    pair = make_databases(migrated=False)
    with pytest.raises(generator.GeneratorError, match="warehouse db upgrade"):
        generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=2, days=1, end=END), tmp_path, progress=lambda _: None)


def test_a_failed_cheeko_load_can_simply_be_run_again(make_databases, tmp_path, monkeypatch):
    """Cognova commits first; if Cheeko then fails, re-running adds nothing twice."""
    from pipelines.generator import assemble

    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=5, days=3, seed=3, end=END), tmp_path, progress=lambda _: None)
    cognova_before = fingerprints(pair.cognova, COGNOVA_LOAD_ORDER)
    original = assemble._append_statements

    def broken(*args, **kwargs):
        statements = original(*args, **kwargs)
        statements["cheeko"].append(("SELECT 1 / 0", None))
        return statements

    monkeypatch.setattr(assemble, "_append_statements", broken)
    with pytest.raises(Exception, match="division by zero"):
        generator.append(pair.cheeko, pair.cognova, 1, tmp_path, progress=lambda _: None)
    assert fingerprints(pair.cognova, COGNOVA_LOAD_ORDER) != cognova_before  # Cognova's day did land
    partial = fingerprints(pair.cognova, COGNOVA_LOAD_ORDER)
    monkeypatch.setattr(assemble, "_append_statements", original)
    generator.append(pair.cheeko, pair.cognova, 1, tmp_path, progress=lambda _: None)
    again = fingerprints(pair.cognova, ["conversation_messages", "hook_events", "token_usage", "cron_agent_runs"])
    assert {t: again[t].split(":")[0] for t in again} == {t: partial[t].split(":")[0] for t in again}


def test_a_tiny_messy_fleet_loads_and_appends(make_databases, tmp_path):
    pair = make_databases()
    result = generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=1, days=1, seed=2, end=END, messy=True),
                                tmp_path, progress=lambda _: None)
    assert result.rows[("cheeko", "ai_device")] == 1
    generator.append(pair.cheeko, pair.cognova, 2, tmp_path, progress=lambda _: None)


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
