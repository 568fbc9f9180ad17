"""The fleet generator against a real PostgreSQL: determinism, consistency,
realistic behaviour, every --messy fault, and --append-days."""

from __future__ import annotations

import datetime as dt
import json
import math
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


GAME_TYPE_OF_MODE = {"Math": "math_tutor", "Riddle": "riddle_solver", "WordLadder": "word_ladder"}
QUESTION_TYPES = {"math_tutor": {"addition", "subtraction", "multiplication", "division"},
                  "word_ladder": {"rhyming", "spelling", "opposites"}, "riddle_solver": {None, "animals", "objects"}}
# The zone a device lives by (metrics.md "Local day"), for a clean dataset (every name is an IANA zone).
ZONES = """zone AS (SELECT d.mac_address, coalesce(k.timezone, p.timezone, 'UTC') AS tz FROM ai_device d
                LEFT JOIN kid_profile k ON k.id = d.kid_id LEFT JOIN parent_profile p ON p.user_id = d.user_id)"""
EVENT_TIME = "coalesce(attempt_time, answered_at, created_at)"


def runs(days: set[dt.date]) -> dict[dt.date, int]:
    """For each day of ``days``, the run of consecutive days in ``days`` that ends on it."""
    out: dict[dt.date, int] = {}
    for day in sorted(days):
        out[day] = out.get(day - dt.timedelta(days=1), 0) + 1
    return out


def exact_progress(url: str, as_of: dt.date) -> dict[str, tuple]:
    """Per device with a mode session, analytics_user_progress's values computed from the events up to the local
    day ``as_of`` (metrics.md "Qualifying activity" and "Streaks", the current streak as of the device's last active
    day: the app recomputes it when it writes, on activity): (total_sessions,
    total_duration_seconds, total_games_played, total_correct_answers, total_wrong_answers, current_streak,
    longest_streak, last_activity_at)."""
    counts = {mac: list(rest) for mac, *rest in query(url, """
        SELECT s.mac_address, count(*), coalesce(sum(s.duration_seconds), 0),
               count(*) FILTER (WHERE s.mode_type IN ('Math', 'Riddle', 'WordLadder')),
               coalesce(max(a.correct), 0), coalesce(max(a.wrong), 0)
        FROM analytics_game_sessions s
        LEFT JOIN (SELECT mac_address, count(*) FILTER (WHERE is_correct) AS correct,
                          count(*) FILTER (WHERE NOT is_correct) AS wrong
                   FROM analytics_game_attempts GROUP BY 1) a USING (mac_address)
        GROUP BY 1""")}
    days: dict[str, dict[dt.date, dt.datetime]] = {}
    for mac, day, last in query(url, f"""
            WITH {ZONES}, events AS (
                SELECT mac_address, created_at AS at FROM ai_agent_chat_history WHERE chat_type = 1
                UNION ALL SELECT mac_address, {EVENT_TIME} FROM analytics_game_attempts
                UNION ALL SELECT mac_address, created_at FROM analytics_media_playback WHERE event_type IN ('play', 'complete')
                UNION ALL SELECT mac_address, created_at FROM rfid_scan_log)
            SELECT e.mac_address, (e.at AT TIME ZONE z.tz)::date, max(e.at) FROM events e JOIN zone z USING (mac_address)
            GROUP BY 1, 2"""):
        days.setdefault(mac, {})[day] = last
    out = {}
    for mac, values in counts.items():
        active = {d: t for d, t in days.get(mac, {}).items() if d <= as_of}
        run = runs(set(active))
        current = run[max(active)] if active else 0
        out[mac] = (*values, current, max(run.values(), default=0), max(active.values(), default=None))
    return out


def app_progress(url: str) -> dict[str, tuple]:
    return {mac: tuple(rest) for mac, *rest in query(url, """
        SELECT mac_address, total_sessions, total_duration_seconds, total_games_played, total_correct_answers,
               total_wrong_answers, current_streak, longest_streak, last_activity_at FROM analytics_user_progress""")}


def exact_streak_rows(url: str) -> dict[tuple[str, str, dt.date], int]:
    """analytics_streaks's rows computed from the game sessions: (MAC, game type, local day) -> streak_count."""
    played: dict[tuple[str, str], set[dt.date]] = {}
    for mac, mode, day in query(url, f"""WITH {ZONES} SELECT DISTINCT s.mac_address, s.mode_type, (s.started_at AT TIME ZONE z.tz)::date
                                        FROM analytics_game_sessions s JOIN zone z USING (mac_address)
                                        WHERE s.mode_type IN ('Math', 'Riddle', 'WordLadder')"""):
        played.setdefault((mac, GAME_TYPE_OF_MODE[mode]), set()).add(day)
    return {(mac, kind, day): n for (mac, kind), days in played.items() for day, n in runs(days).items()}


def exact_learning(url: str) -> dict[tuple[int, str, str], tuple]:
    """kid_learning_progress computed from the attempts: (kid, subject, topic) -> (score, time_spent, completed,
    attempts, correct)."""
    out = {}
    for kid, subject, topic, n, c, seconds in query(url, """
            SELECT d.kid_id, a.game_type, coalesce(a.question_type, 'general'), count(*), count(*) FILTER (WHERE a.is_correct),
                   coalesce(sum((a.response_time_ms + 500) / 1000), 0)
            FROM analytics_game_attempts a JOIN ai_device d USING (mac_address) WHERE d.kid_id IS NOT NULL GROUP BY 1, 2, 3"""):
        out[(kid, subject, topic)] = (math.floor(100 * c / n + 0.5), seconds, n >= 5 and c * 100 >= 80 * n, n, c)
    return out


def app_learning(url: str) -> dict[tuple[int, str, str], tuple]:
    return {(kid, subject, topic): (score, spent, done, meta["attempts"], meta["correct"])
            for kid, subject, topic, score, spent, done, meta in query(url, """
                SELECT kid_id, subject, topic, score, time_spent, completed, metadata FROM kid_learning_progress""")}


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
    warehouse_written = {"memory_chunks", "email_report_history"}
    empty = [t for t in CHEEKO_LOAD_ORDER if t not in warehouse_written and scalar(pair.cheeko, f'SELECT count(*) FROM "{t}"') == 0]
    empty += [f"cognova.{t}" for t in COGNOVA_LOAD_ORDER if scalar(pair.cognova, f'SELECT count(*) FROM "{t}"') == 0]
    assert empty == []
    assert result.total_rows == sum(result.rows.values()) > 10_000


def test_clean_rows_are_internally_consistent(clean):
    pair, _, _ = clean
    url = pair.cheeko
    # Every MAC in an event table belongs to a registered device, in canonical form.
    for table in ("ai_agent_chat_history", "analytics_game_sessions", "analytics_game_attempts", "analytics_media_playback",
                  "rfid_scan_log", "device_token_usage", "analytics_streaks", "analytics_user_progress"):
        orphans = scalar(url, f"SELECT count(*) FROM {table} e WHERE NOT EXISTS (SELECT 1 FROM ai_device d WHERE d.mac_address = e.mac_address)")
        assert orphans == 0, table
    macs = [m for (m,) in query(url, "SELECT mac_address FROM ai_device")]
    assert all(MAC.match(m) for m in macs)
    # Stored totals agree with their details when the data is clean.
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens <> input_tokens + output_tokens") == 0
    # A stored duration is ended_at - started_at in whole seconds; none while a session is open.
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions
                          WHERE duration_seconds <> floor(extract(epoch FROM ended_at - started_at))""") == 0
    assert scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE ended_at IS NULL AND duration_seconds IS NOT NULL") == 0
    # A day's token row counts exactly the chat turns of that device on that local day.
    mismatched = scalar(url, f"""
        WITH {ZONES},
        turns AS (
            SELECT h.mac_address, (h.created_at AT TIME ZONE z.tz)::date AS day, count(*) AS n
            FROM ai_agent_chat_history h JOIN zone z USING (mac_address) GROUP BY 1, 2)
        SELECT count(*) FROM device_token_usage u FULL JOIN turns t ON t.mac_address = u.mac_address AND t.day = u.usage_date
        WHERE u.message_count IS DISTINCT FROM t.n""")
    assert mismatched == 0
    # Sessions end after they start and before the end of their local day; attempts fall inside their session.
    assert scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE ended_at < started_at") == 0
    assert scalar(url, f"""WITH {ZONES} SELECT count(*) FROM analytics_game_sessions s JOIN zone z USING (mac_address)
                          WHERE (coalesce(s.ended_at, s.updated_at) AT TIME ZONE z.tz)::date <> (s.started_at AT TIME ZONE z.tz)::date""") == 0
    assert scalar(url, """SELECT count(*) FROM analytics_game_attempts a JOIN analytics_game_sessions s USING (session_id)
                          WHERE a.mac_address <> s.mac_address OR coalesce(a.attempt_time, a.answered_at, a.created_at) < s.started_at
                             OR coalesce(a.attempt_time, a.answered_at, a.created_at) > coalesce(s.ended_at, 'infinity')""") == 0
    # Nothing happens after the end of the last local day anywhere, nor before a device was set up.
    as_of = dt.datetime.fromtimestamp(horizon(END), dt.UTC)
    late = scalar(url, f"""SELECT (SELECT count(*) FROM ai_agent_chat_history WHERE created_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_game_sessions WHERE greatest(ended_at, updated_at) >= %(t)s)
                               + (SELECT count(*) FROM analytics_game_attempts WHERE {EVENT_TIME} >= %(t)s OR created_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_media_playback WHERE created_at >= %(t)s)
                               + (SELECT count(*) FROM rfid_scan_log WHERE created_at >= %(t)s)
                               + (SELECT count(*) FROM kid_activity_log WHERE created_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_streaks WHERE updated_at >= %(t)s)
                               + (SELECT count(*) FROM analytics_user_progress WHERE updated_at >= %(t)s)
                               + (SELECT count(*) FROM kid_learning_progress WHERE updated_at >= %(t)s)
                               + (SELECT count(*) FROM ai_device WHERE last_connected_at >= %(t)s)
                               + (SELECT count(*) FROM device_memories WHERE updated_at >= %(t)s)
                               + (SELECT count(*) FROM music_playlist WHERE created_at >= %(t)s)""", {"t": as_of})
    assert late == 0
    for table, column in (("analytics_game_sessions", "e.started_at"),
                          ("analytics_game_attempts", "coalesce(e.attempt_time, e.answered_at, e.created_at)"),
                          ("analytics_media_playback", "e.created_at"), ("rfid_scan_log", "e.created_at")):
        before_setup = scalar(url, f"""SELECT count(*) FROM {table} e JOIN ai_device d ON d.mac_address = e.mac_address
                                        WHERE {column} < d.create_date""")
        assert before_setup == 0, table
    assert scalar(url, """SELECT count(*) FROM kid_activity_log a
                          WHERE a.created_at < (SELECT min(d.create_date) FROM ai_device d WHERE d.kid_id = a.kid_id)""") == 0
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
    # Games are answered right more often than not, but not always; retries do better than first tries.
    first, retry = query(url, """SELECT avg(is_correct::int) FROM analytics_game_attempts GROUP BY attempt_number ORDER BY attempt_number""")
    assert 0.5 < first[0] < 0.95 and retry[0] > first[0]
    statuses = {s for (s,) in query(pair.cognova, "SELECT DISTINCT status FROM cron_agent_runs")}
    assert {"success", "error", "budget_exceeded", "cancelled", "running"} <= statuses


def test_every_mode_is_a_session_as_the_app_stores_it(clean):
    pair, _, _ = clean
    url = pair.cheeko
    modes = dict(query(url, "SELECT mode_type, count(*) FROM analytics_game_sessions GROUP BY 1"))
    assert set(modes) == {"Conversation", "Math", "Riddle", "WordLadder", "Story", "Music"} and min(modes.values()) > 0
    # A Conversation per chat, opening a few seconds before the child's first turn and closing a few after the last answer;
    # interaction_count is the child's turns.
    assert scalar(url, """SELECT count(*) FROM (SELECT DISTINCT session_id FROM ai_agent_chat_history) h
                          FULL JOIN (SELECT session_id FROM analytics_game_sessions WHERE mode_type = 'Conversation') s USING (session_id)
                          WHERE h.session_id IS NULL OR s.session_id IS NULL""") == 0
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions s JOIN (
                              SELECT session_id, min(created_at) AS first, max(created_at) AS last,
                                     count(*) FILTER (WHERE chat_type = 1) AS turns FROM ai_agent_chat_history GROUP BY 1) h USING (session_id)
                          WHERE s.interaction_count <> h.turns OR s.started_at >= h.first OR s.started_at < h.first - interval '10 seconds'
                             OR s.ended_at <= h.last OR s.ended_at > h.last + interval '10 seconds'""") == 0
    # Story and Music: one per play, ending with its outcome event; two interactions.
    assert scalar(url, "SELECT count(*) FROM analytics_media_playback WHERE event_type = 'play'") \
        == modes["Story"] + modes["Music"]
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions s
                          JOIN analytics_media_playback p ON p.metadata->>'session_id' = s.session_id AND p.event_type = 'play'
                          WHERE s.started_at = p.created_at AND s.interaction_count = 2
                            AND s.mode_type = CASE p.content_type WHEN 'story' THEN 'Story' ELSE 'Music' END
                            AND (s.metadata->>'content_id')::bigint = p.content_id""") == modes["Story"] + modes["Music"]
    # Only the game modes have attempts, and every game has some; interaction_count counts them.
    assert dict(query(url, """SELECT s.mode_type IN ('Math', 'Riddle', 'WordLadder'), bool_and(a.n IS NOT NULL) OR bool_and(a.n IS NULL)
                              FROM analytics_game_sessions s LEFT JOIN (SELECT session_id, count(*) n FROM analytics_game_attempts GROUP BY 1) a
                              USING (session_id) GROUP BY 1""")) == {True: True, False: True}
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions s JOIN (SELECT session_id, count(*) n FROM analytics_game_attempts GROUP BY 1) a
                          USING (session_id) WHERE s.interaction_count <> a.n""") == 0
    # Ended sessions are completed; a few were never closed; an older app stored no duration for a few ended ones.
    status = dict(query(url, "SELECT completion_status || ':' || (ended_at IS NULL), count(*) FROM analytics_game_sessions GROUP BY 1"))
    assert set(status) == {"completed:false", "abandoned:true", "in_progress:true"}
    assert 0 < scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE ended_at IS NOT NULL AND duration_seconds IS NULL") \
        < 0.1 * status["completed:false"]
    # The device's agent, a small JSON object of metadata, and created/updated from the session's own times.
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions s JOIN ai_device d USING (mac_address)
                          WHERE s.agent_id IS DISTINCT FROM d.agent_id OR jsonb_typeof(s.metadata) <> 'object'
                             OR s.metadata = '{}' OR s.created_at <> s.started_at OR s.updated_at < s.started_at""") == 0
    assert scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE mode_type = 'Math' AND metadata->>'difficulty' IS NULL") == 0


def test_attempts_by_game_type_and_question_type(clean):
    pair, _, _ = clean
    url = pair.cheeko
    pairs = query(url, """SELECT s.mode_type, a.game_type, a.question_type, count(*) FROM analytics_game_attempts a
                          JOIN analytics_game_sessions s USING (session_id) GROUP BY 1, 2, 3""")
    assert all(GAME_TYPE_OF_MODE[mode] == game_type for mode, game_type, _, _ in pairs)
    seen = {}
    for _, game_type, question_type, n in pairs:
        seen.setdefault(game_type, {})[question_type] = n
    assert set(seen) == set(QUESTION_TYPES)
    for game_type, types in seen.items():
        assert set(types) <= QUESTION_TYPES[game_type] and len(types) >= 2, game_type
    riddles = seen["riddle_solver"]
    assert riddles[None] > sum(riddles.values()) / 2  # mostly untyped: the warehouse's topic 'general'
    assert {d for (d,) in query(url, "SELECT DISTINCT difficulty_level FROM analytics_game_attempts")} == {"easy", "medium", "hard"}
    # Questions a child can read: arithmetic that adds up, answers marked right exactly when they match.
    for text, answer in query(url, "SELECT question_text, correct_answer FROM analytics_game_attempts WHERE game_type = 'math_tutor' LIMIT 300"):
        a, op, b = re.fullmatch(r"What is (\d+) ([-+×÷]) (\d+)\?", text).groups()
        assert {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b), "÷": int(a) / int(b)}[op] == int(answer)
    assert scalar(url, "SELECT count(*) FROM analytics_game_attempts WHERE is_correct <> (user_answer = correct_answer)") == 0
    # A second attempt retries the same question right after a wrong first answer; a session never asks one twice otherwise.
    assert {n for (n,) in query(url, "SELECT DISTINCT attempt_number FROM analytics_game_attempts")} == {1, 2}
    assert scalar(url, """SELECT count(*) FROM analytics_game_attempts r WHERE attempt_number = 2 AND NOT EXISTS (
                              SELECT 1 FROM analytics_game_attempts f WHERE f.session_id = r.session_id AND f.attempt_number = 1
                              AND f.question_text = r.question_text AND NOT f.is_correct AND f.created_at < r.created_at)""") == 0
    assert scalar(url, """SELECT count(*) - count(DISTINCT (session_id, attempt_number, question_text))
                          FROM analytics_game_attempts""") == 0
    # Times: asked, answered response_time_ms later, recorded just after; older firmware left some out.
    assert scalar(url, """SELECT count(*) FROM analytics_game_attempts WHERE attempt_time IS NOT NULL AND
                          (answered_at <> attempt_time + response_time_ms * interval '1 millisecond'
                           OR created_at < answered_at OR created_at > answered_at + interval '1 second')""") == 0
    kinds = dict(query(url, """SELECT (attempt_time IS NULL)::int + (answered_at IS NULL)::int, count(*)
                               FROM analytics_game_attempts GROUP BY 1"""))
    assert set(kinds) == {0, 1, 2} and kinds[0] > 10 * (kinds[1] + kinds[2])
    assert scalar(url, "SELECT count(*) FROM analytics_game_attempts WHERE attempt_time IS NULL AND answered_at IS NOT NULL "
                       "AND response_time_ms IS NOT NULL") == 0
    assert scalar(url, "SELECT count(*) FROM analytics_game_attempts WHERE attempt_time IS NOT NULL AND answered_at IS NULL") == 0


def test_playback_scans_and_activity_point_at_real_content(clean):
    pair, _, _ = clean
    url = pair.cheeko
    # Every played item is a content_library row of the same type, and the event carries its length.
    assert {t for (t,) in query(url, "SELECT DISTINCT content_type FROM analytics_media_playback")} == {"story", "music"}
    assert scalar(url, """SELECT count(*) FROM analytics_media_playback p LEFT JOIN content_library c ON c.id = p.content_id
                          WHERE c.id IS NULL OR c.content_type <> p.content_type OR c.duration_seconds <> p.duration_seconds
                             OR c.status <> 1""") == 0
    events = dict(query(url, "SELECT event_type, count(*) FROM analytics_media_playback GROUP BY 1"))
    assert set(events) == {"play", "complete", "pause", "skip"} and events["play"] == events["complete"] + events["pause"] + events["skip"]
    assert scalar(url, """SELECT count(*) FROM analytics_media_playback WHERE (event_type = 'play') <> (position_seconds = 0)
                             OR (event_type = 'complete') <> (position_seconds = duration_seconds AND event_type <> 'play')""") == 0
    # Scans: mapped cards, printed series ranges and unknown cards, and what the device did with each.
    actions = dict(query(url, """SELECT CASE WHEN m.uid IS NOT NULL THEN 'mapped' WHEN s.rfid_uid LIKE '05%%' THEN 'series' ELSE 'unknown' END
                                        || ':' || s.action_taken, count(*)
                                 FROM rfid_scan_log s LEFT JOIN rfid_card_mapping m ON m.uid = s.rfid_uid GROUP BY 1"""))
    assert set(actions) == {"mapped:ask_question", "mapped:play_content", "series:play_content", "unknown:unknown_card"}
    # Activity: stories and songs point at their ai_story / ai_music rows; games and chats at nothing.
    kinds = dict(query(url, "SELECT activity_type || ':' || coalesce(content_type, '-'), count(*) FROM kid_activity_log GROUP BY 1"))
    assert set(kinds) == {"chat:-", "game_completed:game", "story_completed:story", "music_completed:music"}
    assert scalar(url, """SELECT count(*) FROM kid_activity_log a WHERE content_id IS NOT NULL AND NOT EXISTS (
                              SELECT 1 FROM ai_story s WHERE s.id = a.content_id AND a.content_type = 'story'
                              UNION ALL SELECT 1 FROM ai_music m WHERE m.id = a.content_id AND a.content_type = 'music')""") == 0
    assert scalar(url, "SELECT count(*) FROM kid_activity_log WHERE (content_type IN ('story', 'music')) <> (content_id IS NOT NULL)") == 0
    assert scalar(url, "SELECT count(*) FROM kid_activity_log WHERE duration IS NULL OR jsonb_typeof(metadata) <> 'object'") == 0


def test_app_counters_equal_the_events_except_the_drifted_devices(clean):
    pair, result, _ = clean
    exact, app = exact_progress(pair.cheeko, END), app_progress(pair.cheeko)
    assert set(app) == set(exact) and len(app) >= 10
    drifted = {mac for mac in app if app[mac] != exact[mac]}
    assert len(drifted) == result.faults["app_counter_drift"] >= 1
    for mac in drifted:  # one counter, by a small amount: a lost or doubled update, a stale streak, a late activity time
        diffs = [i for i, (a, e) in enumerate(zip(app[mac], exact[mac])) if a != e]
        assert len(diffs) == 1 and diffs[0] in (2, 3, 5, 7), (mac, app[mac], exact[mac])
        if diffs[0] == 7:
            assert dt.timedelta(minutes=1) < exact[mac][7] - app[mac][7] < dt.timedelta(minutes=31)
    kids = dict(query(pair.cheeko, "SELECT d.mac_address, d.kid_id FROM ai_device d"))
    assert all(kids[mac] == kid for mac, kid in query(pair.cheeko, "SELECT mac_address, kid_id FROM analytics_user_progress"))


def test_streak_rows_follow_the_game_sessions(clean):
    pair, _, _ = clean
    stored = {(mac, kind, day): n for mac, kind, day, n in query(
        pair.cheeko, "SELECT mac_address, streak_type, streak_date, streak_count FROM analytics_streaks")}
    exact = exact_streak_rows(pair.cheeko)
    assert stored == exact
    assert {kind for _, kind, _ in stored} == set(QUESTION_TYPES) and max(stored.values()) >= 2


def test_learning_progress_per_kid_game_type_and_topic(clean):
    pair, _, _ = clean
    stored, exact = app_learning(pair.cheeko), exact_learning(pair.cheeko)
    assert stored == exact
    assert {topic for _, subject, topic in stored if subject == "riddle_solver"} >= {"general"}
    assert any(done for _, _, done, _, _ in stored.values()) and not all(done for _, _, done, _, _ in stored.values())


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
EVENT_MAC_TABLES = (("ai_agent_chat_history", "mac_address"), ("analytics_media_playback", "mac_address"),
                    ("rfid_scan_log", "mac_address"), ("device_token_usage", "mac_address"), ("device_memories", "mac_id"),
                    ("analytics_game_sessions", "mac_address"), ("analytics_game_attempts", "mac_address"))


def _mac_faults(url: str, table: str, column: str = "mac_address") -> tuple[int, int, int]:
    """(respelled, invalid, padded) rows: not canonical but normalisable without trimming, not normalisable at all,
    and the canonical form with surrounding whitespace."""
    normalised = f"regexp_replace(lower({column}), '[^0-9a-z]', '', 'g')"
    padded = f"({column} <> btrim({column}, E' \\t\\n') AND btrim({column}, E' \\t\\n') ~ {CANONICAL})"
    return tuple(query(url, f"""SELECT count(*) FILTER (WHERE {column} !~ {CANONICAL} AND {normalised} ~ {NORMALISABLE}
                                                             AND length({column}) IN (12, 17)),
                                       count(*) FILTER (WHERE NOT {padded} AND NOT ({normalised} ~ {NORMALISABLE}
                                                                                     AND length({column}) IN (12, 17))),
                                       count(*) FILTER (WHERE {padded})
                                FROM {table}""")[0])


def test_messy_plants_every_fault_exactly_as_counted(messy):
    pair, result, _ = messy
    url, faults = pair.cheeko, result.faults
    for name in ("mac_respelled", "mac_whitespace", "mac_invalid", "device_respelled", "device_mac_invalid",
                 "timezone_unknown", "timezone_blank", "timezone_padded", "token_total_mismatch", "token_total_null", "token_null_parts",
                 "session_duration_mismatch", "message_cost_null",
                 "duplicate_analytics_game_attempts", "duplicate_analytics_media_playback", "duplicate_rfid_scan_log",
                 "duplicate_ai_agent_chat_history", "future_ai_agent_chat_history", "future_analytics_game_attempts",
                 "future_analytics_game_sessions", "future_analytics_media_playback", "future_rfid_scan_log",
                 "memory_empty", "memory_whitespace", "memory_huge", "memory_emoji_control", "memory_long_line",
                 "app_counter_drift"):
        assert faults.get(name, 0) > 0, name
    assert "session_total_mismatch" not in faults
    respelled = invalid = padded = 0
    for table, column in EVENT_MAC_TABLES:
        r, i, p = _mac_faults(url, table, column)
        respelled, invalid, padded = respelled + r, invalid + i, padded + p
    # Duplicated rows repeat a respelled, padded or invalid row never (faults are disjoint), so counts add up exactly.
    assert (respelled, invalid) == (faults["mac_respelled"], faults["mac_invalid"])
    # ai_device: padded rows, the second rows of respelled devices, and rows no MAC rule can save.
    device_respelled, device_invalid, device_padded = _mac_faults(url, "ai_device")
    assert (device_respelled, device_invalid) == (faults["device_respelled"], faults["device_mac_invalid"])
    assert padded + device_padded == faults["mac_whitespace"] and padded > 0 and device_padded > 0
    # Padding has spaces, tabs and newlines.
    assert scalar(url, "SELECT count(*) FROM ai_agent_chat_history WHERE mac_address ~ E'[\\t\\n]'") \
        + scalar(url, "SELECT count(*) FROM ai_device WHERE mac_address ~ E'[\\t\\n]'") > 0
    # A respelled device: another spelling of a device's MAC, created and updated later, with another family's kid
    # and owner; the original row (the one the app, memory files and events use) keeps the canonical spelling.
    assert scalar(url, f"""SELECT count(*) FROM ai_device d JOIN ai_device o
                              ON o.mac_address ~ {CANONICAL} AND d.mac_address !~ {CANONICAL}
                             AND regexp_replace(lower(d.mac_address), '[:-]', '', 'g') = replace(o.mac_address, ':', '')
                           WHERE d.create_date > o.create_date AND d.update_date > o.update_date
                             AND d.kid_id IS NOT NULL AND d.kid_id IS DISTINCT FROM o.kid_id
                             AND d.user_id IS DISTINCT FROM o.user_id""") == faults["device_respelled"]
    # Rows with an invalid MAC are created inside the data's window (a new device the metrics must not count).
    first = dt.datetime.combine(END - dt.timedelta(days=20), dt.time(0), dt.UTC)
    assert scalar(url, f"""SELECT count(*) FROM ai_device WHERE NOT (btrim(mac_address, E' \\t\\n') ~ {CANONICAL}
                              OR regexp_replace(lower(mac_address), '[:-]', '', 'g') ~ {NORMALISABLE}) AND create_date >= %s""",
                  (first,)) == faults["device_mac_invalid"]
    zones = scalar(url, "SELECT (SELECT count(*) FROM parent_profile WHERE timezone = ANY(%(z)s)) "
                        "+ (SELECT count(*) FROM kid_profile WHERE timezone = ANY(%(z)s))", {"z": BAD_ZONES})
    assert zones == faults["timezone_unknown"]
    blank = "btrim(timezone) = ''"
    assert scalar(url, f"SELECT (SELECT count(*) FROM parent_profile WHERE {blank}) "
                       f"+ (SELECT count(*) FROM kid_profile WHERE {blank})") == faults["timezone_blank"]
    assert {z for (z,) in query(url, f"SELECT timezone FROM kid_profile WHERE {blank} UNION SELECT timezone FROM parent_profile "
                                     f"WHERE {blank}")} == {"", "   "}
    # A blank kid zone is planted where the owner's zone applies instead: the kid has a device, the owner a real zone.
    blank_kids = query(url, f"""SELECT p.timezone, EXISTS (SELECT 1 FROM ai_device d WHERE d.kid_id = k.id)
                               FROM kid_profile k LEFT JOIN parent_profile p ON p.user_id = k.user_id
                               WHERE btrim(k.timezone) = ''""")
    assert blank_kids and all(zone in zoneinfo.available_timezones() and has_device for zone, has_device in blank_kids)
    padded = "timezone <> btrim(timezone, E' \\t\\n') AND btrim(timezone, E' \\t\\n') = ANY(%(z)s)"
    assert scalar(url, f"SELECT (SELECT count(*) FROM parent_profile WHERE {padded}) "
                       f"+ (SELECT count(*) FROM kid_profile WHERE {padded})",
                  {"z": sorted(zoneinfo.available_timezones())}) == faults["timezone_padded"]
    natural_keys = {
        "analytics_game_attempts": "session_id, attempt_number, attempt_time, question_text",
        "analytics_media_playback": "mac_address, content_id, event_type, created_at",
        "rfid_scan_log": "rfid_uid, mac_address, created_at",
        "ai_agent_chat_history": "session_id, chat_type, content, created_at",
    }
    for table, natural_key in natural_keys.items():
        assert scalar(url, f"SELECT count(*) - count(DISTINCT ({natural_key})) FROM {table}") == faults[f"duplicate_{table}"], table
    after = dt.datetime.combine(END, dt.time(0), dt.UTC) + dt.timedelta(days=30)
    for table, column in (("ai_agent_chat_history", "created_at"), ("analytics_game_attempts", EVENT_TIME),
                          ("analytics_media_playback", "created_at"), ("rfid_scan_log", "created_at"),
                          ("analytics_game_sessions", "started_at")):
        assert scalar(url, f"SELECT count(*) FROM {table} WHERE {column} > %s", (after,)) == faults[f"future_{table}"], table
    # A future session moves whole, with its attempts: every time column together.
    assert scalar(url, """SELECT count(*) FROM analytics_game_sessions WHERE (started_at > %(t)s) <> (created_at > %(t)s)
                             OR (started_at > %(t)s) <> (updated_at > %(t)s) OR (started_at > %(t)s) <> (coalesce(ended_at, started_at) > %(t)s)""",
                  {"t": after}) == 0
    assert scalar(url, """SELECT count(*) FROM analytics_game_attempts a JOIN analytics_game_sessions s USING (session_id)
                          WHERE (s.started_at > %(t)s) <> (a.created_at > %(t)s)
                             OR (s.started_at > %(t)s) <> (coalesce(a.attempt_time, a.answered_at, a.created_at) > %(t)s)""",
                  {"t": after}) == 0
    # Stored token totals: a mismatch is a non-null total other than input + output, a null part counting 0
    # (metrics.md "Resolved details"); null totals and null parts are planted apart and never mismatch.
    assert scalar(url, "SELECT count(*) FROM device_token_usage "
                       "WHERE total_tokens <> coalesce(input_tokens, 0) + coalesce(output_tokens, 0)") \
        == scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens <> input_tokens + output_tokens") \
        == faults["token_total_mismatch"]
    assert scalar(url, "SELECT count(*) FROM device_token_usage WHERE total_tokens IS NULL "
                       "AND input_tokens IS NOT NULL AND output_tokens IS NOT NULL") == faults["token_total_null"]
    parts = dict(query(url, "SELECT (input_tokens IS NULL)::int + 2 * (output_tokens IS NULL)::int, count(*) "
                            "FROM device_token_usage WHERE input_tokens IS NULL OR output_tokens IS NULL GROUP BY 1"))
    assert sum(parts.values()) == faults["token_null_parts"] and set(parts) == {1, 2, 3}  # input, output, both
    # Stored durations more than a second off ended_at - started_at: exactly the planted ones, each 5 to 600 s off.
    off = query(url, """SELECT abs(extract(epoch FROM ended_at - started_at) - duration_seconds) FROM analytics_game_sessions
                        WHERE abs(extract(epoch FROM ended_at - started_at) - duration_seconds) > 1""")
    assert len(off) == faults["session_duration_mismatch"] and all(4 < x < 601 for (x,) in off)
    # Ended sessions that stored no duration (an older app) come with clean data and stay.
    assert scalar(url, "SELECT count(*) FROM analytics_game_sessions WHERE ended_at IS NOT NULL AND duration_seconds IS NULL") > 0
    # Cognova: assistant messages without a cost, and exactly one UTC day with messages but no priced one.
    assert scalar(pair.cognova, "SELECT count(*) FROM conversation_messages WHERE role = 'assistant' AND cost_usd IS NULL") \
        == faults["message_cost_null"]
    unpriced_days = scalar(pair.cognova, """SELECT count(*) FROM (SELECT (created_at AT TIME ZONE 'UTC')::date FROM conversation_messages
                                            GROUP BY 1 HAVING count(cost_usd) = 0) d""")
    assert unpriced_days == faults["message_cost_null_day"] == 1
    # The app's own tables are the app's: computed before any fault, so never damaged.
    for table in ("analytics_streaks", "analytics_user_progress"):
        assert _mac_faults(url, table) == (0, 0, 0), table
    sizes = dict(query(url, "SELECT CASE WHEN content = '' THEN 'empty' WHEN btrim(content, E' \\t\\n') = '' THEN 'blank' "
                            "WHEN length(content) > 2000000 THEN 'huge' WHEN strpos(content, repeat('x', 100000)) > 0 THEN 'long_line' ELSE 'other' END, "
                            "count(*) FROM device_memories WHERE file_type = 'scratch' GROUP BY 1"))
    assert sizes == {"empty": 1, "blank": 1, "huge": 1, "long_line": 1, "other": 1}


def test_messy_append_keeps_counting(messy, tmp_path):
    pair, _, out = messy
    appended = generator.append(pair.cheeko, pair.cognova, 1, out, progress=lambda _: None)
    assert appended.faults.get("mac_respelled", 0) > 0 and "app_counter_drift" in appended.faults
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
    app_before, exact_before = app_progress(pair.cheeko), exact_progress(pair.cheeko, END)
    drifted_before = {mac for mac in app_before if app_before[mac] != exact_before[mac]}
    streaks_before = scalar(pair.cheeko, "SELECT count(*) FROM analytics_streaks")

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
    # The app kept its own tables current: streak rows for the new days, counters and learning progress with the
    # new days added (and the streaks of children who stopped reset), drift only where the app drifted.
    assert scalar(pair.cheeko, "SELECT count(*) FROM analytics_streaks") > streaks_before
    assert {(m, k, d): n for m, k, d, n in query(pair.cheeko, "SELECT mac_address, streak_type, streak_date, streak_count "
                                                 "FROM analytics_streaks")} == exact_streak_rows(pair.cheeko)
    assert app_learning(pair.cheeko) == exact_learning(pair.cheeko)
    app_after, exact_after = app_progress(pair.cheeko), exact_progress(pair.cheeko, END + dt.timedelta(days=2))
    assert set(app_after) == set(exact_after) and len(app_after) > len(app_before)
    drifted_after = {mac for mac in app_after if app_after[mac] != exact_after[mac]}
    assert len(drifted_after - drifted_before) <= result.faults["app_counter_drift"]
    assert sum(a[0] for a in app_after.values()) > sum(a[0] for a in app_before.values())
    assert scalar(pair.cheeko, "SELECT count(*) FROM analytics_user_progress WHERE last_activity_at > %s",
                  (dt.datetime.combine(END, dt.time(23, 59), dt.UTC),)) > 0
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
