"""The marts against an independent reference (``reference_metrics.py``), row for row.

A messy generated fleet (every fault metrics.md names) crossing the March
DST changes is extracted into a fresh warehouse; ``rollups.build`` makes every
mart and ``rollups.publish`` fills the pipeline's three tables in Cheeko's
``warehouse`` schema. Each mart, each published table and each data-quality
count must equal what plain Python computes from the operational rows, and
the app's own progress tables must come out of a run byte for byte as they
went in. A second, hand-made dataset pins the rules a generated fleet rarely
reaches (open sessions, stale runs, the as-of cut-off, respelled, padded and
invalid MACs, a device registered twice, unknown, blank and padded zones,
event times falling back, sessions that are not games, null stored values and
sums over nothing, money rounded once per row, the app's counters) and checks
the reference itself against numbers worked out by hand (the ``by_hand``
tests, which need no warehouse). Money (``MONEY``) compares exactly, as
Decimals of 8 places. On both backends.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest

from pipelines import postgres, rollups, warehouse
from pipelines.marts import MARTS, mart
from pipelines.source_tables import source_tables
from pipelines.warehouse import Location
from reference_metrics import (FUTURE_GRACE, PUBLISHED, Sources, load_sources, published_rows, quality_counts,
                               reference_marts)
from test_extract import extract_tables

pytestmark = pytest.mark.both_backends

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
          "session_duration_disagree", "app_counter_drift")
# The app's own tables: the warehouse reads them and never writes them (metrics.md, "Overrides").
APP_TABLES = ("analytics_streaks", "analytics_user_progress", "kid_learning_progress")
# The generator's planted faults (pipelines/generator/messy.py) each check must count at the data's horizon. The
# other faults of metrics.md's "Resolved details" (mac_whitespace, device_respelled, timezone_blank, timezone_padded,
# token_total_null, token_null_parts, message_cost_null) must count in no check: a padded MAC or zone is valid, a
# second spelling is the same device, a blank zone is unset, a null stored value never disagrees. An ai_device row
# whose MAC is invalid (device_mac_invalid) counts as unnormalisable (RULES['mac']).
PLANTED = {"mac_unnormalisable": ("mac_invalid", "device_mac_invalid"), "timezone_unknown": ("timezone_unknown",),
           "future_timestamps": ("future_",), "duplicate_events": ("duplicate_",),
           "token_totals_mismatch": ("token_total_mismatch",), "session_duration_disagree": ("session_duration_mismatch",)}


# Money columns (RULES['money']): DECIMAL(18, 8) US dollars, compared exactly.
MONEY = frozenset({"est_cost_usd", "cost_usd", "chat_cost_usd"})
CENT_MILLIONTHS = Decimal("0.00000001").as_tuple().exponent


# -- comparing rows --------------------------------------------------------------------------------


def same(expected, actual, *, exact: bool = False) -> bool:
    """Equal values: floats within 1e-9, Decimals and integers exactly, UUIDs by their text. With ``exact`` (money),
    both must be Decimals of 8 decimal places and equal: no float tolerance, no float at all."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if exact:
        return (isinstance(expected, Decimal) and isinstance(actual, Decimal) and expected == actual
                and actual.as_tuple().exponent == CENT_MILLIONTHS)
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
            elif not same(exp[k][c], act[k][c], exact=c in MONEY):
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
    """Every row of ``table`` (a name from this file's lists, schema-qualified or not), times in UTC."""
    with postgres.connect(url) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    for row in rows:
        for k, v in row.items():
            if isinstance(v, dt.datetime):
                row[k] = v.astimezone(UTC)
    return rows


def app_table_bytes(url: str) -> dict[str, list[tuple[str, str]]]:
    """The app's tables as PostgreSQL prints them, row by row with the transaction that last wrote each row
    (``xmin``): equal before and after only when nothing rewrote a row, not even with the same values."""
    with postgres.connect(url) as conn:
        return {t: conn.execute(f"SELECT t.xmin::text, t::text FROM {t} AS t ORDER BY t.id::text").fetchall()
                for t in APP_TABLES}


def build(con, *, as_of_time: dt.datetime, first_day: dt.date, last_day: dt.date, cheeko_url: str) -> dict:
    """``rollups.build`` for every mart (handing over the Cheeko URL where the API takes one)."""
    extra = {"cheeko_url": cheeko_url} if "cheeko_url" in inspect.signature(rollups.build).parameters else {}
    return rollups.build(con, None, as_of_time=as_of_time, first_day=first_day, last_day=last_day, **extra)


@dataclass
class Run:
    """One dataset, its warehouse after build, and the reference's answers."""

    cheeko: str
    path: Location
    sources: Sources
    as_of: dt.datetime
    last_day: dt.date
    built: dict
    expected: dict[str, list[dict]]
    actual: dict[str, list[dict]]
    app_before: dict[str, list[tuple[str, str]]]
    faults: dict[str, int]
    planted_counts: dict[str, int]


def run_warehouse(cheeko: str, cognova: str, path: Location, *, as_of: dt.datetime, first_day: dt.date, last_day: dt.date,
                  faults: dict[str, int] | None = None, planted_counts: dict[str, int] | None = None) -> Run:
    app_before = app_table_bytes(cheeko)
    extract_tables(path, {"cheeko": cheeko, "cognova": cognova}, source_tables(), window=WINDOW)
    sources = load_sources(cheeko, cognova)
    expected = reference_marts(sources, as_of, first_day, last_day)
    with warehouse.connect(path) as con:
        built = build(con, as_of_time=as_of, first_day=first_day, last_day=last_day, cheeko_url=cheeko)
        actual = {m.name: fetch(con, f"SELECT * FROM marts.{m.name}") for m in MARTS}
    return Run(cheeko, path, sources, as_of, last_day, built, expected, actual, app_before, faults or {},
               planted_counts or {})


@dataclass
class Published:
    """A run's publish: what it returned and what the pipeline's tables and the app's tables hold after it."""

    run: Run
    result: dict
    tables: dict[str, list[dict]]
    app_after: dict[str, list[tuple[str, str]]]


def publish(run: Run) -> Published:
    with warehouse.connect(run.path) as con:
        result = rollups.publish(con, run.cheeko, as_of_date=run.last_day)
    tables = {name: pg_rows(run.cheeko, f"warehouse.{name}") for name in PUBLISHED}
    return Published(run, result, tables, app_table_bytes(run.cheeko))


def snapshot_sessions_as_of(cheeko: str, as_of: dt.datetime) -> None:
    """Make the database look as it did at ``as_of`` for mode sessions: one that ended later had not ended yet.

    (Events dated after the as-of time stay: the as-of rule must leave them out. Only ``ended_at`` and the
    stored ``duration_seconds``, which the app writes when a session ends, are put back to what it had
    written by then.)
    """
    cutoff = as_of + FUTURE_GRACE
    with postgres.connect(cheeko) as conn:
        conn.execute("UPDATE analytics_game_sessions SET ended_at = NULL, duration_seconds = NULL "
                     "WHERE ended_at > %s AND started_at <= %s", (cutoff, cutoff))


def planted(faults: dict[str, int]) -> dict[str, int]:
    """What each check must count at the data's horizon: the generator's planted faults (names or prefixes)."""
    return {check: sum(v for k, v in faults.items() if any(k == n or (n.endswith("_") and k.startswith(n)) for n in names))
            for check, names in PLANTED.items()}


@pytest.fixture(scope="module")
def fleet(make_databases, backend, tmp_path_factory) -> Run:
    from pipelines import generator  # (imported here: only the fleet needs it)

    pair = make_databases()
    tmp = tmp_path_factory.mktemp("rollups")
    result = generator.generate(pair.cheeko, pair.cognova,
                                generator.Options(devices=30, days=DAYS, seed=23, end=END, messy=True), tmp / "gen",
                                progress=lambda _: None)
    # At the horizon, before the snapshot puts back sessions that had not ended by AS_OF (and with them some
    # planted duration mismatches), the checks count exactly what the generator planted.
    horizon = quality_counts(load_sources(pair.cheeko, pair.cognova), HORIZON)
    snapshot_sessions_as_of(pair.cheeko, AS_OF)
    return run_warehouse(pair.cheeko, pair.cognova, backend.new(tmp, "warehouse"), as_of=AS_OF, first_day=FIRST, last_day=END,
                         faults=result.faults, planted_counts=horizon)


@pytest.fixture(scope="module")
def fleet_published(fleet) -> Published:
    return publish(fleet)


# -- the generated fleet -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_mart_matches(fleet, name):
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
    assert any(s["duration_disagrees"] for s in sessions)
    assert {s["is_game"] for s in sessions} == {True, False}  # games and the other modes
    runs = fleet.expected["cognova_agent_runs_daily"]
    assert sum(r["stale"] for r in runs) > 0  # (runs still running: the hand-made dataset)
    assert {r["mastery"] for r in fleet.expected["learning_progress"]} == {"needs_data", "struggling", "practicing", "mastered"}
    # The app keeps counters for the fleet, some of which drift from the exact values and some not.
    assert {r["drifting"] for r in fleet.expected["app_counter_drift"]} == {True, False}
    # The as-of time cuts real evening activity in the Americas, not only the post-dated rows.
    planted_future = sum(v for k, v in fleet.faults.items() if k.startswith("future_"))
    assert quality_counts(fleet.sources, AS_OF)["future_timestamps"] > planted_future
    assert all(fleet.faults.get(k, 0) > 0 for k in ("mac_invalid", "mac_respelled", "timezone_unknown",
                                                  "token_total_mismatch", "session_duration_mismatch"))
    # metrics.md "Resolved details", each reached: padded MACs, devices registered twice and rows that are no device,
    # blank and padded zones, null stored totals and parts, messages without a cost.
    assert all(fleet.faults.get(k, 0) > 0 for k in ("mac_whitespace", "device_respelled", "device_mac_invalid",
                                                  "timezone_blank", "timezone_padded", "token_total_null",
                                                  "token_null_parts",
                                                  "message_cost_null", "message_cost_null_day"))
    rows = fleet.sources.cheeko["ai_device"]
    created_in_range = sum(1 for r in rows if r["create_date"] is not None and FIRST <= r["create_date"].date() <= END)
    assert 0 < sum(r["new_devices"] for r in fleet.expected["fleet_daily"]) < created_in_range  # devices, not rows
    assert any(r["est_cost_usd"] is None for r in fleet.expected["token_usage_daily"])  # a day that reported no tokens
    assert any(r["chat_cost_usd"] is None and r["messages"] > 0 for r in fleet.expected["cognova_activity_daily"])
    money = [r[c] for m, c in (("token_usage_daily", "est_cost_usd"), ("cognova_cost_daily", "cost_usd"),
                               ("cognova_activity_daily", "chat_cost_usd")) for r in fleet.expected[m]]
    assert money and all(v is None or isinstance(v, Decimal) for v in money)


@pytest.mark.parametrize("table", list(PUBLISHED))
def test_publish_matches(fleet_published, table):
    expected = published_rows(fleet_published.run.expected, fleet_published.run.last_day)[table]
    assert expected, f"the reference has no {table} rows: the test proves nothing"
    assert_same_rows(f"warehouse.{table}", expected, fleet_published.tables[table], PUBLISHED[table],
                     list(mart(table).columns))


def test_publish_reports_every_table(fleet_published):
    assert set(fleet_published.result) == set(PUBLISHED)
    for table, outcome in fleet_published.result.items():
        assert outcome.inserted + outcome.updated + outcome.unchanged == len(fleet_published.tables[table]), table


def test_the_apps_tables_are_unchanged_by_a_warehouse_run(fleet_published):
    assert fleet_published.app_after == fleet_published.run.app_before


def test_quality_counts_match_and_count_what_the_generator_planted(fleet):
    with warehouse.connect(fleet.path) as con:
        now = rollups.quality_counts(con, as_of_time=AS_OF, cheeko_url=fleet.cheeko)
        later = rollups.quality_counts(con, as_of_time=HORIZON, cheeko_url=fleet.cheeko)
    assert {c: now.get(c) for c in CHECKS} == quality_counts(fleet.sources, AS_OF)
    assert {c: later.get(c) for c in CHECKS} == quality_counts(fleet.sources, HORIZON)
    # At the data's horizon only the rows the generator post-dated are in the future.
    assert {c: fleet.planted_counts[c] for c in PLANTED} == planted(fleet.faults)


def test_a_second_publish_changes_no_row(fleet_published):
    keys = PUBLISHED
    before = {t: {_key(r, k): r for r in pg_rows(fleet_published.run.cheeko, f"warehouse.{t}")} for t, k in keys.items()}
    with warehouse.connect(fleet_published.run.path) as con:
        again = rollups.publish(con, fleet_published.run.cheeko, as_of_date=fleet_published.run.last_day)
    after = {t: {_key(r, k): r for r in pg_rows(fleet_published.run.cheeko, f"warehouse.{t}")} for t, k in keys.items()}
    for table in keys:
        assert before[table].keys() == after[table].keys(), table
        changed = [k for k in before[table] if before[table][k] != after[table][k]]
        assert changed == [], f"{table}: {len(changed)} row(s) rewritten (updated_at included), e.g. {changed[:3]}"
        assert (again[table].inserted, again[table].updated, again[table].deleted) == (0, 0, 0), table


# -- a hand-made dataset ---------------------------------------------------------------------------------
# Every rule at least once, on rows small enough to work out by hand. Local days: D1 is a Kolkata kid's,
# D2's kid has a blank zone ('   ': unset), so its New York owner's applies (the data crosses the 8 March DST
# change), D3's kid has an unknown zone (UTC), D4 was registered again on the 9th as "AA-BB-CC-00-00-04" by
# another family (owner 3, whose zone is ''), and that later row wins: kid 14, zone ' Europe/Paris\t' trimmed
# (the same offsets as its first family's Berlin), agent A1; ...05 has no ai_device row (UTC), D6 (spelled with
# a space and a tab) has two rows updated at the same instant, the greater id winning: its kid 99 has no
# kid_profile row and the device no owner (UTC). An ai_device row whose MAC cannot be normalised was created on
# the 9th: no device.

SMALL_AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SMALL_FIRST, SMALL_LAST = dt.date(2026, 3, 8), dt.date(2026, 3, 10)  # activity on 7 March lies before the range
# Exact decimals; the default's input price has a third decimal, so a cost can fall halfway between two
# 8-place amounts (rounded half away from zero, once per row).
TEST_PRICES = {"version": "test", "default": (Decimal("0.125"), Decimal("1.5")),
               "models": {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.6"))}}
M1, M2, A1, A2 = (f"00000000-0000-0000-0000-0000000000{s}" for s in ("a1", "a2", "b1", "b2"))
X1, C1 = "00000000-0000-0000-0000-0000000000c1", "00000000-0000-0000-0000-0000000000d1"
D1, D2, D3, D4, D5, D6 = (f"aa:bb:cc:00:00:0{i}" for i in range(1, 7))
E1, E2 = "00000000-0000-0000-0000-0000000000e1", "00000000-0000-0000-0000-0000000000e2"  # D6's two rows
NOBODY = "aa:bb:cc:00:00:09"  # the app keeps counters for it; the warehouse saw nothing of it
GS7 = dt.datetime(2026, 3, 7, 20, 0, tzinfo=UTC)  # gs7's start: Kolkata 01:30 on the 8th


def at(text: str) -> dt.datetime:
    """A UTC time written '2026-03-08 18:20[:ss[.ffffff]]'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def insert(url: str, table: str, rows: list[dict]) -> None:
    """Insert rows (dicts of column -> value) with bound parameters, in order (identity ids follow it); the
    column names come from the test."""
    with postgres.connect(url) as conn:
        for row in rows:
            columns = ", ".join(f'"{c}"' for c in row)
            conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join(["%s"] * len(row))})', tuple(row.values()))


def _attempt(session: str, mac: str, game: str, kind: str | None, text: str | None, number: int, correct: bool | None,
             *, time: dt.datetime | None, answered: dt.datetime | None = None, created: dt.datetime | None = None) -> dict:
    """An analytics_game_attempts row; every time is given (the columns default to now(), which would move)."""
    return {"session_id": session, "mac_address": mac, "game_type": game, "question_type": kind, "question_text": text,
            "difficulty_level": "easy", "user_answer": "x", "correct_answer": "y", "is_correct": correct,
            "attempt_number": number, "attempt_time": time, "answered_at": answered,
            "created_at": created or time or answered}


def _session(sid: str, mac: str, mode: str, start: str, end: str | None, stored: int | None, interactions: int,
             status: str, agent: str | None = None) -> dict:
    return {"session_id": sid, "mac_address": mac, "agent_id": agent, "mode_type": mode, "started_at": at(start),
            "ended_at": None if end is None else at(end), "duration_seconds": stored, "interaction_count": interactions,
            "completion_status": status}


def _gs7_attempts() -> list[dict]:
    """22 math attempts, the first at GS7 + 10 s. attempt_number 2 and 3 share a time (3 inserted first, so its id
    is the smaller: the tie goes by attempt_number, not id); two attempts share time and number 4 (the tie goes by
    id). Right: 1, 3, 4 and 6..13; wrong: 2, the second 4, and 14..22."""
    def one(number: int, seconds: int, text: str, correct: bool) -> dict:
        when = GS7 + dt.timedelta(seconds=seconds)
        return _attempt("gs7", D1, "math_tutor", "addition", text, number, correct, time=when)

    return [one(1, 10, "1+1", True), one(3, 20, "3+3", True), one(2, 20, "2+2", False),
            one(4, 30, "4+4", True), one(4, 30, "four plus four", False),
            *[one(n, 10 * n, f"{n}+{n}", n <= 13) for n in range(6, 23)]]


def _usage(mac: str, day: str, inp: int | None, out: int | None, total: int | None, ttft: str | None, messages: int) -> dict:
    return {"mac_address": mac, "usage_date": dt.date.fromisoformat(day), "input_tokens": inp, "output_tokens": out,
            "total_tokens": total, "input_audio_tokens": None if inp is None else inp // 2,
            "input_text_tokens": None if inp is None else inp - inp // 2,
            "input_cached_tokens": 0, "output_audio_tokens": out, "output_text_tokens": 0,
            "avg_ttft_seconds": None if ttft is None else Decimal(ttft), "message_count": messages, "session_count": 1,
            "session_duration_seconds": Decimal("100.500"), "total_response_duration_seconds": Decimal("20.250")}


def _progress(mac: str, kid: int | None, updated: str, games, correct, wrong, current, longest, last: str | None) -> dict:
    """An analytics_user_progress row as the app keeps it."""
    return {"mac_address": mac, "kid_id": kid, "total_sessions": 7, "total_duration_seconds": 1000,
            "total_games_played": games, "total_correct_answers": correct, "total_wrong_answers": wrong,
            "current_streak": current, "longest_streak": longest, "last_activity_at": None if last is None else at(last),
            "created_at": at("2026-02-01 00:00"), "updated_at": at(updated)}


def fill_small(cheeko: str, cognova: str) -> None:
    insert(cheeko, "sys_user", [{"id": 1, "username": "p1", "created_at": at("2026-03-08 10:00")},
                                {"id": 2, "username": "p2", "created_at": at("2026-01-01 00:00")},
                                {"id": 3, "username": "p3", "created_at": at("2026-01-15 00:00")}])
    insert(cheeko, "parent_profile", [{"user_id": 1, "timezone": "America/New_York"}, {"user_id": 2, "timezone": "Europe/Berlin"},
                                      {"user_id": 3, "timezone": ""}])  # blank: unset, not unknown
    insert(cheeko, "kid_profile", [{"id": 11, "user_id": 1, "name": "k11", "timezone": "Asia/Kolkata"},
                                   {"id": 12, "user_id": 1, "name": "k12", "timezone": "Mars/Olympus_Mons"},
                                   {"id": 13, "user_id": 2, "name": "k13", "timezone": None},
                                   {"id": 14, "user_id": 3, "name": "k14", "timezone": " Europe/Paris\t"},  # trimmed: set
                                   {"id": 15, "user_id": 1, "name": "k15", "timezone": "   "}])  # blank: the owner's
    insert(cheeko, "ai_model_config", [{"id": M1, "model_type": "LLM", "model_code": "gpt-4o-mini", "model_name": "m1"},
                                       {"id": M2, "model_type": "LLM", "model_code": "mystery-model", "model_name": "m2"}])
    insert(cheeko, "ai_agent", [{"id": A1, "user_id": 1, "agent_name": "a1", "llm_model_id": M1},
                                {"id": A2, "user_id": 1, "agent_name": "a2", "llm_model_id": M2}])
    device = lambda mac, user, kid, agent, created, updated=None, **extra: {  # noqa: E731
        "mac_address": mac, "user_id": user, "kid_id": kid, "agent_id": agent, "create_date": at(created),
        "update_date": at(updated or created), **extra}
    insert(cheeko, "ai_device", [
        device("AA:BB:CC:00:00:01", 1, 11, A1, "2026-03-07 05:00"),
        device(D2, 1, 15, None, "2026-03-08 09:00"),
        device("aa-bb-cc-00-00-03", 1, 12, A2, "2026-02-01 00:00"),
        device(D4, 2, 13, None, "2026-02-01 00:00"),
        # D6 registered twice at the same instant (a double submit): the greater id is the later row, and wins.
        device(" aa:bb:cc:00:00:06\t", None, 99, None, "2026-02-01 00:00", id=E2),
        device("AABBCC000006", None, 98, None, "2026-02-01 00:00", id=E1),
        # D4 registered again by another family on the 9th: new on 1 February still; kid, owner and agent from here.
        device("AA-BB-CC-00-00-04", 3, 14, A1, "2026-03-09 09:00", "2026-03-09 09:30"),
        device("aa:bb:cc:00:00", 2, 13, None, "2026-03-09 08:00"),  # five octets: no device, not new
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
                                                      "event_type": event, "position_seconds": pos, "created_at": at(when)}
    insert(cheeko, "analytics_media_playback", [
        play(D2, "story", 1, "play", 0, "2026-03-08 04:30"),                   # New York 23:30 EST on the 7th
        play(D2, "story", 1, "complete", 600, "2026-03-08 05:30"),             # 00:30 EST on the 8th
        play("AA-BB-CC-00-00-02", "story", 1, "complete", 600, "2026-03-08 05:30"),  # the same event, respelled
        play(D2, "music", 2, "pause", 45, "2026-03-09 03:30"),                 # 23:30 EDT on the 8th
        play(D2, "music", 2, "complete", 180, "2026-03-09 04:30"),             # 00:30 EDT on the 9th
        play(D2, "textbook", 3, "skip", 10, "2026-03-09 05:00"),               # counts for nothing
    ])
    insert(cheeko, "rfid_scan_log", [
        {"rfid_uid": "U1", "mac_address": D2, "created_at": at("2026-03-10 03:30")},  # 23:30 EDT on the 9th
        {"rfid_uid": "U2", "mac_address": "\taa:bb:cc:00:00:05 ", "created_at": at("2026-03-10 00:30")},  # padded: D5
        {"rfid_uid": "U2", "mac_address": D5, "created_at": at("2026-03-17 00:00")},  # future
        {"rfid_uid": "U3", "mac_address": D3, "created_at": at("2026-03-09 01:00")},  # UTC's 9th (its owner's New York says the 8th)
        {"rfid_uid": "U3", "mac_address": "AA:BB:CC:00:00:03", "created_at": at("2026-03-09 01:00")},  # the same scan, respelled
    ])
    insert(cheeko, "analytics_game_sessions", [
        _session("gs1", "AA:BB:CC:00:00:03", "Math", "2026-03-09 10:00", "2026-03-09 10:05", 298, 4, "completed", A2),  # stored 2 s short
        _session("gs2", D3, "Riddle", "2026-03-10 09:00", None, None, 2, "in_progress", A2),      # abandoned
        _session("gs3", D3, "WordLadder", "2026-03-10 11:40", None, None, 1, "in_progress", A2),  # open; an attempt still to come
        _session("gs4", D3, "Math", "2026-03-10 11:50", None, None, 0, "in_progress", A2),        # open, no attempts yet: a game by its mode
        _session("gs5", D3, "Math", "2026-03-10 12:06", "2026-03-10 12:30", 10, 1, "completed", A2),  # future
        _session("gs6", "zz:zz:zz:zz:zz:zz", "Math", "2026-03-09 08:00", "2026-03-09 08:05", 0, 1, "completed"),  # invalid MAC
        _session("gs7", D1, "Math", "2026-03-07 20:00", "2026-03-07 20:10", 601, 22, "completed", A1),  # stored 1 s long: agrees
        _session("gs8", D1, "Riddle", "2026-03-07 10:00", "2026-03-07 10:02:00.4", 120, 1, "completed", A1),  # 0.4 s: agrees
        _session("gs9", D2, "Music", "2026-03-09 03:00", "2026-03-09 03:40", 2400, 12, "completed"),  # not a game
        _session("gs10", D4, "Conversation", "2026-03-10 08:00", "2026-03-10 08:20", None, 9, "completed"),  # a game by its attempts
        _session("gs11", D4, "Story", "2026-03-10 10:00", "2026-03-10 10:10", 600, 3, "completed"),  # a game by a future attempt
        _session("gs12", D1, "Math", "2026-03-09 12:00", "2026-03-09 12:03", 180, 2, "completed", A1),  # Kolkata 17:30 on the 9th
        _session("gs13", D6, "Math", "2026-03-10 07:00", "2026-03-10 07:02", 120, 1, "completed"),
        _session("gs14", D5, "Math", "2026-03-10 11:50", None, None, 0, "in_progress"),  # open: D5's only game that day
    ])
    insert(cheeko, "analytics_game_attempts", [
        _attempt("gs1", D3, "math_tutor", "addition", "1+1", 1, True, time=at("2026-03-09 10:01")),
        # The same attempt again (the key has no MAC), marked wrong: the first row (smallest id) is the one kept.
        _attempt("gs1", "AA-BB-CC-00-00-03", "math_tutor", "addition", "1+1", 1, False, time=at("2026-03-09 10:01")),
        _attempt("gs1", D3, "math_tutor", "addition", "2+2", 2, False, time=at("2026-03-09 10:02")),
        _attempt("gs1", D3, "math_tutor", "addition", "3+3", 3, True, time=at("2026-03-09 10:03")),
        _attempt("gs2", D3, "riddle_solver", "logic", "r1", 1, True, time=at("2026-03-10 09:01")),
        _attempt("gs2", D3, "riddle_solver", "logic", "r2", 2, False, time=at("2026-03-10 09:02")),
        _attempt("gs3", D3, "word_ladder", "rhyme", "cat", 1, True, time=at("2026-03-10 11:45")),
        _attempt("gs3", D3, "word_ladder", "rhyme", "hat", 2, False, time=at("2026-03-10 12:10")),   # future
        _attempt("gs5", D3, "math_tutor", "addition", "4+4", 1, True, time=at("2026-03-10 12:07")),  # future
        _attempt("gs6", "zz:zz:zz:zz:zz:zz", "math_tutor", "addition", "5+5", 1, True, time=at("2026-03-09 08:01")),
        # An invalid MAC: it does not make the music session a game.
        _attempt("gs9", "not-a-mac", "riddle_solver", None, "which song?", 1, True, time=at("2026-03-09 03:10")),
        *_gs7_attempts(),
        # No attempt_time: answered_at is the event time (Kolkata 15:31 on the 7th); no question_type: 'general'.
        _attempt("gs8", D1, "riddle_solver", None, "What has hands but no arms?", 1, True, time=None,
                 answered=at("2026-03-07 10:01"), created=at("2026-03-07 10:01:05")),
        _attempt("gs10", D4, "riddle_solver", None, None, 1, True, time=None, answered=at("2026-03-10 08:05"),
                 created=at("2026-03-10 08:05:02")),
        # The same key (session, number, null time, null text) as the row above: a repeat, whatever answered_at says.
        _attempt("gs10", D4, "riddle_solver", None, None, 1, False, time=None, answered=at("2026-03-10 08:07"),
                 created=at("2026-03-10 08:07:01")),
        # Neither attempt_time nor answered_at: created_at is the event time; is_correct unknown (not correct).
        _attempt("gs10", D4, "riddle_solver", None, "What has keys but no locks?", 2, None, time=None,
                 created=at("2026-03-10 08:10")),
        _attempt("gs11", D4, "riddle_solver", None, "late riddle", 1, True, time=at("2026-03-10 13:00")),  # future
        _attempt("gs12", D1, "math_tutor", "addition", "6+6", 1, True, time=at("2026-03-09 12:01")),
        _attempt("gs12", D1, "math_tutor", "addition", "7+7", 2, False, time=at("2026-03-09 12:02")),
        _attempt("gs13", D6, "math_tutor", "subtraction", "9-1", 1, True, time=at("2026-03-10 07:01")),
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
        _usage(D2, "2026-03-10", 201, 100, None, None, 3),                 # total not reported: never a mismatch
        _usage("\tAA:BB:CC:00:00:02", "2026-03-10", 1, None, 1, None, 1),  # the same device and day; output null
        _usage(D4, "2026-03-10", 40, 20, 60, None, 2),                     # priced by the later row's agent
        _usage(D6, "2026-03-10", None, None, None, None, 1),               # reported no tokens: no cost
    ])
    # The app's own tables, as the app keeps them (the exact values they are checked against: see the test).
    insert(cheeko, "analytics_user_progress", [
        _progress("AA:BB:CC:00:00:01", 11, "2026-03-09 00:00", 99, 99, 99, 99, 99, "2026-03-09 00:00"),  # superseded
        _progress("aa-bb-cc-00-00-01", 11, "2026-03-10 11:00", 3, 13, None, 3, 3, "2026-03-09 12:02:00.5"),
        _progress(D2, None, "2026-03-10 10:00", 1, 0, 0, 0, 3, "2026-03-10 03:30"),  # counted the music; lost the streak
        # Written at 10:00 and exact then; the games after it are not counted yet, and that is no drift.
        _progress("AA:BB:CC:00:00:03", 12, "2026-03-10 10:00", 2, 3, 2, 2, 2, "2026-03-10 09:02"),
        _progress(D4, 13, "2026-03-10 12:04:02", 2, 1, 1, 1, 1, "2026-03-10 12:04:02"),  # last activity 2 s late
        _progress("AABBCC000005", None, "2026-03-10 11:00", 0, 0, 0, 1, 1, "2026-03-10 00:30"),  # exact
        _progress("zz:zz:zz:zz:zz:zz", None, "2026-03-10 11:00", 5, 5, 5, 5, 5, "2026-03-10 00:00"),  # invalid MAC
        _progress(NOBODY, None, "2026-03-10 11:00", 2, 0, 0, 0, 0, "2026-03-01 00:00"),
    ])
    insert(cheeko, "analytics_streaks", [
        {"mac_address": "AA:BB:CC:00:00:01", "streak_type": "math_tutor", "streak_date": dt.date(2026, 3, 9),
         "streak_count": 2, "created_at": at("2026-03-09 12:02"), "updated_at": at("2026-03-09 12:02")},
        {"mac_address": D3, "streak_type": "riddle_solver", "streak_date": dt.date(2026, 3, 10), "streak_count": 1,
         "created_at": at("2026-03-10 09:01"), "updated_at": at("2026-03-10 09:01")},
    ])
    insert(cheeko, "kid_learning_progress", [
        {"kid_id": 11, "subject": "math_tutor", "topic": "addition", "score": 50, "time_spent": 600, "completed": False,
         "created_at": at("2026-03-07 20:10"), "updated_at": at("2026-03-09 12:03")},
        {"kid_id": 12, "subject": "math", "topic": "add", "score": None, "time_spent": None, "completed": True,
         "created_at": at("2026-03-01 00:00"), "updated_at": at("2026-03-01 00:00")},
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
        # 0.3 as a real is 0.300000011920928955078125: 0.30000001 to 8 places.
        {"conversation_id": C1, "role": "assistant", "content": "hello", "cost_usd": 0.3, "created_at": at("2026-03-09 09:00:20")},
        {"conversation_id": C1, "role": "user", "content": "still there?", "cost_usd": None, "created_at": at("2026-03-10 08:00")},
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
def small(small_db, backend, tmp_path_factory) -> Run:
    """The hand-made rows, built from their first local day (the 7th) on."""
    return run_warehouse(small_db.cheeko, small_db.cognova, backend.new(tmp_path_factory.mktemp("small"), "warehouse"),
                         as_of=SMALL_AS_OF, first_day=SMALL_FIRST - dt.timedelta(days=1), last_day=SMALL_LAST)


@pytest.fixture(scope="module")
def small_published(small) -> Published:
    return publish(small)


@pytest.fixture(scope="module")
def by_hand(small_db) -> tuple[Sources, dict[str, list[dict]]]:
    """The reference's answers on the hand-made rows, for the 8th to the 10th (no warehouse involved)."""
    sources = load_sources(small_db.cheeko, small_db.cognova)
    return sources, reference_marts(sources, SMALL_AS_OF, SMALL_FIRST, SMALL_LAST, prices=TEST_PRICES)


def _by(rows: list[dict], *key: str) -> dict:
    return {tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: r for r in rows}


D8, D9, D10 = SMALL_FIRST, SMALL_FIRST + dt.timedelta(days=1), SMALL_LAST


# -- the reference itself, against numbers worked out by hand (no warehouse) -------------------------------


def test_by_hand_daily_activity_and_streaks(by_hand):
    _, ref = by_hand
    activity = _by(ref["daily_device_activity"], "activity_date", "mac_address")
    # gs7's attempts (UTC evening of the 7th) are Kolkata's small hours of the 8th; the turn at 23:50 counts once.
    assert activity[(D8, D1)] == {"activity_date": D8, "mac_address": D1, "user_turns": 1, "game_attempts": 22,
                                  "media_plays": 0, "rfid_scans": 0, "first_event_at": at("2026-03-07 20:00:10"),
                                  "last_event_at": at("2026-03-08 18:20")}
    assert activity[(D9, D1)] == {"activity_date": D9, "mac_address": D1, "user_turns": 1, "game_attempts": 2,
                                  "media_plays": 0, "rfid_scans": 0, "first_event_at": at("2026-03-08 18:40"),
                                  "last_event_at": at("2026-03-09 12:02")}
    assert {d for d, m in activity if m == D1} == {D8, D9}  # gs8 (the 7th) is before the range
    assert {d for d, m in activity if m == D2} == {D8, D9}  # the 7th is before the range
    assert activity[(D8, D2)] == {  # the respelled complete is the same event
        "activity_date": D8, "mac_address": D2, "user_turns": 0, "game_attempts": 0, "media_plays": 1, "rfid_scans": 0,
        "first_event_at": at("2026-03-08 05:30"), "last_event_at": at("2026-03-08 05:30")}
    assert activity[(D9, D2)] == {
        "activity_date": D9, "mac_address": D2, "user_turns": 0, "game_attempts": 0, "media_plays": 1, "rfid_scans": 1,
        "first_event_at": at("2026-03-09 04:30"), "last_event_at": at("2026-03-10 03:30")}
    # The respelled scan is the same scan; an unknown zone is UTC, not the owner's New York.
    assert activity[(D9, D3)] == {
        "activity_date": D9, "mac_address": D3, "user_turns": 0, "game_attempts": 3, "media_plays": 0, "rfid_scans": 1,
        "first_event_at": at("2026-03-09 01:00"), "last_event_at": at("2026-03-09 10:03")}
    assert (D8, D3) not in activity and activity[(D10, D3)]["game_attempts"] == 3
    # Berlin's 00:30 and 13:04 (12:06 UTC is in the future); gs10's attempts by answered_at and by created_at.
    assert activity[(D10, D4)] == {
        "activity_date": D10, "mac_address": D4, "user_turns": 2, "game_attempts": 2, "media_plays": 0, "rfid_scans": 0,
        "first_event_at": at("2026-03-09 23:30"), "last_event_at": at("2026-03-10 12:04")}
    assert activity[(D10, D5)]["rfid_scans"] == 1 and activity[(D10, D6)]["game_attempts"] == 1
    assert not any(m.startswith("zz") for _, m in activity)

    streaks = _by(ref["device_streaks"], "as_of_date", "mac_address")
    assert streaks[(D8, D2)] == {"as_of_date": D8, "mac_address": D2, "current_streak_days": 2, "longest_streak_days": 2,
                                 "last_active_date": D8, "streak_start_date": dt.date(2026, 3, 7), "total_active_days": 2}
    assert streaks[(D10, D2)]["current_streak_days"] == 3 and streaks[(D10, D2)]["last_active_date"] == D9  # kept a day
    assert streaks[(D10, D1)] == {"as_of_date": D10, "mac_address": D1, "current_streak_days": 3, "longest_streak_days": 3,
                                  "last_active_date": D9, "streak_start_date": dt.date(2026, 3, 7), "total_active_days": 3}
    assert (D8, D3) not in streaks and streaks[(D10, D3)]["streak_start_date"] == D9
    assert (D8, D4) not in streaks and (D9, D4) not in streaks  # Berlin's first active day is the 10th
    assert streaks[(D10, D4)]["current_streak_days"] == 1


def test_by_hand_game_sessions(by_hand):
    _, ref = by_hand
    sessions = _by(ref["game_sessions"], "session_id")
    # gs5 is in the future, gs6 has an invalid MAC, gs8 is on Kolkata's 7th.
    assert set(sessions) == {"gs1", "gs2", "gs3", "gs4", "gs7", "gs9", "gs10", "gs11", "gs12", "gs13", "gs14"}
    assert sessions["gs1"] == {  # the respelled repeat of "1+1" is dropped (the first row, right, is kept)
        "session_id": "gs1", "local_date": D9, "mac_address": D3, "kid_id": 12, "agent_id": uuid.UUID(A2),
        "mode_type": "Math", "is_game": True, "started_at": at("2026-03-09 10:00"), "ended_at": at("2026-03-09 10:05"),
        "status": "completed", "completion_status": "completed", "ended_at_effective": at("2026-03-09 10:05"),
        "duration_seconds": 300.0, "attempts": 3, "correct": 2, "accuracy": 2 / 3, "interaction_count": 4,
        "stored_duration_seconds": 298, "duration_disagrees": True}
    s = sessions["gs2"]
    assert (s["status"], s["ended_at_effective"], s["duration_seconds"], s["accuracy"]) == ("abandoned", at("2026-03-10 09:02"), 120.0, 0.5)
    assert (s["completion_status"], s["stored_duration_seconds"], s["duration_disagrees"]) == ("in_progress", None, False)
    assert tuple(sessions["gs3"][c] for c in ("status", "attempts", "duration_seconds", "ended_at_effective")) == ("open", 1, None, None)
    assert tuple(sessions["gs4"][c] for c in ("status", "is_game", "attempts", "accuracy")) == ("open", True, 0, None)
    s = sessions["gs7"]  # stored 601 s against 600: not more than 1 s apart
    assert (s["local_date"], s["kid_id"], s["attempts"], s["correct"], s["duration_seconds"], s["duration_disagrees"]) == (
        D8, 11, 22, 11, 600.0, False)
    # Music is not a game; the attempt naming it has an invalid MAC. New York's 8th: D2's kid's zone is blank.
    s = sessions["gs9"]
    assert (s["local_date"], s["kid_id"], s["mode_type"], s["is_game"], s["attempts"], s["duration_seconds"]) == (
        D8, 15, "Music", False, 0, 2400.0)
    # A conversation with attempts is a game. Its kid is the later registration's (14, not 13), its local day
    # Paris's (the zone trimmed).
    s = sessions["gs10"]
    assert (s["local_date"], s["kid_id"], s["is_game"], s["attempts"], s["correct"], s["accuracy"], s["duration_seconds"]) == (
        D10, 14, True, 2, 1, 0.5, 1200.0)
    assert (s["stored_duration_seconds"], s["duration_disagrees"], s["agent_id"]) == (None, False, None)
    s = sessions["gs11"]  # a story whose only attempt is still to come is a game already, with no attempts yet
    assert (s["is_game"], s["attempts"], s["accuracy"], s["duration_seconds"]) == (True, 0, None, 600.0)
    assert (sessions["gs12"]["local_date"], sessions["gs12"]["attempts"], sessions["gs12"]["correct"]) == (D9, 2, 1)
    assert sessions["gs13"]["kid_id"] == 99  # the device's kid, profile or not (of D6's two rows, the greater id)
    s = sessions["gs14"]  # open: no duration yet
    assert (s["mac_address"], s["status"], s["is_game"], s["kid_id"], s["duration_seconds"], s["ended_at_effective"]) == (
        D5, "open", True, None, None, None)

    daily = _by(ref["game_daily"], "local_date", "mac_address")
    row = lambda day, mac, n, done, attempts, correct, accuracy, seconds: {  # noqa: E731
        "local_date": day, "mac_address": mac, "sessions": n, "completed_sessions": done, "attempts": attempts,
        "correct": correct, "accuracy": accuracy, "total_duration_seconds": seconds}
    assert daily == {
        (D8, D1): row(D8, D1, 1, 1, 22, 11, 0.5, 600.0),
        (D9, D1): row(D9, D1, 1, 1, 2, 1, 0.5, 180.0),
        (D9, D3): row(D9, D3, 1, 1, 3, 2, 2 / 3, 300.0),
        (D10, D3): row(D10, D3, 3, 0, 3, 2, 2 / 3, 120.0),  # open sessions count 0 seconds
        (D10, D4): row(D10, D4, 2, 2, 2, 1, 0.5, 1800.0),
        (D10, D6): row(D10, D6, 1, 1, 1, 1, 1.0, 120.0),
        (D10, D5): row(D10, D5, 1, 0, 0, 0, None, None),  # its only game is open: no duration to sum (null, not 0)
    }  # (no (D8, D2): gs9 is not a game)


def test_by_hand_learning_progress(by_hand):
    _, ref = by_hand
    learning = _by(ref["learning_progress"], "as_of_date", "kid_id", "subject", "topic")
    early = learning[(D8, 11, "math_tutor", "addition")]
    # gs7 only: 22 attempts, 11 right. The latest 20 drop numbers 1 and 2 (2 and 3 share a time: the tie goes by
    # attempt_number, though 3 has the smaller id), holding 10 right: exactly 0.5 is practicing.
    assert early == {"as_of_date": D8, "kid_id": 11, "subject": "math_tutor", "topic": "addition", "attempts": 22,
                     "correct": 11, "accuracy": 0.5, "recent_accuracy": 0.5, "mastery": "practicing",
                     "last_practiced_at": at("2026-03-07 20:03:40")}
    # + gs12's two on the 9th: the latest 20 drop four, the second of the two number-4 attempts (larger id, wrong)
    # staying in: 9 right of 20.
    for day in (D9, D10):
        late = learning[(day, 11, "math_tutor", "addition")]
        assert (late["attempts"], late["correct"], late["accuracy"], late["recent_accuracy"], late["mastery"]) == (
            24, 12, 0.5, 9 / 20, "struggling")
        assert late["last_practiced_at"] == at("2026-03-09 12:02")
    riddle = learning[(D8, 11, "riddle_solver", "general")]  # no question_type; practised on the 7th, by answered_at
    assert (riddle["attempts"], riddle["mastery"], riddle["last_practiced_at"]) == (1, "needs_data", at("2026-03-07 10:01"))
    # gs1 ran on D3, whose kid is 12 (sessions carry no kid).
    assert (D8, 12, "math_tutor", "addition") not in learning
    plus = learning[(D10, 12, "math_tutor", "addition")]
    assert (plus["attempts"], plus["correct"], plus["mastery"], plus["last_practiced_at"]) == (3, 2, "needs_data", at("2026-03-09 10:03"))
    # D4's kid is its later registration's, 14 (not 13); the repeat dropped; created_at for the last.
    assert learning[(D10, 14, "riddle_solver", "general")] == {
        "as_of_date": D10, "kid_id": 14, "subject": "riddle_solver", "topic": "general", "attempts": 2, "correct": 1,
        "accuracy": 0.5, "recent_accuracy": 0.5, "mastery": "needs_data", "last_practiced_at": at("2026-03-10 08:10")}
    assert {k[1:] for k in learning if k[0] == D10} == {
        (11, "math_tutor", "addition"), (11, "riddle_solver", "general"), (12, "math_tutor", "addition"),
        (12, "riddle_solver", "logic"), (12, "word_ladder", "rhyme"), (14, "riddle_solver", "general"),
        (99, "math_tutor", "subtraction")}  # D2 (no valid attempt) and ...05 (no device) are left out


def test_by_hand_device_progress(by_hand):
    _, ref = by_hand
    progress = _by(ref["device_progress"], "as_of_date", "mac_address")
    p = progress[(D8, D1)]  # gs8 (the 7th) and gs7
    assert (p["total_active_days"], p["user_turns"], p["game_sessions"], p["attempts"], p["correct"], p["accuracy"]) == (
        2, 1, 2, 23, 12, 12 / 23)
    assert p["last_active_at"] == at("2026-03-08 18:20")
    p = progress[(D10, D1)]
    assert (p["total_active_days"], p["user_turns"], p["game_sessions"], p["attempts"], p["correct"]) == (3, 2, 3, 25, 13)
    assert p["listen_seconds"] is None  # no complete or pause event: nothing measured (null, not 0)
    assert p["last_active_at"] == at("2026-03-09 12:02")
    p = progress[(D8, D2)]  # the evening of the 7th counts for every D; the pause is New York's 8th
    assert (p["total_active_days"], p["user_turns"], p["game_sessions"], p["stories_completed"], p["listen_seconds"]) == (
        2, 1, 0, 1, 600 + 45)
    assert progress[(D10, D2)] == {
        "as_of_date": D10, "mac_address": D2, "total_active_days": 3, "user_turns": 1, "game_sessions": 0, "attempts": 0,
        "correct": 0, "accuracy": None, "stories_completed": 1, "songs_completed": 1, "listen_seconds": 600 + 45 + 180,
        "rfid_scans": 1, "last_active_at": at("2026-03-10 03:30")}
    p = progress[(D10, D3)]
    assert (p["game_sessions"], p["attempts"], p["correct"], p["accuracy"], p["rfid_scans"], p["total_active_days"]) == (
        4, 6, 4, 4 / 6, 1, 2)
    assert (D8, D3) not in progress and progress[(D9, D3)]["game_sessions"] == 1
    p = progress[(D10, D4)]
    assert (p["user_turns"], p["game_sessions"], p["attempts"], p["correct"], p["last_active_at"]) == (
        2, 2, 2, 1, at("2026-03-10 12:04"))
    assert (D9, D4) not in progress
    p = progress[(D10, D5)]  # the padded scan is D5's; gs14 (open) is a game all the same
    assert (p["total_active_days"], p["rfid_scans"], p["game_sessions"], p["attempts"], p["listen_seconds"]) == (1, 1, 1, 0, None)


def test_by_hand_tokens_fleet_and_cognova(by_hand):
    _, ref = by_hand
    tokens = _by(ref["token_usage_daily"], "usage_date", "mac_address")
    t1 = tokens[(D9, D1)]
    assert (t1["input_tokens"], t1["output_tokens"], t1["total_tokens"], t1["llm_model"], t1["owner_user_id"]) == (
        1010, 505, 1515, "gpt-4o-mini", 1)
    # Each row priced and rounded once: (1000 x 0.15 + 500 x 0.6) / 1e6 + (10 x 0.15 + 5 x 0.6) / 1e6.
    assert t1["avg_ttft_seconds"] == pytest.approx(0.9) and t1["est_cost_usd"] == Decimal("0.00045450")
    assert t1["session_duration_seconds"] == Decimal("201.000") and t1["price_sheet_version"] == "test"
    # A model the sheet lacks pays the default: 1e6 x 0.125 + 1e6 x 1.5.
    assert tokens[(D10, D3)]["llm_model"] == "default" and tokens[(D10, D3)]["est_cost_usd"] == Decimal("1.62500000")
    assert tokens[(D9, D2)]["avg_ttft_seconds"] is None and tokens[(D10, D5)]["owner_user_id"] is None
    assert tokens[(D9, D2)]["est_cost_usd"] == Decimal("0.00008750") and tokens[(D10, D5)]["est_cost_usd"] == Decimal("0.00001625")
    # D2 on the 10th: a row with no total (201 in, 100 out: 0.000175125, half away from zero 0.00017513) and a
    # padded one with no output (1 in: 0.000000125, so 0.00000013), each rounded once: 0.00017526, where rounding
    # the day's 202 and 100 tokens would give 0.00017525 (and half to even 0.00017524 per row).
    t2 = tokens[(D10, D2)]
    assert (t2["input_tokens"], t2["output_tokens"], t2["total_tokens"], t2["message_count"], t2["avg_ttft_seconds"]) == (
        202, 100, 1, 4, None)
    assert t2["est_cost_usd"] == Decimal("0.00017526") and t2["llm_model"] == "default"
    # D4's later registration: its owner (3) and its agent's model (40 x 0.15 + 20 x 0.6).
    t4 = tokens[(D10, D4)]
    assert (t4["owner_user_id"], t4["llm_model"], t4["est_cost_usd"]) == (3, "gpt-4o-mini", Decimal("0.00001800"))
    # D6 reported no tokens at all: every token sum and the cost are null; the messages still count.
    t6 = tokens[(D10, D6)]
    assert (t6["input_tokens"], t6["output_tokens"], t6["total_tokens"], t6["est_cost_usd"], t6["message_count"]) == (
        None, None, None, None, 1)
    assert all(isinstance(t["est_cost_usd"], Decimal) for t in tokens.values() if t["est_cost_usd"] is not None)
    assert not any(m == "bad" or d > D10 for d, m in tokens)
    monthly = _by(ref["token_usage_monthly"], "month", "owner_user_id")
    assert set(monthly) == {(dt.date(2026, 2, 1), 1), (dt.date(2026, 3, 1), 1), (dt.date(2026, 3, 1), None),
                            (dt.date(2026, 3, 1), 3)}
    march = monthly[(dt.date(2026, 3, 1), 1)]
    assert (march["devices"], march["total_tokens"], march["message_count"]) == (3, 1515 + 3100 + 150 + 1 + 2_000_000, 55)
    assert march["est_cost_usd"] == Decimal("0.00045450") + Decimal("0.00090000") + Decimal("0.00008750") \
        + Decimal("0.00017526") + Decimal("1.62500000")
    assert monthly[(dt.date(2026, 2, 1), 1)]["est_cost_usd"] == Decimal("0.00007500")  # 100 x 0.15 + 100 x 0.6
    assert (monthly[(dt.date(2026, 3, 1), None)]["devices"], monthly[(dt.date(2026, 3, 1), 3)]["devices"]) == (2, 1)

    fleet = _by(ref["fleet_daily"], "day")
    assert [fleet[d]["active_devices"] for d in (D8, D9, D10)] == [2, 4, 5]
    assert (fleet[D8]["new_devices"], fleet[D8]["new_users"], fleet[D8]["user_turns"], fleet[D8]["stories_completed"]) == (1, 1, 3, 1)
    # The 9th: D4's second registration is the same device (new in February) and the five-octet MAC no device.
    assert (fleet[D9]["new_devices"], fleet[D10]["new_devices"]) == (0, 0)
    # Games by the UTC day they started: gs1 and gs12; gs6 (invalid MAC) and gs9 (music) are not counted.
    assert (fleet[D9]["game_sessions"], fleet[D9]["attempts"], fleet[D9]["accuracy"], fleet[D9]["songs_completed"],
            fleet[D9]["total_tokens"]) == (2, 5, 3 / 5, 1, 1665)
    assert fleet[D9]["est_cost_usd"] == Decimal("0.00054200")
    # The 10th: D2's total is its padded row's 1 (the other reported none), D4's 60, D6's nothing.
    assert (fleet[D10]["game_sessions"], fleet[D10]["attempts"], fleet[D10]["accuracy"], fleet[D10]["total_tokens"]) == (
        7, 6, 4 / 6, 3100 + 2_000_000 + 20 + 1 + 60)
    assert fleet[D10]["est_cost_usd"] == Decimal("1.62610951")
    assert fleet[D10]["p50_ttft_seconds"] == pytest.approx(1.0) and fleet[D10]["p95_ttft_seconds"] == pytest.approx(1.18)
    assert fleet[D8]["avg_ttft_seconds"] is None and fleet[D8]["accuracy"] is None and fleet[D8]["game_sessions"] == 0
    # The 8th: nobody reported tokens, so the measured sums are null, not 0.
    assert (fleet[D8]["total_tokens"], fleet[D8]["est_cost_usd"]) == (None, None)

    runs = _by(ref["cognova_agent_runs_daily"], "day", "agent_id")
    r10 = runs[(D10, uuid.UUID(X1))]
    assert (r10["runs"], r10["success"], r10["error"], r10["running"], r10["stale"], r10["success_rate"]) == (4, 1, 1, 1, 1, 0.5)
    assert (r10["p50_duration_ms"], r10["p95_duration_ms"], r10["cost_usd"], r10["input_tokens"]) == (
        2000.0, 2900.0, Decimal("0.75000000"), 150)
    r9 = runs[(D9, uuid.UUID(X1))]
    assert (r9["runs"], r9["cancelled"], r9["success_rate"], r9["p95_duration_ms"], r9["agent_name"]) == (2, 1, 0.5, 2000.0, "Nightly digest")
    assert r9["cost_usd"] == Decimal("0.12500000")  # the cancelled run reported no cost
    costs = _by(ref["cognova_cost_daily"], "day", "source")
    assert set(costs) == {(D9, "chat"), (D10, "agent")}  # memory extraction at 12:30 is in the future
    assert (costs[(D9, "chat")]["operations"], costs[(D9, "chat")]["total_tokens"], costs[(D9, "chat")]["duration_ms"]) == (2, 180, 500)
    # 0.01 and 0.02 as reals are 0.00999999977... and 0.01999999955...: each rounds to its cent, the sum exact
    # (as floats they would add up to 0.0299999993...).
    assert costs[(D9, "chat")]["cost_usd"] == Decimal("0.03000000") and costs[(D10, "agent")]["cost_usd"] == Decimal("0.50000000")
    activity = _by(ref["cognova_activity_daily"], "day")
    assert activity[D9] == {"day": D9, "conversations_started": 1, "messages": 2, "chat_cost_usd": Decimal("0.30000001"),
                            "tasks_created": 1, "tasks_completed": 0, "reminders_due": 1, "reminders_notified": 1,
                            "hook_events": 1, "blocked_hook_events": 1}
    assert (activity[D10]["tasks_completed"], activity[D10]["reminders_due"], activity[D10]["reminders_notified"]) == (1, 1, 0)
    # The 10th has a message but none reported a cost; the 8th has none: chat cost null both days, counts 0 or more.
    assert (activity[D10]["messages"], activity[D10]["chat_cost_usd"]) == (1, None)
    assert (activity[D8]["messages"], activity[D8]["chat_cost_usd"], activity[D8]["hook_events"]) == (0, None, 1)


def _drift(mac: str, kid: int | None, compared: str, app: tuple, exact: tuple, drift: tuple, last: tuple, max_drift: int,
           drifting: bool) -> dict:
    """An app_counter_drift row: (games, correct, wrong, current, longest) for the app, the warehouse and the drift;
    last = (app, warehouse, seconds). Every device here is on its 10th at the moment compared."""
    row = {"mac_address": mac, "kid_id": kid, "compared_at": at(compared), "as_of_date": D10}
    for i, counter in enumerate(("games_played", "correct_answers", "wrong_answers", "current_streak", "longest_streak")):
        row |= {f"app_{counter}": app[i], f"warehouse_{counter}": exact[i], f"{counter}_drift": drift[i]}
    return row | {"app_last_activity_at": last[0], "warehouse_last_activity_at": last[1],
                  "last_activity_drift_seconds": last[2], "max_count_drift": max_drift, "drifting": drifting}


def test_by_hand_app_counter_drift(by_hand):
    _, ref = by_hand
    drift = _by(ref["app_counter_drift"], "mac_address")
    assert list(drift[D1]) == list(mart("app_counter_drift").columns)
    assert drift == {
        # The newer of D1's two rows; its wrong answers are null (no drift); last activity 0.5 s late is no drift.
        D1: _drift(D1, 11, "2026-03-10 11:00", (3, 13, None, 3, 3), (3, 13, 12, 3, 3), (0, 0, None, 0, 0),
                   (at("2026-03-09 12:02:00.5"), at("2026-03-09 12:02"), 0.5), 0, False),
        # The app counted the music session as a game and lost the streak (New York's 7th to 9th, kept on the 10th).
        D2: _drift(D2, None, "2026-03-10 10:00", (1, 0, 0, 0, 3), (0, 0, 0, 3, 3), (1, 0, 0, -3, 0),
                   (at("2026-03-10 03:30"), at("2026-03-10 03:30"), 0.0), 3, True),
        # Compared at its 10:00 write (UTC: its kid's zone is unknown): gs1 and gs2 (gs3 and gs4 came later), 5
        # attempts with 3 correct, the 9th and 10th active; exact then, so no drift.
        D3: _drift(D3, 12, "2026-03-10 10:00", (2, 3, 2, 2, 2), (2, 3, 2, 2, 2), (0, 0, 0, 0, 0),
                   (at("2026-03-10 09:02"), at("2026-03-10 09:02"), 0.0), 0, False),
        # Two games: gs10 by its attempts, gs11 by an attempt still to come; the unknown answer is wrong.
        D4: _drift(D4, 13, "2026-03-10 12:00", (2, 1, 1, 1, 1), (2, 1, 1, 1, 1), (0, 0, 0, 0, 0),
                   (at("2026-03-10 12:04:02"), at("2026-03-10 12:04"), 2.0), 0, True),
        "aa:bb:cc:00:00:05": _drift("aa:bb:cc:00:00:05", None, "2026-03-10 11:00", (0, 0, 0, 1, 1), (0, 0, 0, 1, 1), (0, 0, 0, 0, 0),
                                    (at("2026-03-10 00:30"), at("2026-03-10 00:30"), 0.0), 0, False),
        # Counters for a device the warehouse never saw: the games drift, the last activity cannot be compared.
        NOBODY: _drift(NOBODY, None, "2026-03-10 11:00", (2, 0, 0, 0, 0), (0, 0, 0, 0, 0), (2, 0, 0, 0, 0),
                       (at("2026-03-01 00:00"), None, None), 2, True),
    }  # (the row with an invalid MAC is left out; D6 has no app row)


def test_by_hand_quality_counts(by_hand):
    sources, _ = by_hand
    assert quality_counts(sources, SMALL_AS_OF) == {
        # A chat turn, a session, two attempts, a token row and ai_device's five-octet row (not the padded scan nor
        # token row, which normalise).
        "mac_unnormalisable": 6,
        "timezone_unknown": 1,  # Mars; not '' nor '   ' (unset), nor ' Europe/Paris\t' (trimmed)
        "future_timestamps": 6,  # a chat turn, a scan, gs5 and three attempts (one by attempt_time 13:00)
        "duplicate_events": 5,  # a chat turn, a playback event, a scan (respelled) and two attempts
        "token_totals_mismatch": 1,  # D1 on the 10th; not a null total, nor 1 = 1 + null
        "session_duration_disagree": 2,  # gs1 (2 s) and gs6 (an invalid MAC still counts); not gs7 (1 s), gs8 (0.4 s)
        "app_counter_drift": 3,  # D2, D4 and the device the warehouse never saw
    }


def test_by_hand_published_rows(by_hand):
    _, ref = by_hand
    published = published_rows(ref, D10)
    assert {r["mac_address"] for r in published["device_streaks"]} == {D1, D2, D3, D4, "aa:bb:cc:00:00:05", D6}
    assert {r["mac_address"] for r in published["device_progress"]} == {D1, D2, D3, D4, "aa:bb:cc:00:00:05", D6}
    # Every kid, the one without a kid_profile row (99) included; D4's is its later registration's (14).
    assert {r["kid_id"] for r in published["learning_progress"]} == {11, 12, 14, 99}
    for table, rows in published.items():
        assert all(r["as_of_date"] == D10 and list(r) == list(mart(table).columns) for r in rows), table


# -- the warehouse on the hand-made rows --------------------------------------------------------------------


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_small_mart_matches(small, name):
    m = mart(name)
    assert_same_rows(f"marts.{name}", small.expected[name], small.actual[name], m.key, list(m.columns))


@pytest.mark.parametrize("table", list(PUBLISHED))
def test_small_publish_matches(small_published, table):
    expected = published_rows(small_published.run.expected, small_published.run.last_day)[table]
    assert_same_rows(f"warehouse.{table}", expected, small_published.tables[table], PUBLISHED[table],
                     list(mart(table).columns))


def test_small_run_leaves_the_apps_tables_unchanged(small_published):
    assert all(small_published.run.app_before[t] for t in APP_TABLES)  # each holds rows: the test proves something
    assert small_published.app_after == small_published.run.app_before


def test_small_quality_counts_match(small):
    with warehouse.connect(small.path) as con:
        got = rollups.quality_counts(con, as_of_time=SMALL_AS_OF, cheeko_url=small.cheeko)
    assert {c: got.get(c) for c in CHECKS} == quality_counts(small.sources, SMALL_AS_OF)


@pytest.fixture(scope="module")
def small_range(small_db, backend, tmp_path_factory) -> Run:
    """The hand-made rows, built for the 8th to the 10th only, into an empty warehouse."""
    return run_warehouse(small_db.cheeko, small_db.cognova, backend.new(tmp_path_factory.mktemp("small_range"), "warehouse"),
                         as_of=SMALL_AS_OF, first_day=SMALL_FIRST, last_day=SMALL_LAST)


@pytest.mark.parametrize("name", [m.name for m in MARTS])
def test_a_fresh_build_of_a_range_counts_the_days_before_it(small_range, name):
    """metrics.md: as-of marts count everything on or before D (A is every active local day on or before D),
    so a backfill of the 8th to the 10th into an empty warehouse still counts the 7th: D2's New York evening
    (a play and a chat turn, 04:30 and 04:40 UTC on the 8th) and D1's game in Kolkata (gs8)."""
    m = mart(name)
    assert_same_rows(f"marts.{name}", small_range.expected[name], small_range.actual[name], m.key, list(m.columns))
