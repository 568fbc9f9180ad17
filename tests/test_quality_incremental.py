"""The data-quality checks counted incrementally (``pipelines.quality``) against a full rescan.

A messy generated fleet is extracted into a fresh warehouse and reported on
once (which counts everything); then the source changes the way a day of
the app does (a day appended, a kid's zone set to a name that is no zone) and
only what changed is extracted again. After each step the incremental report
must equal ``rescan`` (the whole-history queries the checks were before they
were kept: each counted, then sampled, over all of history) and a report on
an empty store: same counts, same samples. Attempts without ``attempt_time``
whose natural key spans a loaded window and a day that was not reloaded are
planted at the source, on both sides of the window's edge, and a session
starting exactly at a UTC midnight meets a cutoff at that midnight. On both backends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
import pytest

from pipelines import generator, postgres, quality, rollups, warehouse
from pipelines.quality import EVENT_TIMES, MAC_TABLES, NATURAL_KEYS, QUALITY_CHECKS
from pipelines.source_tables import source_table, source_tables
from pipelines.warehouse import Location
from test_extract import extract_tables

pytestmark = pytest.mark.both_backends

UTC = dt.UTC
END = dt.date(2026, 3, 31)
NEXT = END + dt.timedelta(days=1)  # the appended day
AS_OF = dt.datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # mid-evening in the Americas: cuts the last local day
LATER = dt.datetime(2026, 4, 2, 2, 0, tzinfo=UTC)  # after the appended day
# Everything up to END: the appended day (and the rows the messy generator post-dates a year) are not loaded yet.
FIRST_WINDOW = (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime.combine(NEXT, dt.time(0), UTC))
# A daily run's window: the new day, and the day before it again (late data).
DAILY_WINDOW = (dt.datetime.combine(END, dt.time(0), UTC), dt.datetime.combine(NEXT + dt.timedelta(days=1), dt.time(0), UTC))
CHEEKO_TABLES = [t for t in source_tables() if t.database == "cheeko"]
EDGE_QUESTION = "What comes after the window's edge?"
MIDNIGHT = dt.datetime.combine(END - dt.timedelta(days=1), dt.time(0), UTC)  # a session starts on the dot
DIMENSIONS = {"ai_device", "kid_profile", "parent_profile"}


def rescan(con, *, as_of_time: dt.datetime, cheeko_url: str | None = None, samples: int = 5) -> dict:
    """Each check over the whole history, the way the checks were counted before they were kept: its count and its
    first ``samples`` keys in sort order, each read from all of it."""
    union = " UNION ALL ".join
    queries = {
        "mac_unnormalisable": union(f"SELECT '{t}:' || coalesce(CAST(mac_address AS VARCHAR), 'NULL') AS sample "
                                    f"FROM raw_cheeko.{t} WHERE normal_mac(mac_address) IS NULL" for t in MAC_TABLES),
        "timezone_unknown": union(f"SELECT '{t}:' || id || ':' || timezone AS sample FROM raw_cheeko.{t} "
                                  f"WHERE set_zone(timezone) NOT IN (SELECT name FROM pg_timezone_names())"
                                  for t in ("kid_profile", "parent_profile")),
        "duplicate_events": union(f"SELECT '{t}:' || CAST(id AS VARCHAR) AS sample FROM raw_cheeko.{t} "
                                  f"QUALIFY row_number() OVER (PARTITION BY {nk} ORDER BY id) > 1"
                                  for t, nk in NATURAL_KEYS.items()),
        "token_totals_mismatch": "SELECT 'device_token_usage:' || id AS sample FROM raw_cheeko.device_token_usage "
                                 "WHERE total_tokens <> coalesce(input_tokens, 0) + coalesce(output_tokens, 0)",
        "session_duration_disagree": "SELECT 'analytics_game_sessions:' || session_id AS sample "
                                     "FROM raw_cheeko.analytics_game_sessions WHERE started_at <= $cutoff AND "
                                     "abs(duration_seconds - date_diff('microsecond', started_at, ended_at) / 1e6) > 1",
        "app_counter_drift": "SELECT 'analytics_user_progress:' || mac_address AS sample FROM ("
                             + (rollups.SQL_DIR / "app_counter_drift.sql").read_text() + ") WHERE drifting",
    }
    source = "raw_cheeko"
    if cheeko_url:
        warehouse.attach_source(con, "rescan_source", cheeko_url)
        source = "rescan_source.public"
    queries["future_timestamps"] = union(f"SELECT '{t}:' || CAST(id AS VARCHAR) AS sample FROM {source}.{t} "
                                         f"WHERE {c} > $cutoff" for t, c in EVENT_TIMES.items())
    rollups.prepare(con)
    values = {"as_of_time": as_of_time, "cutoff": as_of_time + rollups.FUTURE_GRACE, "n": samples}
    bound = lambda sql: {k: v for k, v in values.items() if f"${k}" in sql}  # noqa: E731
    out = {}
    for name in QUALITY_CHECKS:
        count_sql = f"SELECT count(*) FROM ({queries[name]})"
        sample_sql = f"SELECT sample FROM ({queries[name]}) ORDER BY sample LIMIT $n"
        out[name] = (con.execute(count_sql, bound(count_sql)).fetchone()[0],
                     [row[0] for row in con.execute(sample_sql, bound(sample_sql)).fetchall()])
    return out


def from_scratch(con, **kwargs) -> dict:
    """``quality.report`` on an empty store: it counts everything again."""
    con.execute(f"DROP TABLE IF EXISTS {quality.STORE}; DROP TABLE IF EXISTS {quality.STATE}")
    return quality.report(con, **kwargs)


def refreshed(con) -> dict[str, quality.Recount]:
    """What bringing the store up to date counts again (as :func:`quality.report` does first)."""
    rollups.prepare(con)
    return quality.refresh(con)


def assert_same(con, *, as_of_time: dt.datetime, cheeko_url: str | None) -> dict:
    """The incremental report equals a full rescan; returns it."""
    report = quality.report(con, as_of_time=as_of_time, cheeko_url=cheeko_url)
    expected = rescan(con, as_of_time=as_of_time, cheeko_url=cheeko_url)
    assert report == expected
    return report


def insert_attempt(cheeko: str, session_id: str, mac: str, answered_at: dt.datetime) -> int:
    """An attempt with no ``attempt_time`` (its event time falls back to ``answered_at``) at the source; its id."""
    with postgres.connect(cheeko) as conn:
        row = conn.execute("INSERT INTO analytics_game_attempts (session_id, mac_address, game_type, question_text, "
                           "attempt_number, attempt_time, answered_at, created_at) "
                           "VALUES (%s, %s, 'math_tutor', %s, 1, NULL, %s, %s) RETURNING id",
                           (session_id, mac, EDGE_QUESTION, answered_at, answered_at)).fetchone()
        conn.commit()
    return row[0]


def insert_session_at_midnight(cheeko: str, mac: str) -> None:
    """A game session starting exactly at a UTC midnight whose stored duration disagrees with its times."""
    with postgres.connect(cheeko) as conn:
        conn.execute("INSERT INTO analytics_game_sessions (session_id, mac_address, mode_type, started_at, ended_at, "
                     "duration_seconds) VALUES ('edge-midnight', %s, 'Math', %s, %s, 5)",
                     (mac, MIDNIGHT, MIDNIGHT + dt.timedelta(minutes=10)))
        conn.commit()


def duplicates(con) -> set[int]:
    """Ids of the attempts the natural key makes duplicates, over the whole raw table."""
    return {row[0] for row in con.execute(
        f"SELECT id FROM raw_cheeko.analytics_game_attempts "
        f"QUALIFY row_number() OVER (PARTITION BY {NATURAL_KEYS['analytics_game_attempts']} ORDER BY id) > 1").fetchall()}


@dataclass
class Fleet:
    cheeko: str
    urls: dict[str, str]
    path: Location
    mac: str
    edge: dict[str, int]  # the planted attempts by role


@pytest.fixture(scope="module")
def fleet(make_databases, backend, tmp_path_factory) -> Fleet:
    """A messy fleet to END, with attempts planted on both sides of the next day's edge, extracted up to END and
    reported on once (the first report counts everything)."""
    pair = make_databases()
    tmp = tmp_path_factory.mktemp("quality")
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=20, days=6, seed=41, end=END, messy=True),
                       tmp / "gen", progress=lambda _: None)
    with postgres.connect(pair.cheeko) as conn:
        mac = conn.execute("SELECT mac_address FROM ai_device ORDER BY id LIMIT 1").fetchone()[0]
    at = lambda day, hour: dt.datetime.combine(day, dt.time(hour), UTC)  # noqa: E731
    edge = {
        # Loaded now, alone; a later row in the next day's window makes it the first of a group.
        "first_loaded": insert_attempt(pair.cheeko, "edge-session-1", mac, at(END - dt.timedelta(days=2), 9)),
        # The next day's row has the smaller id: once loaded, the row loaded now (in a day not reloaded) repeats it.
        "first_next_day": insert_attempt(pair.cheeko, "edge-session-2", mac, at(NEXT, 10)),
        "repeat_loaded": insert_attempt(pair.cheeko, "edge-session-2", mac, at(END - dt.timedelta(days=3), 11)),
    }
    insert_session_at_midnight(pair.cheeko, mac)
    urls = {"cheeko": pair.cheeko, "cognova": pair.cognova}
    path = backend.new(tmp, "warehouse")
    extract_tables(path, urls, source_tables(), window=FIRST_WINDOW)
    with warehouse.connect(path) as con:
        quality.report(con, as_of_time=AS_OF, cheeko_url=pair.cheeko)
    return Fleet(pair.cheeko, urls, path, mac, edge)


def test_each_natural_key_holds_the_column_its_rows_are_kept_by():
    """Why a day (or the rows without one) holds whole groups of repeats, so a day is judged alone; and why the
    cutoff's day can be read live."""
    for part in quality.PARTS:
        declared = source_table("cheeko", part.table)
        column = declared.event_time[0] if declared.partitioned else None
        if part.key:
            assert column in [c.strip() for c in part.key.split(",")], part
        if part.until_cutoff:
            assert part.key is None and column is not None, part


@pytest.mark.parametrize("as_of_time", [
    AS_OF,
    dt.datetime(2026, 3, 29, 23, 57, tzinfo=UTC),  # the cutoff (+5 min) falls on the next UTC day
    MIDNIGHT - dt.timedelta(minutes=5),  # the cutoff is that midnight: the session starting then counts
    dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC),  # a backfill: days of history after the cutoff
    dt.datetime(2027, 6, 1, tzinfo=UTC),  # after everything, the post-dated rows included
])
@pytest.mark.parametrize("at_source", [True, False])
def test_the_report_equals_a_full_rescan_at_any_cutoff(fleet, as_of_time, at_source):
    with warehouse.connect(fleet.path) as con:
        assert_same(con, as_of_time=as_of_time, cheeko_url=fleet.cheeko if at_source else None)


def test_the_fleet_reaches_every_check(fleet):
    """The comparisons mean something: every check counts rows, and those kept by day more than they show (so
    the first samples are picked across days)."""
    with warehouse.connect(fleet.path) as con:
        report = quality.report(con, as_of_time=AS_OF, cheeko_url=fleet.cheeko)
        assert all(count > 0 for count, _ in report.values()), report
        assert all(report[check][0] > 5 for check in ("mac_unnormalisable", "duplicate_events", "future_timestamps",
                                                       "session_duration_disagree")), report


def test_an_unchanged_warehouse_counts_nothing_again(fleet):
    with warehouse.connect(fleet.path) as con:
        quality.report(con, as_of_time=AS_OF)
        assert refreshed(con) == {}


def test_an_appended_day_counts_only_its_days_and_duplicates_across_the_edge(fleet, tmp_path):
    generator.append(fleet.cheeko, fleet.urls["cognova"], 1, tmp_path / "gen", progress=lambda _: None)
    # A repeat of the first planted attempt, on the new day: its group spans the window's edge.
    fleet.edge["repeat_next_day"] = insert_attempt(fleet.cheeko, "edge-session-1", fleet.mac,
                                                   dt.datetime.combine(NEXT, dt.time(8), UTC))
    extract_tables(fleet.path, fleet.urls, CHEEKO_TABLES, window=DAILY_WINDOW)
    with warehouse.connect(fleet.path) as con:
        done = refreshed(con)
        # Daily tables: the window's two days (a date column's, a day either side too); dimensions whole.
        assert {name for name, todo in done.items() if todo.whole} == DIMENSIONS
        widened = {END - dt.timedelta(days=1), END, NEXT, NEXT + dt.timedelta(days=1)}
        assert {name: todo.days for name, todo in done.items() if name not in DIMENSIONS} == {
            name: widened if name == "device_token_usage" else {END, NEXT}
            for name in ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback",
                         "rfid_scan_log", "device_token_usage", "analytics_game_sessions")}
        # The scenario holds: each group spans a reloaded day and one that was not (END - 2, END - 3).
        assert {fleet.edge["repeat_next_day"], fleet.edge["repeat_loaded"]} <= duplicates(con)
        assert fleet.edge["first_loaded"] not in duplicates(con) and fleet.edge["first_next_day"] not in duplicates(con)
        incremental = assert_same(con, as_of_time=LATER, cheeko_url=fleet.cheeko)
        assert_same(con, as_of_time=AS_OF, cheeko_url=None)
        assert from_scratch(con, as_of_time=LATER, cheeko_url=fleet.cheeko) == incremental


@pytest.mark.long_on_lake  # more variants of the incremental count; its equality with a full rescan runs on a lake
def test_a_changed_dimension_row_is_counted_again(fleet):
    with warehouse.connect(fleet.path) as con:
        before = quality.report(con, as_of_time=LATER)["timezone_unknown"][0]
        kid = con.execute("SELECT min(id) FROM raw_cheeko.kid_profile "
                          "WHERE set_zone(timezone) IN (SELECT name FROM pg_timezone_names())").fetchone()[0]
    with postgres.connect(fleet.cheeko) as conn:
        conn.execute("UPDATE kid_profile SET timezone = 'Mars/Olympus_Mons', updated_at = now() WHERE id = %s", (kid,))
        conn.commit()
    extract_tables(fleet.path, fleet.urls, [t for t in CHEEKO_TABLES if t.name == "kid_profile"])
    with warehouse.connect(fleet.path) as con:
        assert set(refreshed(con)) == {"kid_profile"}
        report = assert_same(con, as_of_time=LATER, cheeko_url=fleet.cheeko)
        assert report["timezone_unknown"][0] == before + 1
        assert from_scratch(con, as_of_time=LATER, cheeko_url=fleet.cheeko) == report


@pytest.mark.long_on_lake  # more variants of the incremental count; its equality with a full rescan runs on a lake
def test_rows_changed_outside_the_loads_a_new_definition_or_more_samples_count_again(fleet):
    with warehouse.connect(fleet.path) as con:
        quality.report(con, as_of_time=LATER)
        # A hand edit of the raw layer (no load recorded): the row count no longer adds up.
        con.execute("DELETE FROM raw_cheeko.rfid_scan_log WHERE id = (SELECT min(id) FROM raw_cheeko.rfid_scan_log)")
        done = refreshed(con)
        assert set(done) == {"rfid_scan_log"} and done["rfid_scan_log"].whole
        assert_same(con, as_of_time=LATER, cheeko_url=fleet.cheeko)
        # A changed definition: every table whose fingerprint differs is counted whole.
        con.execute(f"UPDATE {quality.STATE} SET fingerprint = 'an older definition' WHERE table_name = 'ai_agent_chat_history'")
        assert {name: todo.whole for name, todo in refreshed(con).items()} == {"ai_agent_chat_history": True}
        assert_same(con, as_of_time=LATER, cheeko_url=fleet.cheeko)
        # More samples than the store keeps: counted again keeping that many, and equal to a rescan's.
        many = quality.report(con, as_of_time=LATER, samples=40)
        assert many == rescan(con, as_of_time=LATER, samples=40)
        assert max(len(picked) for _, picked in many.values()) > quality.KEPT_SAMPLES
        assert refreshed(con) == {}
