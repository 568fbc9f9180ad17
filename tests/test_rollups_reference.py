"""The marts against an independent reference (``reference_metrics.py``), row for row.

A messy generated fleet (every fault metrics.md names) crossing the March
DST changes is extracted into a fresh warehouse; ``rollups.build`` makes every
mart and ``rollups.write_back`` fills the three PostgreSQL tables. Each mart,
each write-back table and each data-quality count must equal what plain
Python computes from the operational rows. A second, hand-made dataset pins
the rules a generated fleet rarely reaches (open sessions, stale runs, the
as-of cut-off, respelled and invalid MACs, unknown zones) and checks the
reference itself against numbers worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines import generator, postgres, rollups, warehouse
from pipelines.marts import MARTS, mart
from pipelines.source_tables import source_tables
from reference_metrics import (FUTURE_GRACE, Sources, load_sources, quality_counts, reference_marts,
                               write_back_rows)
from test_extract import extract_tables

UTC = dt.UTC
END = dt.date(2026, 3, 31)  # the fleet crosses the US (8 March) and EU (29 March) DST changes
DAYS = 14
FIRST = END - dt.timedelta(days=DAYS - 1)
# Mid-evening in the Americas: their last local day is cut by the as-of rule, a few sessions are
# still open and the day's last agent runs still running.
AS_OF = dt.datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
HORIZON = dt.datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # after every clean row of a dataset ending on END
# Wide enough to extract the messy rows dated a year after the data: the as-of rule must drop them.
WINDOW = (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2028, 1, 1, tzinfo=UTC))
CHECKS = ("mac_unnormalisable", "timezone_unknown", "future_timestamps", "duplicate_events", "token_totals_mismatch",
          "session_totals_disagree")
WRITE_BACK_KEYS = {"analytics_streaks": ("mac_address",), "analytics_user_progress": ("mac_address",),
                   "kid_learning_progress": ("kid_id", "subject", "topic")}


# -- comparing rows --------------------------------------------------------------------------------


def same(expected, actual) -> bool:
    """Equal values: floats within 1e-9, Decimals and integers exactly, UUIDs by their text."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, uuid.UUID) or isinstance(actual, uuid.UUID):
        return str(expected) == str(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, float) or isinstance(actual, float):
        if not isinstance(expected, (int, float, Decimal)) or not isinstance(actual, (int, float, Decimal)):
            return False
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, dt.datetime) or isinstance(actual, dt.datetime):
        return (isinstance(expected, dt.datetime) and isinstance(actual, dt.datetime)
                and expected.tzinfo is not None and actual.tzinfo is not None and expected == actual)
    return type(expected) is type(actual) and expected == actual if isinstance(expected, (dt.date, str)) else expected == actual


def _key(row: dict, key: tuple[str, ...]) -> tuple:
    return tuple(str(row[k]) if isinstance(row[k], uuid.UUID) else row[k] for k in key)


def _order(k: tuple) -> list:
    return [(v is None, str(v)) for v in k]


def differences(expected: list[dict], actual: list[dict], key: tuple[str, ...], columns: list[str]) -> list[str]:
    """Readable differences, first by key; empty when the row sets are equal."""
    exp = {_key(r, key): r for r in expected}
    assert len(exp) == len(expected), f"reference has duplicate keys {key}"
    act: dict[tuple, dict] = {}
    out = []
    for r in actual:
        k = _key(r, key)
        if k in act:
            out.append(f"{k}: key appears more than once in the warehouse")
        act[k] = r
    for k in sorted(exp.keys() - act.keys(), key=_order):
        out.append(f"{k}: missing (expected {_show(exp[k], columns)})")
    for k in sorted(act.keys() - exp.keys(), key=_order):
        out.append(f"{k}: unexpected row {_show(act[k], columns)}")
    for k in sorted(exp.keys() & act.keys(), key=_order):
        for c in columns:
            if c not in act[k]:
                out.append(f"{k}: column {c} missing")
            elif not same(exp[k][c], act[k][c]):
                out.append(f"{k}: {c} expected {exp[k][c]!r}, got {act[k][c]!r}")
    return out


def _show(row: dict, columns: list[str]) -> str:
    return "{" + ", ".join(f"{c}={row.get(c)!r}" for c in columns) + "}"


def assert_same_rows(what: str, expected: list[dict], actual: list[dict], key: tuple[str, ...], columns: list[str]) -> None:
    diffs = differences(expected, actual, key, columns)
    assert not diffs, (f"{what}: {len(diffs)} difference(s) over {len(expected)} expected / {len(actual)} actual rows; "
                       f"first ones (key {key}):\n  " + "\n  ".join(diffs[:12]))


# -- running the warehouse -------------------------------------------------------------------------


def fetch(con, statement: str) -> list[dict]:
    cur = con.execute(statement)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def pg_rows(url: str, table: str) -> list[dict]:
    with postgres.connect(url) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    for row in rows:
        for k, v in row.items():
            if isinstance(v, dt.datetime):
                row[k] = v.astimezone(UTC)
    return rows


def build(con, *, as_of_time: dt.datetime, first_day: dt.date, last_day: dt.date, cheeko_url: str) -> dict:
    """``rollups.build`` for every mart (handing over the Cheeko URL where the API takes one)."""
    extra = {"cheeko_url": cheeko_url} if "cheeko_url" in inspect.signature(rollups.build).parameters else {}
    return rollups.build(con, None, as_of_time=as_of_time, first_day=first_day, last_day=last_day, **extra)


@dataclass
class Run:
    """One dataset, its warehouse after build and write-back, and the reference's answers."""

    cheeko: str
    path: Path
    sources: Sources
    as_of: dt.datetime
    last_day: dt.date
    built: dict
    expected: dict[str, list[dict]]
    actual: dict[str, list[dict]]
    written: dict[str, list[dict]]
    faults: dict[str, int]


def run_warehouse(cheeko: str, cognova: str, path: Path, *, as_of: dt.datetime, first_day: dt.date, last_day: dt.date,
                  faults: dict[str, int] | None = None) -> Run:
    extract_tables(path, {"cheeko": cheeko, "cognova": cognova}, source_tables(), window=WINDOW)
    sources = load_sources(cheeko, cognova)
    expected = reference_marts(sources, as_of, first_day, last_day)
    with warehouse.connect(path) as con:
        built = build(con, as_of_time=as_of, first_day=first_day, last_day=last_day, cheeko_url=cheeko)
        actual = {m.name: fetch(con, f"SELECT * FROM marts.{m.name}") for m in MARTS}
        rollups.write_back(con, cheeko, as_of_date=last_day)
    written = {table: pg_rows(cheeko, table) for table in WRITE_BACK_KEYS}
    return Run(cheeko, path, sources, as_of, last_day, built, expected, actual, written, faults or {})


def snapshot_sessions_as_of(cheeko: str, as_of: dt.datetime) -> None:
    """Make the database look as it did at ``as_of`` for game sessions: one that ended later had not ended yet.

    (Events dated after the as-of time stay: the as-of rule must leave them out. Only ``ended_at``, which
    the contract reads as stored, is put back to what the product had written by then.)
    """
    cutoff = as_of + FUTURE_GRACE
    with postgres.connect(cheeko) as conn:
        conn.execute("UPDATE analytics_game_sessions SET ended_at = NULL WHERE ended_at > %s AND started_at <= %s",
                     (cutoff, cutoff))


@pytest.fixture(scope="module")
def fleet(make_databases, tmp_path_factory) -> Run:
    pair = make_databases()
    tmp = tmp_path_factory.mktemp("rollups")
    result = generator.generate(pair.cheeko, pair.cognova,
                                generator.Options(devices=30, days=DAYS, seed=23, end=END, messy=True), tmp / "gen",
                                progress=lambda _: None)
    snapshot_sessions_as_of(pair.cheeko, AS_OF)
    return run_warehouse(pair.cheeko, pair.cognova, tmp / "warehouse.duckdb", as_of=AS_OF, first_day=FIRST, last_day=END,
                         faults=result.faults)


# -- the generated fleet -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_mart_matches_the_reference(fleet, name):
    m = mart(name)
    assert_same_rows(f"marts.{name}", fleet.expected[name], fleet.actual[name], m.key, list(m.columns))


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_mart_has_the_contract_columns(fleet, name):
    with warehouse.connect(fleet.path, read_only=True) as con:
        columns = [c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = ? ORDER BY column_index",
            [name]).fetchall()]
    assert columns == list(mart(name).columns)


def test_build_reports_every_mart(fleet):
    assert set(fleet.built) == {m.name for m in MARTS}
    for name, rows in fleet.built.items():
        count = rows if isinstance(rows, int) else len(rows)
        assert count == len(fleet.actual[name]), name


def test_the_fleet_reaches_the_rules(fleet):
    """The comparison means something: the data exercises the rules it is meant to."""
    sessions = fleet.expected["game_sessions"]
    # (Open sessions are rare in a generated fleet; the hand-made dataset below has them.)
    assert {"completed", "abandoned"} <= {s["status"] for s in sessions}
    assert any(s["totals_disagree"] for s in sessions)
    runs = fleet.expected["cognova_agent_runs_daily"]
    assert sum(r["stale"] for r in runs) > 0  # (runs still running: the hand-made dataset)
    assert {r["mastery"] for r in fleet.expected["learning_progress"]} == {"needs_data", "struggling", "practicing", "mastered"}
    # The as-of time cuts real evening activity in the Americas, not only the post-dated rows.
    planted_future = sum(v for k, v in fleet.faults.items() if k.startswith("future_"))
    assert quality_counts(fleet.sources, AS_OF)["future_timestamps"] > planted_future
    assert all(fleet.faults.get(k, 0) > 0 for k in ("mac_invalid", "mac_respelled", "timezone_unknown",
                                                  "token_total_mismatch", "session_total_mismatch"))


@pytest.mark.parametrize("table", list(WRITE_BACK_KEYS))
def test_write_back_matches_the_reference(fleet, table):
    expected = write_back_rows(fleet.expected, fleet.sources, fleet.last_day)[table]
    columns = list(expected[0]) if expected else []
    assert expected, f"the reference has no {table} rows: the test proves nothing"
    assert_same_rows(table, expected, fleet.written[table], WRITE_BACK_KEYS[table], columns)


def test_quality_counts_match_the_reference_and_the_generator(fleet):
    with warehouse.connect(fleet.path) as con:
        now = rollups.quality_counts(con, as_of_time=AS_OF, cheeko_url=fleet.cheeko)
        later = rollups.quality_counts(con, as_of_time=HORIZON, cheeko_url=fleet.cheeko)
    assert {c: now.get(c) for c in CHECKS} == quality_counts(fleet.sources, AS_OF)
    assert {c: later.get(c) for c in CHECKS} == quality_counts(fleet.sources, HORIZON)
    f = fleet.faults
    planted = {
        "mac_unnormalisable": f["mac_invalid"],
        "timezone_unknown": f["timezone_unknown"],
        # At the data's horizon only the rows the generator post-dated are in the future.
        "future_timestamps": sum(v for k, v in f.items() if k.startswith("future_")),
        "duplicate_events": sum(v for k, v in f.items() if k.startswith("duplicate_")),
        "token_totals_mismatch": f["token_total_mismatch"],
        "session_totals_disagree": f["session_total_mismatch"],
    }
    assert quality_counts(fleet.sources, HORIZON) == planted
    assert {c: later.get(c) for c in CHECKS} == planted


def test_a_second_write_back_changes_no_row(fleet):
    before = {t: {_key(r, k): r for r in pg_rows(fleet.cheeko, t)} for t, k in WRITE_BACK_KEYS.items()}
    with warehouse.connect(fleet.path) as con:
        rollups.write_back(con, fleet.cheeko, as_of_date=fleet.last_day)
    after = {t: {_key(r, k): r for r in pg_rows(fleet.cheeko, t)} for t, k in WRITE_BACK_KEYS.items()}
    for table in WRITE_BACK_KEYS:
        assert before[table].keys() == after[table].keys(), table
        changed = [k for k in before[table] if before[table][k] != after[table][k]]
        assert changed == [], f"{table}: {len(changed)} row(s) rewritten, e.g. {changed[:3]}"


# -- a hand-made dataset ---------------------------------------------------------------------------------
# Every rule at least once, on rows small enough to work out by hand. Local days: D1 is a Kolkata kid's,
# D2 has no kid and a New York owner (the data crosses the 8 March DST change), D3's kid has an unknown
# zone (UTC), D4's kid has no zone (its Berlin owner's), ...05 has no ai_device row (UTC).

SMALL_AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SMALL_FIRST, SMALL_LAST = dt.date(2026, 3, 8), dt.date(2026, 3, 10)  # activity on 7 March lies before the range
TEST_PRICES = {"version": "test", "default": (0.5, 1.5), "models": {"gpt-4o-mini": (0.15, 0.6)}}
M1, M2, A1, A2 = (f"00000000-0000-0000-0000-0000000000{s}" for s in ("a1", "a2", "b1", "b2"))
X1, C1 = "00000000-0000-0000-0000-0000000000c1", "00000000-0000-0000-0000-0000000000d1"
D1, D2, D3, D4, D5 = (f"aa:bb:cc:00:00:0{i}" for i in range(1, 6))


def at(text: str) -> dt.datetime:
    """A UTC time written '2026-03-08 18:20[:ss]'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def insert(url: str, table: str, rows: list[dict]) -> None:
    """Insert rows (dicts of column -> value) with bound parameters; the column names come from the test."""
    with postgres.connect(url) as conn:
        for row in rows:
            columns = ", ".join(f'"{c}"' for c in row)
            conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join(["%s"] * len(row))})', tuple(row.values()))


def _attempt(session: str, mac: str, key: str, subject: str, topic: str, when: dt.datetime, correct: bool) -> dict:
    return {"session_id": session, "mac_address": mac, "question_key": key, "subject": subject, "topic": topic,
            "difficulty": 2, "is_correct": correct, "attempted_at": when}


def _usage(mac: str, day: str, inp: int, out: int, total: int, ttft: str | None, messages: int) -> dict:
    return {"mac_address": mac, "usage_date": dt.date.fromisoformat(day), "input_tokens": inp, "output_tokens": out,
            "total_tokens": total, "input_audio_tokens": inp // 2, "input_text_tokens": inp - inp // 2,
            "input_cached_tokens": 0, "output_audio_tokens": out, "output_text_tokens": 0,
            "avg_ttft_seconds": None if ttft is None else Decimal(ttft), "message_count": messages, "session_count": 1,
            "session_duration_seconds": Decimal("100.500"), "total_response_duration_seconds": Decimal("20.250")}


def fill_small(cheeko: str, cognova: str) -> None:
    insert(cheeko, "sys_user", [{"id": 1, "username": "p1", "created_at": at("2026-03-08 10:00")},
                                {"id": 2, "username": "p2", "created_at": at("2026-01-01 00:00")}])
    insert(cheeko, "parent_profile", [{"user_id": 1, "timezone": "America/New_York"}, {"user_id": 2, "timezone": "Europe/Berlin"}])
    insert(cheeko, "kid_profile", [{"id": 11, "user_id": 1, "name": "k11", "timezone": "Asia/Kolkata"},
                                   {"id": 12, "user_id": 1, "name": "k12", "timezone": "Mars/Olympus_Mons"},
                                   {"id": 13, "user_id": 2, "name": "k13", "timezone": None}])
    insert(cheeko, "ai_model_config", [{"id": M1, "model_type": "LLM", "model_code": "gpt-4o-mini", "model_name": "m1"},
                                       {"id": M2, "model_type": "LLM", "model_code": "mystery-model", "model_name": "m2"}])
    insert(cheeko, "ai_agent", [{"id": A1, "user_id": 1, "agent_name": "a1", "llm_model_id": M1},
                                {"id": A2, "user_id": 1, "agent_name": "a2", "llm_model_id": M2}])
    insert(cheeko, "ai_device", [
        {"mac_address": "AA:BB:CC:00:00:01", "user_id": 1, "kid_id": 11, "agent_id": A1, "create_date": at("2026-03-07 05:00")},
        {"mac_address": D2, "user_id": 1, "kid_id": None, "agent_id": None, "create_date": at("2026-03-08 09:00")},
        {"mac_address": "aa-bb-cc-00-00-03", "user_id": 1, "kid_id": 12, "agent_id": A2, "create_date": at("2026-02-01 00:00")},
        {"mac_address": D4, "user_id": 2, "kid_id": 13, "agent_id": None, "create_date": at("2026-02-01 00:00")},
    ])
    chat = lambda mac, session, kind, when: {"mac_address": mac, "session_id": session, "chat_type": kind, "created_at": at(when)}  # noqa: E731
    insert(cheeko, "ai_agent_chat_history", [
        chat(D1, "k1", 1, "2026-03-08 18:20"),                   # Kolkata 23:50 on the 8th
        chat("AA-BB-CC-00-00-01", "k1", 1, "2026-03-08 18:20"),  # the same turn again, respelled
        chat(D1, "k1", 2, "2026-03-08 18:21"),                   # Cheeko speaking: not activity
        chat("aabbcc000001", "k2", 1, "2026-03-08 18:40"),       # Kolkata 00:10 on the 9th
        chat(D4, "k3", 1, "2026-03-10 12:04"),                   # within the 5 minutes' grace
        chat(D4, "k3", 1, "2026-03-10 12:06"),                   # in the future
        chat("zz:zz:zz:zz:zz:zz", "k4", 1, "2026-03-09 10:00"),  # no device
        chat(D4, "k5", 1, "2026-03-09 23:30"),                   # Berlin 00:30 on the 10th
        chat(D2, "k6", 1, "2026-03-08 04:40"),                   # New York 23:40 EST on the 7th
    ])
    play = lambda mac, ctype, cid, event, pos, when: {"mac_address": mac, "content_type": ctype, "content_id": cid,  # noqa: E731
                                                      "event_type": event, "position_seconds": pos, "occurred_at": at(when)}
    insert(cheeko, "analytics_media_playback", [
        play(D2, "story", "st1", "play", 0, "2026-03-08 04:30"),        # New York 23:30 EST on the 7th
        play(D2, "story", "st1", "complete", 600, "2026-03-08 05:30"),  # 00:30 EST on the 8th
        play(D2, "story", "st1", "complete", 600, "2026-03-08 05:30"),  # duplicate
        play(D2, "music", "mu1", "pause", 45, "2026-03-09 03:30"),      # 23:30 EDT on the 8th
        play(D2, "music", "mu1", "complete", 180, "2026-03-09 04:30"),  # 00:30 EDT on the 9th
        play(D2, "textbook", "tb1", "skip", 10, "2026-03-09 05:00"),    # counts for nothing
    ])
    insert(cheeko, "rfid_scan_log", [
        {"uid": "U1", "mac_address": D2, "scanned_at": at("2026-03-10 03:30")},  # 23:30 EDT on the 9th
        {"uid": "U2", "mac_address": D5, "scanned_at": at("2026-03-10 00:30")},
        {"uid": "U2", "mac_address": D5, "scanned_at": at("2026-03-17 00:00")},  # future
        {"uid": "U3", "mac_address": D3, "scanned_at": at("2026-03-09 01:00")},  # UTC's 9th (its owner's New York says the 8th)
    ])
    session = lambda sid, mac, kid, start, end, total, correct: {  # noqa: E731
        "session_id": sid, "mac_address": mac, "kid_id": kid, "game_type": "quiz", "started_at": at(start),
        "ended_at": None if end is None else at(end), "total_questions": total, "correct_answers": correct}
    insert(cheeko, "analytics_game_sessions", [
        session("gs1", "AA:BB:CC:00:00:03", 11, "2026-03-09 10:00", "2026-03-09 10:05", 3, 2),  # completed; kid from the session
        session("gs2", D3, None, "2026-03-10 09:00", None, 5, 3),                            # abandoned; totals disagree
        session("gs3", D3, None, "2026-03-10 11:40", None, 2, 1),                            # open; one attempt in the future
        session("gs4", D3, None, "2026-03-10 11:50", None, 0, 0),                            # open, no attempts yet
        session("gs5", D3, None, "2026-03-10 12:06", None, 1, 1),                            # future
        session("gs6", "zz:zz:zz:zz:zz:zz", 11, "2026-03-09 08:00", "2026-03-09 08:05", 1, 1),  # invalid MAC
        session("gs7", D1, None, "2026-03-07 20:00", "2026-03-07 20:10", 22, 12),            # kid from the device
        session("gs8", D1, None, "2026-03-07 10:00", "2026-03-07 10:02", 1, 1),              # Kolkata 15:30 on the 7th
    ])
    insert(cheeko, "analytics_game_attempts", [
        _attempt("gs1", D3, "q1", "math", "add", at("2026-03-09 10:01"), True),
        _attempt("gs1", D3, "q1", "math", "add", at("2026-03-09 10:01"), True),  # duplicate
        _attempt("gs1", D3, "q2", "math", "add", at("2026-03-09 10:02"), False),
        _attempt("gs1", D3, "q3", "math", "add", at("2026-03-09 10:03"), True),
        _attempt("gs2", D3, "q4", "science", "plants", at("2026-03-10 09:01"), True),
        _attempt("gs2", D3, "q5", "science", "plants", at("2026-03-10 09:02"), False),
        _attempt("gs3", D3, "q6", "science", "plants", at("2026-03-10 11:45"), True),
        _attempt("gs3", D3, "q7", "science", "plants", at("2026-03-10 12:10"), False),  # future
        _attempt("gs5", D3, "q8", "science", "plants", at("2026-03-10 12:07"), True),   # future
        _attempt("gs6", "zz:zz:zz:zz:zz:zz", "q9", "math", "add", at("2026-03-09 08:01"), True),
        # Kolkata 01:30 on the 8th: 22 attempts, the first 12 right.
        *[_attempt("gs7", D1, f"a{i:02d}", "math", "add", at("2026-03-07 20:00") + dt.timedelta(seconds=10 * (i + 1)), i < 12)
          for i in range(22)],
        _attempt("gs8", D1, "r1", "reading", "letters", at("2026-03-07 10:01"), True),
    ])
    insert(cheeko, "device_token_usage", [
        _usage(D1, "2026-03-09", 1000, 500, 1500, "0.800", 10),
        _usage("AA-BB-CC-00-00-01", "2026-03-09", 10, 5, 15, "1.100", 5),  # the same device and day, respelled
        _usage(D1, "2026-03-10", 2000, 1000, 3100, "1.200", 30),           # total != input + output
        _usage(D2, "2026-03-09", 100, 50, 150, None, 4),
        _usage(D3, "2026-03-10", 1_000_000, 1_000_000, 2_000_000, "0.500", 2),  # a model the sheet lacks
        _usage(D5, "2026-03-10", 10, 10, 20, "1.000", 1),                  # no ai_device row: no owner
        _usage(D1, "2026-02-28", 100, 100, 200, "1.000", 2),               # another month, before the range
        _usage(D4, "2026-03-11", 5, 5, 10, "1.000", 1),                    # after the last day
        _usage("bad", "2026-03-09", 1, 1, 2, "1.000", 1),                  # no device
    ])

    insert(cognova, "cron_agents", [{"id": X1, "name": "Nightly digest", "schedule": "0 1 * * *", "prompt": "p"}])
    run = lambda status, start, duration, cost, inp, out: {  # noqa: E731
        "agent_id": X1, "status": status, "started_at": at(start), "duration_ms": duration, "cost_usd": cost,
        "input_tokens": inp, "output_tokens": out,
        "completed_at": None if duration is None else at(start) + dt.timedelta(milliseconds=duration)}
    insert(cognova, "cron_agent_runs", [
        run("success", "2026-03-10 01:00", 1000, 0.5, 100, 10),
        run("error", "2026-03-10 02:00", 3000, 0.25, 50, 5),
        run("running", "2026-03-10 08:00", None, None, None, None),  # 4 hours before the as-of time
        run("running", "2026-03-10 05:00", None, None, None, None),  # 7 hours: stale
        run("success", "2026-03-09 10:00", 2000, 0.125, 10, 1),
        run("cancelled", "2026-03-09 11:00", None, None, None, None),
    ])
    usage = lambda source, when, inp, out, cost, duration: {  # noqa: E731
        "source": source, "created_at": at(when), "input_tokens": inp, "output_tokens": out, "cost_usd": cost, "duration_ms": duration}
    insert(cognova, "token_usage", [
        usage("chat", "2026-03-09 10:00", 100, 20, 0.01, 500), usage("chat", "2026-03-09 11:00", 50, 10, 0.02, None),
        usage("agent", "2026-03-10 01:00", 100, 10, 0.5, 1000), usage("memory_extraction", "2026-03-10 12:30", 1, 1, 0.001, 10),
    ])
    insert(cognova, "conversations", [{"id": C1, "session_id": "web_1", "started_at": at("2026-03-09 09:00")}])
    insert(cognova, "conversation_messages", [
        {"conversation_id": C1, "role": "user", "content": "hi", "cost_usd": None, "created_at": at("2026-03-09 09:00:10")},
        {"conversation_id": C1, "role": "assistant", "content": "hello", "cost_usd": 0.1, "created_at": at("2026-03-09 09:00:20")},
    ])
    insert(cognova, "tasks", [
        {"title": "t1", "created_at": at("2026-03-08 10:00"), "completed_at": at("2026-03-10 09:00"), "status": "done"},
        {"title": "t2", "created_at": at("2026-03-09 10:00"), "deleted_at": at("2026-03-09 12:00")},
        {"title": "t3", "created_at": at("2026-03-10 08:00")},
    ])
    insert(cognova, "reminders", [{"message": "r1", "remind_at": at("2026-03-09 08:00"), "notified": True},
                                  {"message": "r2", "remind_at": at("2026-03-10 11:00"), "notified": False}])
    insert(cognova, "hook_events", [{"event_type": "PreToolUse", "blocked": False, "created_at": at("2026-03-08 10:00")},
                                    {"event_type": "PreToolUse", "blocked": True, "created_at": at("2026-03-09 10:00")}])


@pytest.fixture(scope="module")
def small_db(make_databases):
    pair = make_databases()
    fill_small(pair.cheeko, pair.cognova)
    return pair


@pytest.fixture(scope="module")
def small(small_db, tmp_path_factory) -> Run:
    """The hand-made rows, built from their first local day (the 7th) on."""
    return run_warehouse(small_db.cheeko, small_db.cognova, tmp_path_factory.mktemp("small") / "warehouse.duckdb",
                         as_of=SMALL_AS_OF, first_day=SMALL_FIRST - dt.timedelta(days=1), last_day=SMALL_LAST)


def _by(rows: list[dict], *key: str) -> dict:
    return {tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: r for r in rows}


def test_the_reference_gives_the_numbers_worked_out_by_hand(small_db):
    """The reference itself, on the hand-made rows (so a shared mistake is not a silent pass)."""
    sources = load_sources(small_db.cheeko, small_db.cognova)
    ref = reference_marts(sources, SMALL_AS_OF, SMALL_FIRST, SMALL_LAST, prices=TEST_PRICES)
    d8, d9, d10 = SMALL_FIRST, SMALL_FIRST + dt.timedelta(days=1), SMALL_LAST

    activity = _by(ref["daily_device_activity"], "activity_date", "mac_address")
    assert activity[(d8, D1)]["user_turns"] == 1 and activity[(d9, D1)]["user_turns"] == 1  # 23:50 and 00:10 in Kolkata
    # gs7's attempts (UTC evening of the 7th) are Kolkata's small hours of the 8th.
    assert activity[(d8, D1)]["game_attempts"] == 22 and activity[(d8, D1)]["first_event_at"] == at("2026-03-07 20:00:10")
    assert activity[(d9, D1)]["first_event_at"] == activity[(d9, D1)]["last_event_at"] == at("2026-03-08 18:40")
    assert {d for d, m in activity if m == D2} == {d8, d9}  # the 7th is before the range
    assert activity[(d8, D2)]["media_plays"] == 1 and activity[(d9, D2)] == {
        "activity_date": d9, "mac_address": D2, "user_turns": 0, "game_attempts": 0, "media_plays": 1, "rfid_scans": 1,
        "first_event_at": at("2026-03-09 04:30"), "last_event_at": at("2026-03-10 03:30")}
    assert activity[(d10, D4)]["user_turns"] == 2  # Berlin's 00:30 and 13:04; 12:06 UTC is in the future
    assert activity[(d10, D5)]["rfid_scans"] == 1
    assert activity[(d9, D3)]["game_attempts"] == 3 and activity[(d10, D3)]["game_attempts"] == 3
    assert activity[(d9, D3)]["rfid_scans"] == 1 and (d8, D3) not in activity  # an unknown zone is UTC, not the owner's
    assert not any(m.startswith("zz") for _, m in activity)

    streaks = _by(ref["device_streaks"], "as_of_date", "mac_address")
    assert streaks[(d8, D2)] == {"as_of_date": d8, "mac_address": D2, "current_streak_days": 2, "longest_streak_days": 2,
                                      "last_active_date": d8, "streak_start_date": dt.date(2026, 3, 7), "total_active_days": 2}
    assert streaks[(d10, D2)]["current_streak_days"] == 3 and streaks[(d10, D2)]["last_active_date"] == d9  # kept a day
    assert streaks[(d9, D1)]["current_streak_days"] == 3 and streaks[(d10, D1)]["current_streak_days"] == 3  # from the 7th
    assert (d8, D4) not in streaks and (d9, D4) not in streaks  # Berlin's first active day is the 10th
    assert streaks[(d10, D4)]["current_streak_days"] == 1

    sessions = _by(ref["game_sessions"], "session_id")
    assert set(sessions) == {"gs1", "gs2", "gs3", "gs4", "gs7"}  # gs5 future, gs6 invalid MAC
    assert sessions["gs7"]["local_date"] == d8 and sessions["gs7"]["kid_id"] is None  # as stored
    assert (sessions["gs1"]["status"], sessions["gs1"]["duration_seconds"], sessions["gs1"]["attempts"]) == ("completed", 300.0, 3)
    assert sessions["gs1"]["totals_disagree"] is False and sessions["gs1"]["mac_address"] == D3
    assert (sessions["gs2"]["status"], sessions["gs2"]["ended_at_effective"], sessions["gs2"]["duration_seconds"]) == (
        "abandoned", at("2026-03-10 09:02"), 120.0)
    assert sessions["gs2"]["totals_disagree"] is True and sessions["gs2"]["accuracy"] == 0.5
    assert (sessions["gs3"]["status"], sessions["gs3"]["attempts"], sessions["gs3"]["duration_seconds"]) == ("open", 1, None)
    assert (sessions["gs4"]["status"], sessions["gs4"]["accuracy"], sessions["gs4"]["totals_disagree"]) == ("open", None, False)
    daily = _by(ref["game_daily"], "local_date", "mac_address")
    assert daily[(d10, D3)] == {"local_date": d10, "mac_address": D3, "sessions": 3, "completed_sessions": 0, "attempts": 3,
                                "correct": 2, "accuracy": 2 / 3, "total_duration_seconds": 120.0}

    learning = _by(ref["learning_progress"], "as_of_date", "kid_id", "subject", "topic")
    early = learning[(d8, 11, "math", "add")]  # gs7 only: 22 attempts, latest 20 hold 10 right -> exactly 0.5
    assert (early["attempts"], early["correct"], early["recent_accuracy"], early["mastery"]) == (22, 12, 0.5, "practicing")
    late = learning[(d10, 11, "math", "add")]  # + gs1's 3 (kid from the session, not the device's 12)
    assert (late["attempts"], late["correct"], late["recent_accuracy"], late["mastery"]) == (25, 14, 9 / 20, "struggling")
    assert late["last_practiced_at"] == at("2026-03-09 10:03")
    plants = learning[(d10, 12, "science", "plants")]
    assert (plants["attempts"], plants["correct"], plants["mastery"]) == (3, 2, "needs_data")
    assert (d8, 12, "science", "plants") not in learning
    assert learning[(d8, 11, "reading", "letters")]["attempts"] == 1  # practised on the 7th

    progress = _by(ref["device_progress"], "as_of_date", "mac_address")
    p2 = progress[(d10, D2)]
    assert (p2["total_active_days"], p2["stories_completed"], p2["songs_completed"], p2["listen_seconds"], p2["rfid_scans"]) == (
        3, 1, 1, 600 + 45 + 180, 1)
    assert p2["last_active_at"] == at("2026-03-10 03:30")
    p1 = progress[(d8, D1)]
    assert (p1["user_turns"], p1["game_sessions"], p1["attempts"], p1["correct"], p1["total_active_days"]) == (1, 2, 23, 13, 2)
    assert progress[(d8, D2)]["user_turns"] == 1  # the evening of the 7th counts for every D
    p3 = progress[(d10, D3)]
    assert (p3["game_sessions"], p3["attempts"], p3["correct"], p3["accuracy"], p3["rfid_scans"]) == (4, 6, 4, 4 / 6, 1)
    assert p3["total_active_days"] == 2

    tokens = _by(ref["token_usage_daily"], "usage_date", "mac_address")
    t1 = tokens[(d9, D1)]
    assert (t1["input_tokens"], t1["output_tokens"], t1["total_tokens"], t1["llm_model"], t1["owner_user_id"]) == (
        1010, 505, 1515, "gpt-4o-mini", 1)
    assert t1["avg_ttft_seconds"] == pytest.approx(0.9) and t1["est_cost_usd"] == pytest.approx((1010 * 0.15 + 505 * 0.6) / 1e6)
    assert t1["session_duration_seconds"] == Decimal("201.000") and t1["price_sheet_version"] == "test"
    assert tokens[(d10, D3)]["llm_model"] == "default" and tokens[(d10, D3)]["est_cost_usd"] == pytest.approx(2.0)
    assert tokens[(d9, D2)]["avg_ttft_seconds"] is None and tokens[(d10, D5)]["owner_user_id"] is None
    assert not any(m == "bad" or d > d10 for d, m in tokens)
    monthly = _by(ref["token_usage_monthly"], "month", "owner_user_id")
    assert set(monthly) == {(dt.date(2026, 2, 1), 1), (dt.date(2026, 3, 1), 1), (dt.date(2026, 3, 1), None)}
    march = monthly[(dt.date(2026, 3, 1), 1)]
    assert (march["devices"], march["total_tokens"], march["message_count"]) == (3, 1515 + 3100 + 150 + 2_000_000, 51)

    fleet = _by(ref["fleet_daily"], "day")
    assert [fleet[d]["active_devices"] for d in (d8, d9, d10)] == [2, 3, 4]
    assert (fleet[d8]["new_devices"], fleet[d8]["new_users"], fleet[d8]["user_turns"], fleet[d8]["stories_completed"]) == (1, 1, 3, 1)
    assert (fleet[d9]["attempts"], fleet[d9]["accuracy"], fleet[d9]["songs_completed"], fleet[d9]["total_tokens"]) == (3, 2 / 3, 1, 1665)
    assert (fleet[d10]["game_sessions"], fleet[d10]["total_tokens"]) == (3, 3100 + 2_000_000 + 20)
    assert fleet[d10]["p50_ttft_seconds"] == pytest.approx(1.0) and fleet[d10]["p95_ttft_seconds"] == pytest.approx(1.18)
    assert fleet[d8]["avg_ttft_seconds"] is None and fleet[d8]["accuracy"] is None

    runs = _by(ref["cognova_agent_runs_daily"], "day", "agent_id")
    r10 = runs[(d10, uuid.UUID(X1))]
    assert (r10["runs"], r10["success"], r10["error"], r10["running"], r10["stale"], r10["success_rate"]) == (4, 1, 1, 1, 1, 0.5)
    assert (r10["p50_duration_ms"], r10["p95_duration_ms"], r10["cost_usd"], r10["input_tokens"]) == (2000.0, 2900.0, 0.75, 150)
    r9 = runs[(d9, uuid.UUID(X1))]
    assert (r9["runs"], r9["cancelled"], r9["success_rate"], r9["p95_duration_ms"], r9["agent_name"]) == (2, 1, 0.5, 2000.0, "Nightly digest")
    costs = _by(ref["cognova_cost_daily"], "day", "source")
    assert set(costs) == {(d9, "chat"), (d10, "agent")}  # memory extraction at 12:30 is in the future
    assert (costs[(d9, "chat")]["operations"], costs[(d9, "chat")]["total_tokens"], costs[(d9, "chat")]["duration_ms"]) == (2, 180, 500)
    activity = _by(ref["cognova_activity_daily"], "day")
    assert activity[d9] == {"day": d9, "conversations_started": 1, "messages": 2, "chat_cost_usd": pytest.approx(0.1),
                            "tasks_created": 1, "tasks_completed": 0, "reminders_due": 1, "reminders_notified": 1,
                            "hook_events": 1, "blocked_hook_events": 1}
    assert (activity[d10]["tasks_completed"], activity[d10]["reminders_due"], activity[d10]["reminders_notified"]) == (1, 1, 0)

    assert quality_counts(sources, SMALL_AS_OF) == {
        "mac_unnormalisable": 4,  # a chat turn, a session, its attempt, a token row
        "timezone_unknown": 1,
        "future_timestamps": 5,  # a chat turn, a scan, gs5 and two attempts
        "duplicate_events": 3, "token_totals_mismatch": 1,
        "session_totals_disagree": 2,  # gs2 (stored 5/3 against 2/1) and gs3 (an attempt still to come)
    }


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_small_mart_matches_the_reference(small, name):
    m = mart(name)
    assert_same_rows(f"marts.{name}", small.expected[name], small.actual[name], m.key, list(m.columns))


@pytest.mark.parametrize("table", list(WRITE_BACK_KEYS))
def test_small_write_back_matches_the_reference(small, table):
    expected = write_back_rows(small.expected, small.sources, small.last_day)[table]
    assert_same_rows(table, expected, small.written[table], WRITE_BACK_KEYS[table], list(expected[0]))


def test_small_quality_counts_match_the_reference(small):
    with warehouse.connect(small.path) as con:
        got = rollups.quality_counts(con, as_of_time=SMALL_AS_OF, cheeko_url=small.cheeko)
    assert {c: got.get(c) for c in CHECKS} == quality_counts(small.sources, SMALL_AS_OF)


@pytest.fixture(scope="module")
def small_range(small_db, tmp_path_factory) -> Run:
    """The hand-made rows, built for the 8th to the 10th only, into an empty warehouse."""
    return run_warehouse(small_db.cheeko, small_db.cognova, tmp_path_factory.mktemp("small_range") / "warehouse.duckdb",
                         as_of=SMALL_AS_OF, first_day=SMALL_FIRST, last_day=SMALL_LAST)


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_a_fresh_build_of_a_range_counts_the_days_before_it(small_range, name):
    """metrics.md: as-of marts count everything on or before D (A is every active local day on or before D),
    so a backfill of the 8th to the 10th into an empty warehouse still counts the 7th: D2's New York evening
    (a play and a chat turn, 04:30 and 04:40 UTC on the 8th) and D1's game in Kolkata (gs8)."""
    m = mart(name)
    assert_same_rows(f"marts.{name}", small_range.expected[name], small_range.actual[name], m.key, list(m.columns))
