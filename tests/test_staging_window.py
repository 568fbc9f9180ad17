"""Staging rebuilt for a window of event time equals staging rebuilt whole, every row and every column.

A daily run loads the event tables one UTC window at a time (``pipelines.extract``); ``rollups.prepare`` then
rebuilds only the event rows of that window, the dimensions (devices, zone offsets) whole, when that is exact.
Here a generated fleet is extracted and built, the source moves on (a day appended; late, deleted and duplicate
rows planted on both sides of the window's edge; a kid's zone edited; a device registered after its first
events), a daily run's loads replace the window, and the warehouse must equal a copy of it whose staging was
rebuilt whole: every staging table, and every mart built from each. Where the window would not be exact the pass
must be whole, and still right. On both backends.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines import generator, postgres, rollups, warehouse, writes
from pipelines.source_tables import source_tables
from pipelines.warehouse import Lake, Location
from test_extract import extract_tables

pytestmark = pytest.mark.both_backends

UTC = dt.UTC
END = dt.date(2026, 3, 28)  # the appended day is 29 March, when Europe moves its clocks
NEW_DAY = END + dt.timedelta(days=1)
DAYS = 4
FIRST = END - dt.timedelta(days=DAYS - 1)
# A daily run for NEW_DAY refreshes the day before too (assets.partitions.refresh_window).
WINDOW = (dt.datetime.combine(END, dt.time(0), UTC), dt.datetime.combine(NEW_DAY + dt.timedelta(days=1), dt.time(0), UTC))
EDGE = WINDOW[0]
AS_OF = dt.datetime.combine(NEW_DAY + dt.timedelta(days=1), dt.time(12), UTC)
# Wide enough for the messy rows dated a year after the data.
EVERYTHING = (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2028, 1, 1, tzinfo=UTC))


# -- running the warehouse ------------------------------------------------------------------------------------


def source(pair, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the generated Cheeko database (the app moving on); its rows, if any."""
    with writes.transaction(pair.cheeko) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def base_warehouse(pair, folder: Path, options: generator.Options, plant=None, *, where: Location) -> Location:
    """Generate ``options`` into ``pair`` (then ``plant(pair)``), extract everything into the empty warehouse
    ``where`` and build every mart."""
    generator.generate(pair.cheeko, pair.cognova, options, folder / "gen", progress=lambda _: None)
    if plant:
        plant(pair)
    path = where
    extract_tables(path, {"cheeko": pair.cheeko, "cognova": pair.cognova}, source_tables(), window=EVERYTHING)
    with warehouse.connect(path) as con:
        rollups.build(con, as_of_time=AS_OF, first_day=FIRST, last_day=END)
        assert rollups.last_pass(con).kind == "whole"  # the first build
    return path


def daily_run(pair, path: Location, folder: Path, *, append: bool = True) -> rollups.StagingPass:
    """NEW_DAY appended at the source (with ``append``), loaded as its daily run loads it (every table, daily ones
    over WINDOW), and staging brought up to date; what the staging pass did."""
    if append:
        generator.append(pair.cheeko, pair.cognova, 1, folder / "gen", progress=lambda _: None)
    extract_tables(path, {"cheeko": pair.cheeko, "cognova": pair.cognova}, source_tables(), window=WINDOW)
    with warehouse.connect(path) as con:
        assert rollups.prepare(con)
        assert not rollups.prepare(con), "a second call finds staging up to date"
        return rollups.last_pass(con)


def rebuilt_whole(path: Location, backend, folder: Path) -> Location:
    """A copy of the warehouse at ``path`` whose staging is rebuilt from all of history."""
    copy = backend.copy(path, folder, "whole")
    with warehouse.connect(copy) as con:
        rollups.prepare(con, whole=True)
        assert rollups.last_pass(con) == rollups.StagingPass("whole", reason="asked for")
    return copy


def build_every_mart(*paths: Location) -> None:
    for path in paths:
        with warehouse.connect(path) as con:
            rollups.build(con, as_of_time=AS_OF, first_day=FIRST, last_day=NEW_DAY)


def tables(con, schema: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                      "AND schema_name = ? ORDER BY 1", [schema]).fetchall()]


def assert_same(path: Location, other: Location, schema: str) -> None:
    """Every table of ``schema`` holds the same columns and the same rows (as a multiset) in both warehouses."""
    with warehouse.connect(path) as con:
        if isinstance(other, Lake):
            con.execute(other.attach_statement("other", read_only=True))
        else:
            con.execute(f"ATTACH {warehouse.literal(str(other))} AS other (READ_ONLY)")
        names = tables(con, schema)
        assert names and names == [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'other' AND schema_name = ? ORDER BY 1",
            [schema]).fetchall()]
        for name in names:
            here, there = f"{schema}.{name}", f"other.{schema}.{name}"
            assert con.execute(f"DESCRIBE {here}").fetchall() == con.execute(f"DESCRIBE {there}").fetchall(), here
            where = "true"
            if name == "zone_offsets":
                # Its slots run to a little after now(), which moved between the two builds.
                where = f"slot <= (SELECT least((SELECT max(slot) FROM {here}), (SELECT max(slot) FROM {there})))"
            for a, b in ((here, there), (there, here)):
                extra = con.execute(f"SELECT * FROM (SELECT * FROM {a} WHERE {where} EXCEPT ALL "
                                    f"SELECT * FROM {b} WHERE {where}) ORDER BY ALL LIMIT 5").fetchall()
                assert not extra, f"{here}: rows in {a} that {b} lacks, e.g. {extra}"
            assert con.execute(f"SELECT count(*) FROM {here}").fetchone()[0] > 0, f"{here} is empty: nothing compared"


def assert_window_equals_whole(path: Location, backend, folder: Path) -> None:
    whole = rebuilt_whole(path, backend, folder)
    assert_same(path, whole, "staging")
    build_every_mart(path, whole)
    assert_same(path, whole, "marts")


# -- what the app does between two runs ----------------------------------------------------------------------


def a_device(pair, *, before: dt.datetime) -> tuple[str, int]:
    """A device with a kid and with chat turns before ``before``: (its MAC, its kid)."""
    return source(pair, """
        SELECT d.mac_address, d.kid_id FROM ai_device d
        WHERE d.kid_id IS NOT NULL AND EXISTS (SELECT 1 FROM ai_agent_chat_history c
                                               WHERE c.mac_address = d.mac_address AND c.created_at < %s)
        ORDER BY d.mac_address LIMIT 1""", (before,))[0]


def attempt(pair, mac: str, session: str, number: int, answered_at: dt.datetime, question: str = "2 + 2?") -> None:
    """An attempt without attempt_time: its event time is answered_at, and its natural key holds no time."""
    source(pair, "INSERT INTO analytics_game_attempts (session_id, mac_address, game_type, question_text, attempt_number, "
                 "attempt_time, answered_at, created_at) VALUES (%s, %s, 'Math', %s, %s, NULL, %s, %s)",
           (session, mac, question, number, answered_at, answered_at))


def session(pair, mac: str, session_id: str, mode: str, started_at: dt.datetime) -> None:
    source(pair, "INSERT INTO analytics_game_sessions (session_id, mac_address, mode_type, started_at, ended_at, "
                 "duration_seconds) VALUES (%s, %s, %s, %s, %s, 600)",
           (session_id, mac, mode, started_at, started_at + dt.timedelta(minutes=10)))


def chat(pair, mac: str, session_id: str, at: dt.datetime, text: str = "hello") -> None:
    source(pair, "INSERT INTO ai_agent_chat_history (mac_address, session_id, chat_type, content, created_at) "
                 "VALUES (%s, %s, 1, %s, %s)", (mac, session_id, text, at))


def register(pair, mac: str, like: str) -> None:
    """A new ai_device row for ``mac``, with the owner, kid and agent of the device ``like``."""
    source(pair, "INSERT INTO ai_device (user_id, mac_address, agent_id, kid_id, create_date, update_date) "
                 "SELECT user_id, %s, agent_id, kid_id, now(), now() FROM ai_device WHERE mac_address = %s", (mac, like))


def respelled(mac: str) -> str:
    return mac.upper().replace(":", "-")


# -- the tests --------------------------------------------------------------------------------------------------


def test_a_daily_load_rebuilds_its_window_only_and_equals_a_whole_rebuild(make_databases, backend, warehouse_at, tmp_path):
    pair = make_databases()
    path = base_warehouse(pair, tmp_path, generator.Options(devices=15, days=DAYS, seed=21, end=END),
                          where=warehouse_at)
    done = daily_run(pair, path, tmp_path)
    assert done == rollups.StagingPass("window", *WINDOW)
    with warehouse.connect(path) as con:
        assert con.execute("SELECT count(*) FROM staging.qualifying_events WHERE local_date = ?", [NEW_DAY]).fetchone()[0] > 0
    urls = {"cheeko": pair.cheeko, "cognova": pair.cognova}
    extract_tables(path, urls, [t for t in source_tables() if t.database == "cognova"], window=WINDOW)
    with warehouse.connect(path) as con:
        assert not rollups.prepare(con), "staging reads nothing of Cognova"
        assert rollups.last_pass(con) == done
    devices = [t for t in source_tables() if t.key == "cheeko.ai_device"]
    extract_tables(path, urls, devices)
    with warehouse.connect(path) as con:
        assert not rollups.prepare(con), "no transaction touched ai_device: not loaded, nothing to rebuild"
    with postgres.connect(pair.cheeko) as conn:  # a device re-registered: a dimension changed
        conn.execute("UPDATE ai_device SET app_version = app_version WHERE ctid = (SELECT min(ctid) FROM ai_device)")
    extract_tables(path, urls, devices)
    with warehouse.connect(path) as con:
        assert rollups.prepare(con)
        assert rollups.last_pass(con) == rollups.StagingPass("dimensions")
    assert_window_equals_whole(path, backend, tmp_path)


@pytest.mark.long_on_lake  # another fleet; the window and the whole pass are already compared on a lake above
def test_a_messy_fleet_with_duplicates_across_the_windows_edge(make_databases, backend, warehouse_at, tmp_path):
    """Duplicates whose natural key spans the window's edge keep the smallest id whichever side it is on; a
    session started before the window becomes a game when an attempt in the window carries its id; a new
    device (a dimension changed) with rows in the window only keeps the pass windowed. No day is appended: a messy
    append re-registers devices under other spellings, which moves them between families (a whole pass)."""
    pair = make_databases()
    planted = {}

    def before_the_base(pair) -> None:
        mac, _ = a_device(pair, before=EDGE)
        planted["mac"] = mac
        # Kept duplicate outside the window, its twin arrives inside later (s1); kept one inside the window,
        # deleted at the source later, its twin outside takes over (s2). Another attempt in the window each.
        attempt(pair, mac, "s1", 1, EDGE - dt.timedelta(hours=1))
        attempt(pair, mac, "s1", 2, EDGE + dt.timedelta(hours=1))
        attempt(pair, mac, "s2", 1, EDGE + dt.timedelta(hours=2), question="3 + 3?")
        attempt(pair, mac, "s2", 1, EDGE - dt.timedelta(hours=2), question="3 + 3?")
        attempt(pair, mac, "s2", 2, EDGE + dt.timedelta(hours=3))
        session(pair, mac, "s3", "Story", EDGE - dt.timedelta(minutes=30))  # not a game, yet
        # Chat duplicates on both sides of the edge, one spelled differently.
        for at in (EDGE - dt.timedelta(microseconds=1), EDGE):
            chat(pair, mac, "edge", at)
            chat(pair, respelled(mac), "edge", at)

    path = base_warehouse(pair, tmp_path, generator.Options(devices=15, days=DAYS, seed=22, end=END, messy=True),
                          plant=before_the_base, where=warehouse_at)
    mac = planted["mac"]
    attempt(pair, mac, "s1", 1, EDGE + dt.timedelta(hours=4))  # the late twin of s1's first attempt
    source(pair, "DELETE FROM analytics_game_attempts WHERE session_id = 's2' AND answered_at = %s",
           (EDGE + dt.timedelta(hours=2),))
    attempt(pair, mac, "s3", 1, EDGE + dt.timedelta(minutes=5))  # makes s3, started before the window, a game
    chat(pair, respelled(mac), "edge", EDGE + dt.timedelta(hours=5), text="late")
    source(pair, "UPDATE device_token_usage SET input_tokens = input_tokens + 1000, total_tokens = total_tokens + 1000 "
                 "WHERE usage_date = %s", (END,))
    register(pair, "0a:0b:0c:0d:0e:0f", like=mac)
    chat(pair, "0A0B.0C0D.0E0F", "new-device", EDGE + dt.timedelta(hours=6))

    done = daily_run(pair, path, tmp_path, append=False)
    assert done == rollups.StagingPass("window", *WINDOW)
    with warehouse.connect(path) as con:
        kept = con.execute("SELECT session_id, attempt_number, event_at FROM staging.game_attempts "
                           "WHERE session_id IN ('s1', 's2') ORDER BY ALL").fetchall()
        assert kept == [("s1", 1, EDGE - dt.timedelta(hours=1)), ("s1", 2, EDGE + dt.timedelta(hours=1)),
                        ("s2", 1, EDGE - dt.timedelta(hours=2)), ("s2", 2, EDGE + dt.timedelta(hours=3))]
        assert con.execute("SELECT is_game FROM staging.game_sessions WHERE session_id = 's3'").fetchone() == (True,)
        assert con.execute("SELECT count(*) FROM staging.chat_turns WHERE session_id = 'edge'").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM staging.chat_turns WHERE mac_address = '0a:0b:0c:0d:0e:0f'").fetchone()[0] == 1
    assert_window_equals_whole(path, backend, tmp_path)


@pytest.mark.long_on_lake  # three more fleets; the window and the whole pass are already compared on a lake above
@pytest.mark.parametrize("change", ["kid_zone_edited", "device_registered_after_its_events", "attempt_left_its_session"])
def test_what_a_window_cannot_rebuild_rebuilds_whole_and_right(make_databases, backend, warehouse_at, tmp_path, change):
    """A dimension that changed for a device with history outside the window (a kid's zone edited, a device
    registered after its first events), or an attempt that left its session, makes the pass whole."""
    pair = make_databases()
    planted = {}

    def before_the_base(pair) -> None:
        mac, kid = a_device(pair, before=EDGE)
        planted.update(mac=mac, kid=kid)
        chat(pair, "0a:0b:0c:0d:0e:0f", "unregistered", EDGE - dt.timedelta(days=1))
        attempt(pair, mac, "lone", 1, EDGE + dt.timedelta(hours=1))

    path = base_warehouse(pair, tmp_path, generator.Options(devices=12, days=DAYS, seed=23, end=END),
                          plant=before_the_base, where=warehouse_at)
    if change == "kid_zone_edited":
        # UTC+14: no zone the generator gives a family.
        source(pair, "UPDATE kid_profile SET timezone = 'Pacific/Kiritimati', updated_at = now() WHERE id = %s",
               (planted["kid"],))
        why = "device(s) changed in staging.devices"
    elif change == "device_registered_after_its_events":
        register(pair, "0a:0b:0c:0d:0e:0f", like=planted["mac"])
        why = "device(s) changed in staging.devices"
    else:
        source(pair, "DELETE FROM analytics_game_attempts WHERE session_id = 'lone'")
        why = "left their session"

    done = daily_run(pair, path, tmp_path)
    assert done.kind == "whole" and why in done.reason, done
    with warehouse.connect(path) as con:
        # Every row's local date is its device's zone's now, outside the window too.
        wrong = con.execute("SELECT count(*) FROM staging.chat_turns t LEFT JOIN staging.devices d USING (mac_address) "
                            "WHERE t.local_date <> local_date(d.zone, t.event_at)").fetchone()[0]
        assert wrong == 0
    assert_window_equals_whole(path, backend, tmp_path)


def test_marts_build_after_the_marts_their_sql_reads():
    order = rollups.build_order()
    assert order.index("game_sessions") < order.index("game_daily")
    assert order.index("token_usage_daily") < order.index("fleet_daily")
    assert rollups.build_order(["fleet_daily", "game_daily", "token_usage_daily"]) == \
        ["token_usage_daily", "fleet_daily", "game_daily"]
    assert rollups.mart_inputs("game_daily") == ["game_sessions"]
    assert not hasattr(rollups, "MART_INPUTS") and not hasattr(rollups, "RAW_INPUTS")
