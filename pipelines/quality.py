"""The data-quality checks of metrics.md, counted incrementally.

Each check counts rows of the raw layer (future timestamps: of the source, when
given) and names a few of them. Counting the whole history on every call is
slow (duplicates are a window over every event), so each check's count and
its first sample keys are kept in ``_warehouse.quality_counts``, per raw table
and per UTC day of the table's *day column* (the first of its event-time
columns); a dimension table is kept whole. A call counts again only what the
raw layer loaded since (``_warehouse.loads``): the days of each daily window,
that table's rows without a day, and a dimension table that loaded at all. A
first call, a changed definition (a fingerprint of the SQL) or a raw table
whose row count does not add up counts the table again whole.

What depends on the run's as-of time is read live, and is small: future
timestamps (at the source, where the raw layer holds no future days), the
session durations of the cutoff's own UTC day (earlier days come from the
store), and the app's counter drift (``sql/app_counter_drift.sql``).

:func:`report` gives every check's count and samples, equal to a full
rescan; :func:`counts` the counts alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines import macros, postgres
from pipelines.source_tables import source_table
from pipelines.warehouse import META_SCHEMA, RAW_SCHEMAS, literal, quote, rollback

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
RAW = RAW_SCHEMAS["cheeko"]
STORE = f"{META_SCHEMA}.quality_counts"
STATE = f"{META_SCHEMA}.quality_state"
KEPT_SAMPLES = 5  # sample keys kept per check, table and day; a call asking for more counts again with more
LAYOUT = 1  # part of every fingerprint: bump when what the store holds changes meaning

MAC_TABLES = ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log",
              "device_token_usage", "analytics_game_sessions", "ai_device")
# Each event table's event time at the source (marts.RULES["event_times"]).
EVENT_TIMES = {"ai_agent_chat_history": "created_at",
               "analytics_game_attempts": "coalesce(attempt_time, answered_at, created_at)",
               "analytics_media_playback": "created_at", "rfid_scan_log": "created_at",
               "analytics_game_sessions": "started_at"}
NATURAL_KEYS = {"analytics_game_attempts": "session_id, attempt_number, attempt_time, question_text",
                "analytics_media_playback": "normal_mac(mac_address), content_id, event_type, created_at",
                "ai_agent_chat_history": "normal_mac(mac_address), session_id, chat_type, created_at",
                "rfid_scan_log": "rfid_uid, normal_mac(mac_address), created_at"}
QUALITY_CHECKS = ("mac_unnormalisable", "timezone_unknown", "future_timestamps", "duplicate_events",
                  "token_totals_mismatch", "session_duration_disagree", "app_counter_drift")

STORE_DDL = f"""
CREATE TABLE IF NOT EXISTS {STORE} (
    check_name VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    day        DATE,               -- UTC day of the table's day column; NULL: a dimension, or rows without one
    rows       BIGINT NOT NULL,    -- rows the check counts there
    samples    VARCHAR[] NOT NULL  -- their first sample keys in sort order (samples_kept of them at most)
);
CREATE TABLE IF NOT EXISTS {STATE} (
    table_name   VARCHAR NOT NULL,  -- one row per table (DELETE, then INSERT: DuckLake takes no PRIMARY KEY)
    fingerprint  VARCHAR NOT NULL, -- of the SQL that counted the table: a changed definition counts it again
    samples_kept INTEGER NOT NULL,
    loaded_at    TIMESTAMPTZ,      -- the latest of the table's _warehouse.loads counted
    raw_rows     BIGINT NOT NULL   -- the raw table's rows then: a change outside the extraction counts it again
);
"""


@dataclass(frozen=True)
class Part:
    """One check over one raw table: the rows it counts and the key that names each."""

    check: str
    table: str
    sample: str  # SQL naming a counted row
    where: str = "true"  # the rows counted, one by one
    key: str | None = None  # instead of ``where``: rows repeating a natural key, every one after the first by id
    until_cutoff: bool = False  # only rows whose day column is at or before the run's cutoff count


PARTS = (
    [Part("mac_unnormalisable", t, f"'{t}:' || coalesce(CAST(mac_address AS VARCHAR), 'NULL')",
          "normal_mac(mac_address) IS NULL") for t in MAC_TABLES]
    # Only a set (non-blank) zone that is not an IANA name is unknown; a blank one is unset (RULES["local_day"]).
    + [Part("timezone_unknown", t, f"'{t}:' || id || ':' || timezone",
            "set_zone(timezone) NOT IN (SELECT name FROM pg_timezone_names())") for t in ("kid_profile", "parent_profile")]
    + [Part("duplicate_events", t, f"'{t}:' || CAST(id AS VARCHAR)", key=nk) for t, nk in NATURAL_KEYS.items()]
    # A null total reported nothing; a null part counts 0 (RULES["stored_values"]).
    + [Part("token_totals_mismatch", "device_token_usage", "'device_token_usage:' || id",
            "total_tokens <> coalesce(input_tokens, 0) + coalesce(output_tokens, 0)")]
    # A stored duration that is null reported nothing (metrics.md "Resolved details": stored values).
    + [Part("session_duration_disagree", "analytics_game_sessions", "'analytics_game_sessions:' || session_id",
            "abs(duration_seconds - date_diff('microsecond', started_at, ended_at) / 1e6) > 1", until_cutoff=True)]
)
# Checks whose stored days count only before the cutoff's UTC day (that day itself is read live).
CUT_CHECKS = sorted({p.check for p in PARTS if p.until_cutoff})


@dataclass(frozen=True)
class Table:
    """A raw table the stored checks read, and how its rows fall into days."""

    name: str
    day_column: str | None  # daily tables: the first event-time column; None: a dimension, kept whole
    is_date: bool = False  # the day column is a DATE (no instant to convert)

    @property
    def day(self) -> str:
        """SQL for a row's UTC day (NULL for a dimension, or a row whose day column is NULL)."""
        if self.day_column is None:
            return "CAST(NULL AS DATE)"
        return self.day_column if self.is_date else f"CAST(timezone('UTC', {self.day_column}) AS DATE)"


@dataclass
class Recount:
    """What of one table to count again (all of it, or some days with the rows that have none), and what the store
    then reflects: the table's loads up to ``loaded_at``, its ``raw_rows``, ``kept`` samples per day."""

    whole: bool = False
    days: set[dt.date] = field(default_factory=set)
    loaded_at: dt.datetime | None = None
    raw_rows: int = 0
    kept: int = KEPT_SAMPLES


# -- the stored counts ------------------------------------------------------------------------------------


def tables(con: duckdb.DuckDBPyConnection) -> list[Table]:
    """The raw tables the stored checks read. The day column is the first of the table's declared event-time
    columns: a daily load replaces a window of the first non-null of them, so a row whose day column is set lies in
    the window exactly when its day is one of the window's days; the rest (an attempt without ``attempt_time``) are
    counted again whenever the table loads. A natural key holds the day column, so a day holds whole groups."""
    dates = {(t, c) for t, c in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND data_type = 'DATE'", [RAW]).fetchall()}
    out = []
    for name in dict.fromkeys(p.table for p in PARTS):
        declared = source_table("cheeko", name)
        column = declared.event_time[0] if declared.partitioned else None
        out.append(Table(name, column, (name, column) in dates))
    return out


def counted(part: Part, table: Table, scope: str) -> str:
    """SQL selecting ``day, sample`` for each row ``part`` counts among the rows of ``scope`` (a constant condition).

    A duplicate is judged within the scope: scopes are whole days (or all rows without a day), and every row of a
    natural key's group falls on the same day.
    """
    source = f"{RAW}.{table.name}"
    if part.key is None:
        return f"SELECT {table.day} AS day, {part.sample} AS sample FROM {source} WHERE ({scope}) AND ({part.where})"
    return (f"SELECT day, sample FROM (SELECT {table.day} AS day, {part.sample} AS sample, "
            f"row_number() OVER (PARTITION BY {part.key} ORDER BY id) AS nth FROM {source} WHERE {scope}) WHERE nth > 1")


def fingerprint(table: Table, macro_sql: str) -> str:
    """What the stored counts of ``table`` depend on besides its rows: the checks' SQL, the macros it calls and
    DuckDB's version (its time-zone names)."""
    sql = [counted(p, table, "true") for p in PARTS if p.table == table.name]
    return hashlib.sha256(repr((LAYOUT, duckdb.__version__, macro_sql, sql)).encode()).hexdigest()


def window_days(start: dt.datetime, end: dt.datetime) -> set[dt.date]:
    """The UTC days a load window ``[start, end)`` touches."""
    first = start.astimezone(dt.UTC).date()
    last = (end.astimezone(dt.UTC) - dt.timedelta(microseconds=1)).date()
    return {first + dt.timedelta(days=k) for k in range((last - first).days + 1)}


def recounts_needed(con: duckdb.DuckDBPyConnection, read: list[Table], wanted: dict[str, str],
                    samples: int) -> dict[str, Recount]:
    """What of each table of ``read`` to count again, given what the store last counted, the loads since and the
    tables' rows now; a table with nothing to count again is left out. ``wanted``: each table's fingerprint.

    Three queries for all the tables, not three a table: on a DuckLake each reads the small books' many files."""
    names = [table.name for table in read]
    states = {name: rest for name, *rest in con.execute(
        f"SELECT table_name, fingerprint, samples_kept, loaded_at, raw_rows FROM {STATE} "
        "WHERE list_contains($names, table_name)", {"names": names}).fetchall()}
    loads: dict[str, list[tuple]] = {name: [] for name in names}
    for name, *load in con.execute(
            f"SELECT l.table_name, l.load, l.window_start, l.window_end, l.rows_written - l.rows_deleted, l.finished_at "
            f"FROM {META_SCHEMA}.loads l LEFT JOIN {STATE} s ON s.table_name = l.table_name "
            "WHERE l.database = 'cheeko' AND list_contains($names, l.table_name) "
            "AND (s.loaded_at IS NULL OR l.finished_at > s.loaded_at)", {"names": names}).fetchall():
        loads[name].append(tuple(load))
    rows = dict(con.execute(" UNION ALL ".join(
        f"SELECT {literal(name)}, count(*) FROM {RAW}.{quote(name)}" for name in names)).fetchall()) if names else {}
    plans = {}
    for table in read:
        todo = _recount(table, states.get(table.name), loads[table.name], rows[table.name], wanted[table.name], samples)
        if todo is not None:
            plans[table.name] = todo
    return plans


def _recount(table: Table, state: list | None, loads: list[tuple], rows: int, wanted: str,
             samples: int) -> Recount | None:
    """What of ``table`` to count again (None: nothing): its row of the state, its loads since, its rows now."""
    counted_with, kept, loaded_at, raw_rows = state or (None, 0, None, None)
    todo = Recount(loaded_at=max((load[4] for load in loads), default=loaded_at), raw_rows=rows,
                   kept=max(KEPT_SAMPLES, samples, kept))
    if state is None or counted_with != wanted or kept < samples:
        todo.whole = True
    elif not loads:
        if rows == raw_rows:
            return None
        todo.whole = True  # nothing loaded, yet rows came or went: some other way, so count it all again
    elif table.day_column is None or any(load[0] != "daily" or None in (load[1], load[2]) for load in loads):
        todo.whole = True  # a dimension, or a load that replaced more than a window
    elif raw_rows + sum(load[3] for load in loads) != rows:
        todo.whole = True  # a daily load deletes and inserts what it reports: the rest changed some other way
    else:
        todo.days = set().union(*(window_days(load[1], load[2]) for load in loads))
        if table.is_date:
            # A date column's window is cut on the dates of the zone it was given in, which the loads do not keep.
            todo.days |= {day + dt.timedelta(days=k) for day in todo.days for k in (-1, 1)}
    return todo


def store(con: duckdb.DuckDBPyConnection, part: Part, table: Table, scope: str, values: dict, kept: int) -> None:
    """Insert the day-by-day counts and first samples of ``part`` over ``scope`` into the store."""
    sql = (f"INSERT INTO {STORE} SELECT $check, $table, day, count(*), list(sample ORDER BY sample)[1:$kept] "
           f"FROM ({counted(part, table, scope)}) GROUP BY day")
    con.execute(sql, _bind(sql, values | {"check": part.check, "table": part.table, "kept": kept}))


def recount(con: duckdb.DuckDBPyConnection, table: Table, todo: Recount, wanted: str) -> None:
    """Replace the stored counts of ``table`` that ``todo`` names, and record what they now reflect."""
    parts = [p for p in PARTS if p.table == table.name]
    if todo.whole:
        con.execute(f"DELETE FROM {STORE} WHERE table_name = ?", [table.name])
        for part in parts:
            store(con, part, table, "true", {}, todo.kept)
    else:
        days = sorted(todo.days)
        con.execute(f"DELETE FROM {STORE} WHERE table_name = $t AND (day IS NULL OR day IN (SELECT unnest($days)))",
                    {"t": table.name, "days": days})
        column = table.day_column
        if days:
            # The range lets DuckDB skip row groups outside it (loads append day by day); the list is exact.
            bound = (lambda d: d) if table.is_date else (lambda d: dt.datetime.combine(d, dt.time(0), dt.UTC))
            values = {"first": bound(days[0]), "after": bound(days[-1] + dt.timedelta(days=1)), "days": days}
            scope = f"{column} >= $first AND {column} < $after AND {table.day} IN (SELECT unnest($days))"
            for part in parts:
                store(con, part, table, scope, values, todo.kept)
        for part in parts:
            store(con, part, table, f"{column} IS NULL", {}, todo.kept)
    con.execute(f"DELETE FROM {STATE} WHERE table_name = ?", [table.name])
    con.execute(f"INSERT INTO {STATE} VALUES (?, ?, ?, ?, ?)",
                [table.name, wanted, todo.kept, todo.loaded_at, todo.raw_rows])


def refresh(con: duckdb.DuckDBPyConnection, *, samples: int = KEPT_SAMPLES) -> dict[str, Recount]:
    """Bring the stored counts up to date with the raw layer, in one transaction, keeping at least ``samples``
    sample keys per day; returns what was counted again, by table."""
    macros.ensure(con)  # the same macros rollups.prepare makes
    macro_sql = macros.SQL.read_text()
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(STORE_DDL)
        read = tables(con)
        wanted = {table.name: fingerprint(table, macro_sql) for table in read}
        done = recounts_needed(con, read, wanted, samples)
        for table in read:
            if table.name in done:
                recount(con, table, done[table.name], wanted[table.name])
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return done


# -- what depends on the run's cutoff -----------------------------------------------------------------------


def future_at_source(cheeko_url: str, cutoff: dt.datetime, samples: int) -> tuple[int, list[str]]:
    """How many of the source's events are dated after ``cutoff``, and the first ``samples`` of their keys.

    Counted in PostgreSQL, which has indexes on the event times and need not send the rows (a backfill's
    cutoff leaves much of the history in its future). ``COLLATE "C"`` orders by bytes, as DuckDB orders
    text; naive timestamps compare as UTC (:func:`pipelines.postgres.connect`).
    """
    future = " UNION ALL ".join(f"SELECT '{t}:' || CAST(id AS text) AS sample FROM public.{t} WHERE {c} > %(cutoff)s"
                                for t, c in EVENT_TIMES.items())
    sql = (f"WITH future AS ({future}) SELECT (SELECT count(*) FROM future), "
           f"ARRAY(SELECT sample FROM future ORDER BY sample COLLATE \"C\" LIMIT %(n)s)")
    with postgres.read_only(cheeko_url) as conn:
        count, picked = conn.execute(sql, {"cutoff": cutoff, "n": samples}).fetchone()
    return int(count), list(picked)


def live(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cutoff: dt.datetime, cheeko_url: str | None,
         samples: int) -> None:
    """Fill the temporary table ``__quality_live (check_name, rows, samples)`` with what the run's cutoff decides:
    each live part's count and first ``samples`` keys."""
    con.execute("CREATE OR REPLACE TEMP TABLE __quality_live (check_name VARCHAR, rows BIGINT, samples VARCHAR[])")

    def add(check: str, sql: str, values: dict) -> None:
        whole = (f"INSERT INTO __quality_live SELECT $check, count(*), "
                 f"coalesce(list(sample ORDER BY sample)[1:$n], []) FROM ({sql})")
        con.execute(whole, _bind(whole, values | {"check": check, "n": samples}))

    day_start = dt.datetime.combine(cutoff.astimezone(dt.UTC).date(), dt.time(0), dt.UTC)
    for table in tables(con):
        for part in (p for p in PARTS if p.table == table.name and p.until_cutoff):
            # The cutoff's UTC day up to the cutoff: earlier days are stored, later ones do not count.
            scope = f"{table.day_column} >= $start AND {table.day_column} <= $cutoff"
            add(part.check, counted(part, table, scope), {"start": day_start, "cutoff": cutoff})
    if cheeko_url:
        count, picked = future_at_source(cheeko_url, cutoff, samples)
        con.execute("INSERT INTO __quality_live VALUES ('future_timestamps', ?, ?)", [count, picked])
    else:
        future = " UNION ALL ".join(f"SELECT '{t}:' || CAST(id AS VARCHAR) AS sample FROM {RAW}.{t} WHERE {c} > $cutoff"
                                    for t, c in EVENT_TIMES.items())
        add("future_timestamps", future, {"cutoff": cutoff})
    drift = (SQL_DIR / "app_counter_drift.sql").read_text()
    add("app_counter_drift", f"SELECT 'analytics_user_progress:' || mac_address AS sample FROM ({drift}) WHERE drifting",
        {"as_of_time": as_of_time, "cutoff": cutoff})


def combined(con: duckdb.DuckDBPyConnection, *, cutoff: dt.datetime, samples: int) -> dict[str, tuple[int, list[str]]]:
    """Each check's count and first ``samples`` keys: the stored days it counts, plus the live parts."""
    sql = f"""
        WITH parts AS (
            SELECT check_name, rows, samples FROM {STORE}
            WHERE NOT list_contains($cut, check_name) OR day < $cut_day
            UNION ALL
            SELECT check_name, rows, samples FROM __quality_live
        ),
        totals AS (SELECT check_name, sum(rows) AS rows FROM parts GROUP BY check_name),
        picked AS (
            SELECT check_name, list(sample ORDER BY sample)[1:$n] AS samples
            FROM (SELECT check_name, unnest(samples) AS sample FROM parts) GROUP BY check_name
        )
        SELECT check_name, rows, coalesce(samples, []) FROM totals LEFT JOIN picked USING (check_name)"""
    found = {name: (int(rows), list(picked)) for name, rows, picked in con.execute(
        sql, {"cut": CUT_CHECKS, "cut_day": cutoff.astimezone(dt.UTC).date(), "n": samples}).fetchall()}
    return {name: found.get(name, (0, [])) for name in QUALITY_CHECKS}


# -- the entry points ---------------------------------------------------------------------------------------


def report(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cheeko_url: str | None = None,
           samples: int = KEPT_SAMPLES) -> dict[str, tuple[int, list[str]]]:
    """Each data-quality check's count and its first ``samples`` sample keys (in sort order), as a full rescan gives.

    Future-dated events are counted at the source when ``cheeko_url`` is
    given: the raw layer only holds days that have happened. The stored
    counts are brought up to date first, so call it once per run and share
    the result: a second call repeats only the live part.
    """
    from pipelines import rollups  # (here: rollups imports this module for its wrappers)

    samples = max(int(samples), 0)
    rollups.prepare(con)  # the macros the checks call, and the staging tables app_counter_drift reads
    refresh(con, samples=samples)
    cutoff = as_of_time + rollups.FUTURE_GRACE
    try:
        live(con, as_of_time=as_of_time, cutoff=cutoff, cheeko_url=cheeko_url, samples=samples)
        return combined(con, cutoff=cutoff, samples=samples)
    finally:
        con.execute("DROP TABLE IF EXISTS __quality_live")


def counts(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cheeko_url: str | None = None) -> dict[str, int]:
    """Each data-quality check's count (see :func:`report`)."""
    return {name: count for name, (count, _) in report(con, as_of_time=as_of_time, cheeko_url=cheeko_url).items()}


def _bind(sql: str, values: dict) -> dict:
    """Only the named parameters ``sql`` uses (DuckDB rejects unused ones)."""
    return {k: v for k, v in values.items() if f"${k}" in sql}
