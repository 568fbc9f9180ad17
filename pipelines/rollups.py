"""Build the marts from the raw layer, check data quality, and publish the exact progress values.

Each mart is one SQL file in ``sql/`` named after it; shared steps (MAC
normalisation, local days, deduplication) are tables in ``sql/staging/``,
which :func:`prepare` brings up to date with the raw layer, rebuilding only
the event rows of the windows a daily load replaced when that is exact.
:func:`build` replaces a mart's scope (its days, its as-of dates, or all of
it) in one DuckDB transaction, so re-running a range recomputes exactly those
days. :func:`publish` keeps the pipeline's ``warehouse.device_streaks``,
``warehouse.device_progress`` and ``warehouse.learning_progress`` in Cheeko
equal to the latest as-of values, through :mod:`pipelines.writes`; the app's
own ``analytics_*`` and ``kid_learning_progress`` tables are never written
(``app_counter_drift`` reconciles them instead).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from pipelines import macros, warehouse, writes
from pipelines.marts import DRIFT_COUNTERS, MARTS, mart

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
TABLE_REFERENCE = re.compile(r"\b(?:raw_cheeko|raw_cognova|staging|marts)\.\w+")
TABLE_MACRO = re.compile(r"CREATE OR REPLACE MACRO (\w+)\([^)]*\) AS TABLE")
COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)  # the SQL files hold no comment marks inside strings
PRICE_SHEET = Path(__file__).with_name("price_sheet.toml")
STAGING = ("devices", "zone_offsets", "chat_turns", "game_attempts", "media_events", "rfid_scans", "game_sessions",
           "qualifying_events", "streaks", "priced_usage")
FUTURE_GRACE = dt.timedelta(minutes=5)
# The column a mart's scope (days or as-of dates) is cut on; "whole" marts are rebuilt entirely.
SCOPE_COLUMN = {
    "daily_device_activity": "activity_date", "device_streaks": "as_of_date", "game_sessions": "local_date",
    "game_daily": "local_date", "learning_progress": "as_of_date", "device_progress": "as_of_date",
    "token_usage_daily": "usage_date", "fleet_daily": "day", "cognova_cost_daily": "day",
    "cognova_agent_runs_daily": "day", "cognova_activity_daily": "day",
}


@dataclass(frozen=True)
class PriceSheet:
    """Per-million-token prices by model code, with a default and a version; exact decimals (rule: money)."""

    version: str
    default: tuple[Decimal, Decimal]
    models: dict[str, tuple[Decimal, Decimal]]


def load_price_sheet(path: Path = PRICE_SHEET) -> PriceSheet:
    # Prices are read as written (Decimal), never through a float.
    raw = tomllib.loads(path.read_text(), parse_float=Decimal)
    price = lambda entry: (Decimal(entry["input_per_million"]), Decimal(entry["output_per_million"]))  # noqa: E731
    return PriceSheet(str(raw["version"]), price(raw["default"]), {code: price(p) for code, p in raw.get("models", {}).items()})


def load_prices(con: duckdb.DuckDBPyConnection, sheet: PriceSheet) -> None:
    """``staging.prices``: the price sheet as a table (model NULL holds the default)."""
    con.execute("CREATE OR REPLACE TABLE staging.prices (model VARCHAR, input_per_million DECIMAL(18, 8), "
                "output_per_million DECIMAL(18, 8), version VARCHAR)")
    con.executemany("INSERT INTO staging.prices VALUES (?, ?, ?, ?)",
                    [(None, *sheet.default, sheet.version)] + [(code, *p, sheet.version) for code, p in sheet.models.items()])


def staging_sql(name: str) -> str:
    """The SQL that builds ``staging.<name>`` (``macros`` for the shared macros)."""
    return (SQL_DIR / "staging" / f"{name}.sql").read_text()


@cache
def references(sql: str) -> frozenset[str]:
    """The warehouse tables ``sql`` reads: ``raw_cheeko.t``, ``raw_cognova.t``, ``staging.t``, ``marts.t``.

    A call of a table macro defined in a staging file (``streaks_as_of(...)``) reads what that file reads,
    so it counts as a reference to ``staging.<file>``. Comments are not read. Kept per text: every mart step of a
    run asks again for the same files (about 10 ms a mart step, measured), and the answer depends on the text alone.
    """
    sql = COMMENT.sub("", sql)  # "see staging.devices" in a comment is no read
    found = {m.group(0) for m in TABLE_REFERENCE.finditer(sql)}
    found |= {f"staging.{file}" for name, file in table_macros().items() if re.search(rf"\b{name}\s*\(", sql)}
    return frozenset(found)


@cache
def table_macros() -> dict[str, str]:
    """Table macros the staging files define, by name: the file (without .sql) that defines each."""
    out = {}
    for name in STAGING:
        for match in TABLE_MACRO.finditer(staging_sql(name)):
            out[match.group(1)] = name
    return out


# -- staging ----------------------------------------------------------------------------------------------

# Built whole on every pass: small, and every event row is computed from them.
DIMENSIONS = ("devices", "zone_offsets")
# The event staging tables, each with the rows its ``<name>_between(window_start, window_end)`` macro (in its SQL
# file) builds for a window, as a condition on the table's own columns: what a windowed pass deletes before it
# inserts what the macro returns. Each condition must select exactly the rows its macro builds.
WINDOWED = {
    "chat_turns": "in_window(event_at, $window_start, $window_end)",
    # Whole sessions: a natural key without attempt_time can repeat on another day, never in another session.
    "game_attempts": "session_id IN (FROM attempt_sessions_between($window_start, $window_end))",
    "media_events": "in_window(event_at, $window_start, $window_end)",
    "rfid_scans": "in_window(event_at, $window_start, $window_end)",
    # Sessions started in the window, and those whose attempts were rebuilt (their is_game may change).
    "game_sessions": "in_window(started_at, $window_start, $window_end) "
                     "OR session_id IN (FROM attempt_sessions_between($window_start, $window_end))",
    # Its window is widened to every row its sources replaced (_rebuild_window).
    "qualifying_events": "in_window(event_at, $window_start, $window_end)",
    "priced_usage": "in_window(usage_date, $window_start, $window_end)",
}
# Event tables cut on a date (the device's reporting day), not an instant.
DATED = ("priced_usage",)
STATE_COLUMNS = {"raw_loaded_at": "TIMESTAMPTZ", "fingerprint": "VARCHAR", "kind": "VARCHAR", "window_start": "TIMESTAMPTZ",
                 "window_end": "TIMESTAMPTZ", "reason": "VARCHAR", "built_at": "TIMESTAMPTZ"}


@dataclass(frozen=True)
class StagingPass:
    """What one staging build did, as ``_warehouse.staging_state`` records it.

    ``kind`` is "whole" (every table rebuilt from all of history), "window" (the dimensions rebuilt, and the event
    rows of the UTC window ``[window_start, window_end)`` the loads replaced) or "dimensions" (only the dimensions:
    the loads replaced no event rows); ``reason`` says why a pass was whole.
    """

    kind: str
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    reason: str = ""

    def bounds(self, name: str) -> tuple:
        """The window as ``<name>_between`` takes it; a pass without one gets an empty window (an instant twice).

        A dated table was cut by the load on the days of the window's bounds in the loader's zone: a day more on
        each side covers every zone.
        """
        start, end = self.window_start, self.window_end
        if start is None or end is None:
            nothing = dt.date(1970, 1, 1) if name in DATED else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            return nothing, nothing
        if name in DATED:
            day = dt.timedelta(days=1)
            return start.astimezone(dt.UTC).date() - day, end.astimezone(dt.UTC).date() + day
        return start, end

    def params(self, name: str) -> dict:
        start, end = self.bounds(name)
        return {"window_start": start, "window_end": end}


def _fingerprint(sheet: PriceSheet) -> str:
    # The staging SQL is part of the key: a changed definition rebuilds staging even without new data.
    code = hashlib.sha256("".join((SQL_DIR / "staging" / f"{name}.sql").read_text() for name in ("macros", *STAGING)).encode())
    return repr((sheet.version, sheet.default, sorted(sheet.models.items()), code.hexdigest()))


def _state(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The last staging build's row of ``_warehouse.staging_state``; None before the first (or in an older shape of
    the table, which holds no window: forgetting it costs one whole pass)."""
    try:
        cursor = con.execute("SELECT * FROM _warehouse.staging_state")
    except duckdb.CatalogException:
        return None
    row = cursor.fetchone()
    columns = [d[0] for d in cursor.description]
    return dict(zip(columns, row)) if row and columns == list(STATE_COLUMNS) else None


def _record(con: duckdb.DuckDBPyConnection, loaded: dt.datetime | None, fingerprint: str, done: StagingPass) -> None:
    con.execute(f"CREATE OR REPLACE TABLE _warehouse.staging_state ({', '.join(f'{c} {t}' for c, t in STATE_COLUMNS.items())})")
    con.execute("INSERT INTO _warehouse.staging_state VALUES ($loaded, $fingerprint, $kind, $start, $end, $reason, now())",
                {"loaded": loaded, "fingerprint": fingerprint, "kind": done.kind, "start": done.window_start,
                 "end": done.window_end, "reason": done.reason})


def last_pass(con: duckdb.DuckDBPyConnection) -> StagingPass | None:
    """What the last staging build did (None before the first)."""
    state = _state(con)
    return StagingPass(state["kind"], state["window_start"], state["window_end"], state["reason"]) if state else None


def _raw_read(names) -> set[str]:
    """The raw tables (``raw_cheeko.t``) the staging files ``names`` read."""
    return {t for name in names for t in references(staging_sql(name)) if t.startswith("raw_")}


def _plan(con: duckdb.DuckDBPyConnection, state: dict | None, loaded: dt.datetime | None, fingerprint: str) -> StagingPass | None:
    """What the loads since the last build call for; None when they loaded nothing staging reads.

    Daily tables are replaced one window of event time at a time (``pipelines.extract``), recorded in
    ``_warehouse.loads``: the event rows outside those windows are as the last build left them. An event table
    loaded otherwise (whole, or merged) leaves no such bound, so staging is rebuilt whole.
    """
    if state is None or loaded is None or state["raw_loaded_at"] is None:
        return StagingPass("whole", reason="no record of a previous build")
    if state["fingerprint"] != fingerprint:
        return StagingPass("whole", reason="the staging SQL or the price sheet changed")
    present = {table for _, table in warehouse.tables(con, "staging")}
    if missing := [n for n in ("prices", *DIMENSIONS, *WINDOWED) if n not in present]:
        return StagingPass("whole", reason=f"staging.{missing[0]} is missing")
    read, events = _raw_read(STAGING), _raw_read(WINDOWED)
    loads = [(f"{warehouse.RAW_SCHEMAS[db]}.{table}", start, end) for db, table, start, end in con.execute(
        "SELECT database, table_name, window_start, window_end FROM _warehouse.loads WHERE finished_at > $since",
        {"since": state["raw_loaded_at"]}).fetchall()]
    if not [load for load in loads if load[0] in read]:
        return None
    if whole := sorted({table for table, start, _ in loads if table in events and start is None}):
        return StagingPass("whole", reason=f"{whole[0]} was loaded whole, not by a window of event time")
    windows = [(start, end) for table, start, end in loads if table in events]
    if not windows:
        return StagingPass("dimensions")
    return StagingPass("window", min(w[0] for w in windows), max(w[1] for w in windows))


def _build_whole(con: duckdb.DuckDBPyConnection, names=STAGING) -> None:
    """Build ``names`` (default: every staging table and macro) from all of history."""
    for name in names:
        if name in WINDOWED:
            con.execute(f"DROP TABLE IF EXISTS staging.{name}")  # its file builds it only when it is missing
        con.execute(staging_sql(name))


def _rebuild_dimensions(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild the dimensions; ``__changed_devices`` holds the MACs whose staging.devices row was added, removed or
    changed in any column (a new device, a kid's zone edited), and their count is returned."""
    con.execute("CREATE OR REPLACE TEMP TABLE __devices_before AS FROM staging.devices")
    for name in DIMENSIONS:
        con.execute(staging_sql(name))
    con.execute("CREATE OR REPLACE TEMP TABLE __changed_devices AS SELECT DISTINCT mac_address FROM ("
                "(SELECT * FROM __devices_before EXCEPT SELECT * FROM staging.devices) "
                "UNION ALL (SELECT * FROM staging.devices EXCEPT SELECT * FROM __devices_before))")
    return con.execute("SELECT count(*) FROM __changed_devices").fetchone()[0]


def _not_windowable(con: duckdb.DuckDBPyConnection, plan: StagingPass, changed_devices: int) -> str | None:
    """Why rebuilding only ``plan``'s window (the dimensions rebuilt) would not give what a whole pass gives; None
    if it would. Asked of the event tables as the last build left them, before any of their rows is touched."""
    for name in WINDOWED:
        # A raw column added since (priced_usage reads u.*) changes the table's columns: only a whole pass has it.
        built = con.execute(f"DESCRIBE staging.{name}").fetchall()
        wanted = con.execute(f"DESCRIBE FROM {name}_between(NULL, NULL)").fetchall()
        if [c[:2] for c in built] != [c[:2] for c in wanted]:
            return f"staging.{name} changes columns"
    if changed_devices:
        # Rows a window does not rebuild keep the zone, kid, owner and LLM their device had when they were built.
        for name, scope in WINDOWED.items():
            if name == "qualifying_events":
                continue  # its rows are those of the other event tables
            stale = con.execute(f"SELECT min(mac_address) FROM staging.{name} WHERE mac_address IN (FROM __changed_devices) "
                                f"AND NOT coalesce({scope}, false)", plan.params(name)).fetchone()[0]
            if stale:
                return f"{changed_devices} device(s) changed in staging.devices, one with rows outside the window ({stale})"
    # Attempts are rebuilt by the sessions that have an attempt in the window now. A session that had one there and
    # has none now (deleted at the source, or moved out) would keep its old rows, and a NULL session id is no
    # session to rebuild by.
    gone = con.execute("SELECT count(*) FROM staging.game_attempts a WHERE in_window(a.event_at, $window_start, $window_end) "
                       "AND NOT EXISTS (FROM attempt_sessions_between($window_start, $window_end) s "
                       "WHERE s.session_id = a.session_id)", plan.params("game_attempts")).fetchone()[0]
    unnamed = con.execute("SELECT count(*) FROM attempt_sessions_between($window_start, $window_end) WHERE session_id IS NULL",
                          plan.params("game_attempts")).fetchone()[0]
    if gone or unnamed:
        return "attempts in the window left their session, or have none"
    return None


def _is_game_inputs(con: duckdb.DuckDBPyConnection) -> tuple:
    """What every session's is_game reads of staging.game_attempts besides its own id: ``id IN (list)`` is NULL,
    not false, when the list holds a NULL, and a NULL id is false only against an empty list."""
    return con.execute("SELECT count(*) = 0, count(*) FILTER (WHERE session_id IS NULL) > 0 FROM staging.game_attempts").fetchone()


def _event_range(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> tuple:
    """The earliest and latest event of the rows of ``staging.<name>`` in the window."""
    return con.execute(f"SELECT min(event_at), max(event_at) FROM staging.{name} WHERE {WINDOWED[name]}", params).fetchone()


def _rebuild_window(con: duckdb.DuckDBPyConnection, plan: StagingPass) -> None:
    """Replace each event table's rows of ``plan``'s window by what its ``<name>_between`` macro builds for it."""
    is_game_inputs = _is_game_inputs(con)
    sources = {t.removeprefix("staging.") for t in references(staging_sql("qualifying_events"))} - {"qualifying_events"}
    # qualifying_events holds a row for each row of its sources, so its window spans every source row replaced
    # (an attempt's session can reach past the window).
    span = [plan.window_start, plan.window_end]
    for name, scope in WINDOWED.items():
        con.execute(staging_sql(name))  # the macros as the file now defines them; the table is there already
        if name == "game_sessions" and _is_game_inputs(con) != is_game_inputs:
            _build_whole(con, [name])
            continue
        params = plan.params(name) if name != "qualifying_events" else {"window_start": min(span), "window_end": max(span)}
        before = _event_range(con, name, params) if name in sources else None
        con.execute(f"DELETE FROM staging.{name} WHERE {scope}", params)
        con.execute(f"INSERT INTO staging.{name} BY NAME FROM {name}_between($window_start, $window_end)", params)
        if before:
            for low, high in (before, _event_range(con, name, params)):
                if low is not None:
                    span += [low, high + dt.timedelta(microseconds=1)]  # the window's end is excluded


def _build(con: duckdb.DuckDBPyConnection, plan: StagingPass) -> StagingPass:
    """Carry out ``plan``, whole where a window would not be exact; what was done."""
    if plan.kind == "whole":
        _build_whole(con)
        return plan
    changed_devices = _rebuild_dimensions(con)
    if reason := _not_windowable(con, plan, changed_devices):
        _build_whole(con, [name for name in STAGING if name not in DIMENSIONS])
        return StagingPass("whole", reason=reason)
    if plan.kind == "window":
        _rebuild_window(con, plan)
    con.execute(staging_sql("streaks"))
    con.execute("DROP TABLE __devices_before; DROP TABLE __changed_devices")
    return plan


def prepare(con: duckdb.DuckDBPyConnection, prices: PriceSheet | None = None, *, whole: bool = False) -> bool:
    """Create the macros, price table and staging tables the marts read; True if staging was rebuilt.

    Staging (normalised MACs, local days, deduplicated events, priced usage) is brought up to date when the raw
    layer has loaded something it reads since it was last built (``_warehouse.loads``), so the marts of one run share
    one pass. When those loads replaced windows of event time (daily tables), only the event rows of those windows
    are rebuilt, with the dimensions (devices, zone offsets) whole, provided that gives exactly what rebuilding
    everything gives (:func:`_not_windowable`); otherwise, after a change of price sheet or staging SQL, or with
    ``whole``, every table is rebuilt from all of history. :func:`last_pass` says which it was, and why.
    """
    sheet = prices or load_price_sheet()
    con.execute("CREATE SCHEMA IF NOT EXISTS staging; CREATE SCHEMA IF NOT EXISTS marts")
    macros.ensure(con)
    state = _state(con)
    loaded = con.execute("SELECT max(finished_at) FROM _warehouse.loads").fetchone()[0]
    fingerprint = _fingerprint(sheet)
    if whole:
        plan = StagingPass("whole", reason="asked for")
    elif state and loaded is not None and (state["raw_loaded_at"], state["fingerprint"]) == (loaded, fingerprint):
        return False
    else:
        plan = _plan(con, state, loaded, fingerprint)
    con.execute("BEGIN TRANSACTION")
    try:
        if plan is None:
            # Nothing staging reads was loaded: these loads are accounted for.
            con.execute("UPDATE _warehouse.staging_state SET raw_loaded_at = $loaded", {"loaded": loaded})
        else:
            load_prices(con, sheet)
            _record(con, loaded, fingerprint, _build(con, plan))
        con.execute("COMMIT")
    except BaseException:
        warehouse.rollback(con)
        raise
    return plan is not None


def _params(sql: str, values: dict) -> dict:
    return {k: v for k, v in values.items() if f"${k}" in sql}


def build_mart(con: duckdb.DuckDBPyConnection, name: str, *, as_of_time: dt.datetime, first_day: dt.date,
               last_day: dt.date) -> int:
    """Replace ``name``'s rows for ``first_day..last_day`` (or all of it); returns the rows written."""
    definition = mart(name)
    select = (SQL_DIR / f"{name}.sql").read_text()
    values = {"first_day": first_day, "last_day": last_day, "as_of_time": as_of_time, "cutoff": as_of_time + FUTURE_GRACE}
    con.execute("BEGIN TRANSACTION")
    try:
        new = not warehouse.table_columns(con, "marts", name)
        con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} AS SELECT * FROM ({select}) WHERE false", _params(select, values))
        _evolve(con, name, select, values)
        scope = SCOPE_COLUMN.get(name)
        if scope:
            con.execute(f"DELETE FROM marts.{name} WHERE {scope} BETWEEN $first_day AND $last_day",
                        {"first_day": first_day, "last_day": last_day})
        else:
            con.execute(f"DELETE FROM marts.{name}")
        written = con.execute(f"INSERT INTO marts.{name} BY NAME {select}", _params(select, values)).fetchone()[0]
        _comment(con, definition, new=new)
        con.execute("COMMIT")
    except BaseException:
        warehouse.rollback(con)
        raise
    return int(written)


def _evolve(con: duckdb.DuckDBPyConnection, name: str, select: str, values: dict) -> None:
    """Bring ``marts.<name>``'s columns to what its SQL now selects (a column added, dropped or retyped, e.g. money
    from DOUBLE to DECIMAL), keeping the rows of other days. Rows built by an older definition keep their values:
    after a change of definition, rebuild the history with a backfill (README, "Backfills")."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE __shape AS SELECT * FROM ({select}) WHERE false", _params(select, values))
    columns = ("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
               "AND table_name = ? ORDER BY column_index")
    wanted = dict(con.execute(columns, ["temp", "main", "__shape"]).fetchall())
    present = dict(con.execute(columns, [con.execute("SELECT current_database()").fetchone()[0], "marts", name]).fetchall())
    retyped = [column for column, type_ in wanted.items() if column in present and present[column] != type_]
    if retyped and warehouse.is_lake(con):
        # DuckLake changes a column's type only to a wider one (INTEGER to BIGINT, not DOUBLE to DECIMAL): the table
        # is written anew in its new shape, in the same transaction, its rows' values cast.
        shape = ", ".join(f"CAST({warehouse.quote(c)} AS {t}) AS {warehouse.quote(c)}" if c in present
                          else f"CAST(NULL AS {t}) AS {warehouse.quote(c)}" for c, t in wanted.items())
        con.execute(f"CREATE TABLE marts.__evolving_{name} AS SELECT {shape} FROM marts.{name}")
        con.execute(f"DROP TABLE marts.{name}")
        con.execute(f"ALTER TABLE marts.__evolving_{name} RENAME TO {name}")
        con.execute("DROP TABLE __shape")
        return
    for column, type_ in wanted.items():
        if column not in present:
            con.execute(f"ALTER TABLE marts.{name} ADD COLUMN {column} {type_}")
        elif present[column] != type_:
            con.execute(f"ALTER TABLE marts.{name} ALTER {column} TYPE {type_}")
    for column in present.keys() - wanted.keys():
        con.execute(f"ALTER TABLE marts.{name} DROP COLUMN {column}")
    con.execute("DROP TABLE __shape")


def _comment(con: duckdb.DuckDBPyConnection, definition, *, new: bool) -> None:
    """The contract's descriptions as DuckDB comments, so analysts see them in the file.

    On a table already there, only those that differ are set: on a DuckLake a comment is a catalog change, which
    every connection's next query then pays for by reloading the catalog (0.1-0.3 s at the tests' size, measured).
    A ``new`` table (made by this transaction) has none to read."""
    if new or warehouse.table_comment(con, "marts", definition.name) != definition.description:
        con.execute(f"COMMENT ON TABLE marts.{definition.name} IS {warehouse.literal(definition.description)}")
    existing = dict(con.execute(
        "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'marts' AND table_name = ?", [definition.name]).fetchall())
    for column, text in definition.columns.items():
        if column in existing and existing[column] != text:
            con.execute(f"COMMENT ON COLUMN marts.{definition.name}.{column} IS {warehouse.literal(text)}")


def mart_inputs(name: str) -> list[str]:
    """The marts ``name``'s SQL reads (``marts.<name>``), so builds first."""
    return sorted(t.removeprefix("marts.") for t in references((SQL_DIR / f"{name}.sql").read_text()) if t.startswith("marts."))


def build_order(names: list[str] | None = None) -> list[str]:
    """``names`` (default: every mart) in an order that builds inputs first (marts read by another among them)."""
    wanted = [m.name for m in MARTS] if names is None else list(names)
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"marts read each other in a cycle: {' -> '.join(visiting + [name])}")
        visiting.append(name)
        for dependency in mart_inputs(name):
            if dependency in wanted:
                visit(dependency)
        visiting.pop()
        order.append(name)

    for name in wanted:
        visit(name)
    return order


class MissingInputs(RuntimeError):
    """The raw tables a mart reads are not in the warehouse yet; the message names them and what to run."""


def reads_staging(names: list[str]) -> bool:
    """Whether the SQL of any of ``names`` reads a staging table (Cognova's marts read only their raw tables)."""
    return any(ref.startswith("staging.") for name in names for ref in references((SQL_DIR / f"{name}.sql").read_text()))


def missing_inputs(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[str]:
    """Raw tables that the SQL of ``names``, or the staging SQL when they read staging, reads and the warehouse
    does not hold."""
    files = [SQL_DIR / "staging" / f"{name}.sql" for name in STAGING] if reads_staging(names) else []
    files += [SQL_DIR / f"{name}.sql" for name in names]
    needed = {name for path in files for name in references(path.read_text()) if name.startswith("raw_")}
    present = {f"{schema}.{table}" for schema, table in warehouse.tables(con)}
    return sorted(needed - present)


def build(con: duckdb.DuckDBPyConnection, names: list[str] | None = None, *, as_of_time: dt.datetime,
          first_day: dt.date, last_day: dt.date, prices: PriceSheet | None = None) -> dict[str, int]:
    """Build ``names`` (default: every mart) for ``first_day..last_day``; returns rows written per mart."""
    missing = missing_inputs(con, build_order(names))
    if missing:
        # Typically a backfill of marts on a warehouse whose raw layer was never loaded.
        raise MissingInputs(f"cannot build {', '.join(f'marts.{n}' for n in build_order(names))}: the warehouse "
                            f"holds no {', '.join(missing)} yet. Load the raw layer once first (`warehouse run`, or "
                            f"materialize groups cheeko_raw and cognova_raw in the UI)")
    if reads_staging(build_order(names)):
        prepare(con, prices)
    else:  # the shared macros only
        con.execute("CREATE SCHEMA IF NOT EXISTS staging; CREATE SCHEMA IF NOT EXISTS marts")
        macros.ensure(con)
    return {name: build_mart(con, name, as_of_time=as_of_time, first_day=first_day, last_day=last_day)
            for name in build_order(names)}


# -- publishing the exact values to Cheeko ----------------------------------------------------------------

# Pipeline-owned tables in Cheeko's schema ``warehouse`` (migration cheeko_warehouse_0003), each holding the latest
# as-of values of the mart of the same name, with its columns; the key is the mart's key without the date.
PUBLISHED_SCHEMA = "warehouse"
PUBLISHED = {"device_streaks": ("mac_address",), "device_progress": ("mac_address",),
             "learning_progress": ("kid_id", "subject", "topic")}


def latest_as_of(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The latest as-of date built for all three published marts (None if any is empty)."""
    dates = [con.execute(f"SELECT max(as_of_date) FROM marts.{name}").fetchone()[0] for name in PUBLISHED]
    return None if any(d is None for d in dates) else min(dates)


def published_frames(con: duckdb.DuckDBPyConnection, as_of_date: dt.date) -> dict[str, pl.DataFrame]:
    """What each published table should hold: the mart's rows and columns as of ``as_of_date``."""
    frames = {}
    for name in PUBLISHED:
        columns = ", ".join(mart(name).columns)
        frames[name] = con.execute(f"SELECT {columns} FROM marts.{name} WHERE as_of_date = $d", {"d": as_of_date}).pl()
    return frames


def publish(con: duckdb.DuckDBPyConnection, cheeko_url: str, *, as_of_date: dt.date | None = None) -> dict[str, writes.UpsertResult]:
    """Make ``warehouse.device_streaks``, ``device_progress`` and ``learning_progress`` equal to the marts as of
    ``as_of_date`` (default: the latest built).

    One transaction for the three tables; a row whose values did not change
    is not touched, so its ``updated_at`` stays. It refuses to run when the
    streaks or device progress for that date are empty, rather than empty
    what the app reads. The app's own tables are never written.
    """
    as_of = as_of_date or latest_as_of(con)
    if as_of is None:
        raise ValueError("the as-of marts are empty: build device_streaks, device_progress and learning_progress first")
    frames = published_frames(con, as_of)
    for name in ("device_streaks", "device_progress"):
        if frames[name].is_empty():
            raise ValueError(f"no marts.{name} rows for {as_of}: refusing to empty {PUBLISHED_SCHEMA}.{name}")

    def work() -> dict[str, writes.UpsertResult]:
        with writes.transaction(cheeko_url) as conn:
            return {name: writes.upsert(conn, name, frames[name], list(key), delete_missing=True, schema=PUBLISHED_SCHEMA)
                    for name, key in PUBLISHED.items()}

    return writes.with_retries(work)


# -- data quality ---------------------------------------------------------------------------------------

# The checks live in pipelines.quality (counted incrementally); their names stay importable from here.
from pipelines import quality  # noqa: E402
from pipelines.quality import EVENT_TIMES, MAC_TABLES, NATURAL_KEYS, QUALITY_CHECKS  # noqa: E402,F401


def quality_report(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cheeko_url: str | None = None,
                   samples: int = 5) -> dict[str, tuple[int, list[str]]]:
    """Each data-quality check's count and a few sample keys: :func:`pipelines.quality.report`."""
    return quality.report(con, as_of_time=as_of_time, cheeko_url=cheeko_url, samples=samples)


def drift_summary(con: duckdb.DuckDBPyConnection, samples: int = 5) -> dict:
    """marts.app_counter_drift in a few numbers: devices drifting, and the largest drift of each counter."""
    counters = list(DRIFT_COUNTERS)
    drifting = con.execute("SELECT count(*) FROM marts.app_counter_drift WHERE drifting").fetchone()[0]
    largest = {}
    for counter in counters + ["last_activity"]:
        column = f"{counter}_drift_seconds" if counter == "last_activity" else f"{counter}_drift"
        row = con.execute(f"SELECT mac_address, {column} FROM marts.app_counter_drift WHERE {column} <> 0 "
                          f"ORDER BY abs({column}) DESC, mac_address LIMIT 1").fetchone()
        if row:
            largest[column] = {"mac_address": row[0], "drift": row[1]}
    picked = [r[0] for r in con.execute("SELECT mac_address FROM marts.app_counter_drift WHERE drifting "
                                        "ORDER BY max_count_drift DESC, mac_address LIMIT ?", [samples]).fetchall()]
    return {"devices_drifting": int(drifting), "largest": largest, "samples": picked}


def quality_counts(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cheeko_url: str | None = None) -> dict[str, int]:
    """Each data-quality check's count: :func:`pipelines.quality.counts`."""
    return quality.counts(con, as_of_time=as_of_time, cheeko_url=cheeko_url)


# -- for property tests ------------------------------------------------------------------------------------


def compute_streaks(active_days: dict[str, list[dt.date]], as_of_date: dt.date) -> list[dict]:
    """``sql/device_streaks.sql`` (and its macro) over the given activity calendars, in a throwaway in-memory DuckDB
    whose ``staging.qualifying_events`` holds one event at noon UTC of each active day."""
    with warehouse.in_memory() as con:
        con.execute("CREATE SCHEMA staging")
        frame = pl.DataFrame([(mac, day) for mac, days in active_days.items() for day in days],
                             schema={"mac_address": pl.String, "local_date": pl.Date}, orient="row")
        con.register("calendar", frame)
        con.execute("CREATE TABLE staging.qualifying_events AS SELECT mac_address, local_date, "
                    "CAST(local_date AS TIMESTAMP) + INTERVAL 12 HOUR AS event_at, 'turn' AS kind FROM calendar")
        con.execute(staging_sql("streaks"))
        select = (SQL_DIR / "device_streaks.sql").read_text()
        values = {"first_day": as_of_date, "last_day": as_of_date,
                  "cutoff": dt.datetime.combine(as_of_date, dt.time(0), dt.UTC) + dt.timedelta(days=2)}
        rows = con.execute(select, _params(select, values)).pl()
        return rows.sort("mac_address").to_dicts()
