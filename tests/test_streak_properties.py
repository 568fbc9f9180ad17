"""Streaks: ``rollups.compute_streaks`` against the reference definition on random calendars, and local
days at the edges that matter (a kid in Kolkata either side of midnight, New York across its DST change)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import rollups, warehouse
from pipelines.marts import mart
from pipelines.source_tables import source_tables
from reference_metrics import load_sources, reference_marts, streak
from test_extract import extract_tables
from test_rollups_reference import WINDOW, assert_same_rows, at, build, fetch, insert

STREAK_COLUMNS = list(mart("device_streaks").columns)
BASE = dt.date(2026, 1, 1)


def expected_streaks(active_days: dict[str, list[dt.date]], as_of_date: dt.date) -> list[dict]:
    rows = []
    for mac, days in active_days.items():
        s = streak(days, as_of_date)
        if s is not None:
            rows.append({"as_of_date": as_of_date, "mac_address": mac, **s})
    return rows


# Calendars: a few devices, each a set of days within ~10 weeks, so runs, gaps and edges all occur.
offsets = st.lists(st.integers(min_value=0, max_value=70), unique=True, max_size=40)
calendars = st.dictionaries(st.sampled_from([f"aa:bb:cc:dd:ee:{i:02x}" for i in range(6)]), offsets, max_size=6)


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, as_of=st.integers(min_value=-3, max_value=75), seed=st.integers(0, 2**16))
def test_compute_streaks_matches_the_definition(calendar, as_of, seed):
    rng = random.Random(seed)
    active = {}
    for mac, days in calendar.items():
        dates = [BASE + dt.timedelta(days=d) for d in days]
        rng.shuffle(dates)  # no promise of order
        active[mac] = dates
    as_of_date = BASE + dt.timedelta(days=as_of)
    got = rollups.compute_streaks(active, as_of_date)
    assert_same_rows("compute_streaks", expected_streaks(active, as_of_date), [dict(r) for r in got], ("mac_address",),
                     STREAK_COLUMNS)


@pytest.mark.parametrize(("days", "as_of", "current", "start", "longest"), [
    ([], 10, None, None, None),                      # nothing: no row
    ([11, 12], 10, None, None, None),                # only days after D: no row
    ([10], 10, 1, 10, 1),                            # today
    ([9], 10, 1, 9, 1),                              # yesterday keeps the streak
    ([8], 10, 0, None, 1),                           # the day before yesterday does not
    ([1, 2, 3, 5, 6, 9, 10], 10, 2, 9, 3),           # current shorter than longest
    ([1, 2, 3, 4, 5, 6, 7, 8, 9], 10, 9, 1, 9),      # a run ending yesterday
    ([9, 10, 11, 12], 10, 2, 9, 2),                  # later days are not seen
])
def test_streak_edges(days, as_of, current, start, longest):
    active = {"aa:bb:cc:dd:ee:01": [BASE + dt.timedelta(days=d) for d in days]}
    as_of_date = BASE + dt.timedelta(days=as_of)
    expected = expected_streaks(active, as_of_date)
    if current is None:
        assert expected == []
    else:
        assert (expected[0]["current_streak_days"], expected[0]["longest_streak_days"]) == (current, longest)
        assert expected[0]["streak_start_date"] == (None if start is None else BASE + dt.timedelta(days=start))
    assert_same_rows("compute_streaks", expected, [dict(r) for r in rollups.compute_streaks(active, as_of_date)],
                     ("mac_address",), STREAK_COLUMNS)


# -- local days on a real warehouse ----------------------------------------------------------------

KOLKATA, NEW_YORK = "aa:bb:cc:00:01:01", "aa:bb:cc:00:01:02"
AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
FIRST, LAST = dt.date(2026, 3, 6), dt.date(2026, 3, 10)


@pytest.fixture(scope="module")
def local_days(make_databases, tmp_path_factory):
    """A Kolkata kid chatting at 23:50 and 00:10, and a New York device either side of midnight around
    8 March (EST, UTC-5, until 07:00 UTC that day; EDT, UTC-4, after), one event source each."""
    pair = make_databases()
    insert(pair.cheeko, "sys_user", [{"id": 1, "username": "p1"}, {"id": 2, "username": "p2"}])
    insert(pair.cheeko, "parent_profile", [{"user_id": 1, "timezone": "Europe/London"},
                                           {"user_id": 2, "timezone": "America/New_York"}])
    insert(pair.cheeko, "kid_profile", [{"id": 21, "user_id": 1, "name": "k", "timezone": "Asia/Kolkata"}])
    insert(pair.cheeko, "ai_device", [{"mac_address": KOLKATA, "user_id": 1, "kid_id": 21},
                                      {"mac_address": NEW_YORK.upper(), "user_id": 2, "kid_id": None}])
    insert(pair.cheeko, "ai_agent_chat_history", [
        {"mac_address": KOLKATA, "session_id": "s1", "chat_type": 1, "created_at": at("2026-03-09 18:20")},  # 23:50 IST, 9th
        {"mac_address": KOLKATA, "session_id": "s1", "chat_type": 1, "created_at": at("2026-03-09 18:40")},  # 00:10 IST, 10th
        {"mac_address": NEW_YORK, "session_id": "s2", "chat_type": 1, "created_at": at("2026-03-07 04:30")},  # 23:30 EST, 6th
    ])
    insert(pair.cheeko, "rfid_scan_log", [{"rfid_uid": "U", "mac_address": NEW_YORK, "created_at": at("2026-03-08 05:30")}])  # 00:30 EST, 8th
    insert(pair.cheeko, "analytics_media_playback", [
        {"mac_address": NEW_YORK, "content_type": "story", "content_id": 1, "event_type": "play", "position_seconds": 0,
         "created_at": at("2026-03-09 04:30")}])  # 00:30 EDT, 9th (a fixed UTC-5 would say 23:30 on the 8th)
    insert(pair.cheeko, "analytics_game_attempts", [
        {"session_id": "g", "mac_address": NEW_YORK, "game_type": "math_tutor", "question_type": "addition",
         "question_text": "1+1", "is_correct": True, "attempt_number": 1, "attempt_time": at("2026-03-10 03:30"),
         "created_at": at("2026-03-10 03:30")}])  # 23:30 EDT, 9th
    path = tmp_path_factory.mktemp("local_days") / "warehouse.duckdb"
    extract_tables(path, {"cheeko": pair.cheeko, "cognova": pair.cognova}, source_tables(), window=WINDOW)
    with warehouse.connect(path) as con:
        build(con, as_of_time=AS_OF, first_day=FIRST, last_day=LAST, cheeko_url=pair.cheeko)
        actual = {name: fetch(con, f"SELECT * FROM marts.{name}") for name in ("daily_device_activity", "device_streaks")}
    expected = reference_marts(load_sources(pair.cheeko, pair.cognova), AS_OF, FIRST, LAST)
    return expected, actual


def _activity(rows: list[dict], mac: str) -> dict[dt.date, tuple]:
    return {r["activity_date"]: (r["user_turns"], r["game_attempts"], r["media_plays"], r["rfid_scans"])
            for r in rows if r["mac_address"] == mac}


def _streak(rows: list[dict], mac: str, day: dt.date) -> tuple | None:
    found = [r for r in rows if r["mac_address"] == mac and r["as_of_date"] == day]
    return (found[0]["current_streak_days"], found[0]["streak_start_date"], found[0]["total_active_days"]) if found else None


@pytest.mark.parametrize("side", ["reference", "warehouse"])
def test_kolkata_turns_either_side_of_midnight_are_two_days(local_days, side):
    rows = dict(zip(("reference", "warehouse"), local_days))[side]
    assert _activity(rows["daily_device_activity"], KOLKATA) == {dt.date(2026, 3, 9): (1, 0, 0, 0), dt.date(2026, 3, 10): (1, 0, 0, 0)}
    assert _streak(rows["device_streaks"], KOLKATA, dt.date(2026, 3, 9)) == (1, dt.date(2026, 3, 9), 1)
    assert _streak(rows["device_streaks"], KOLKATA, dt.date(2026, 3, 10)) == (2, dt.date(2026, 3, 9), 2)


@pytest.mark.parametrize("side", ["reference", "warehouse"])
def test_new_york_local_days_follow_the_dst_change(local_days, side):
    rows = dict(zip(("reference", "warehouse"), local_days))[side]
    assert _activity(rows["daily_device_activity"], NEW_YORK) == {
        dt.date(2026, 3, 6): (1, 0, 0, 0), dt.date(2026, 3, 8): (0, 0, 0, 1), dt.date(2026, 3, 9): (0, 1, 1, 0)}
    assert _streak(rows["device_streaks"], NEW_YORK, dt.date(2026, 3, 7)) == (1, dt.date(2026, 3, 6), 1)
    assert _streak(rows["device_streaks"], NEW_YORK, dt.date(2026, 3, 8)) == (1, dt.date(2026, 3, 8), 2)
    assert _streak(rows["device_streaks"], NEW_YORK, dt.date(2026, 3, 10)) == (2, dt.date(2026, 3, 8), 3)


@pytest.mark.parametrize("name", ["daily_device_activity", "device_streaks"])
def test_local_day_marts_match_the_reference(local_days, name):
    expected, actual = local_days
    m = mart(name)
    assert_same_rows(f"marts.{name}", expected[name], actual[name], m.key, list(m.columns))
