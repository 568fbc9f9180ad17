"""Build the marts from the raw layer, check data quality, and publish the exact progress values.

Each mart is one SQL file in ``sql/`` named after it; shared steps (MAC
normalisation, local days, deduplication) are tables in ``sql/staging/``.
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

from pipelines import warehouse, writes
from pipelines.marts import DRIFT_COUNTERS, MARTS, mart

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
TABLE_REFERENCE = re.compile(r"\b(?:raw_cheeko|raw_cognova|staging|marts)\.\w+")
TABLE_MACRO = re.compile(r"CREATE OR REPLACE MACRO (\w+)\([^)]*\) AS TABLE")
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
# Marts built from other marts, and so after them.
MART_INPUTS = {"game_daily": ("game_sessions",), "fleet_daily": ("token_usage_daily",)}
# The raw tables each mart reads (for the asset graph's lineage).
RAW_INPUTS = {
    "daily_device_activity": ("cheeko", ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback",
                                         "rfid_scan_log", "ai_device", "kid_profile", "parent_profile")),
    "game_sessions": ("cheeko", ("analytics_game_sessions", "analytics_game_attempts", "ai_device", "kid_profile", "parent_profile")),
    "device_streaks": ("cheeko", ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback",
                                  "rfid_scan_log", "ai_device", "kid_profile", "parent_profile")),
    "learning_progress": ("cheeko", ("analytics_game_attempts", "ai_device", "kid_profile", "parent_profile")),
    "device_progress": ("cheeko", ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback",
                                   "rfid_scan_log", "analytics_game_sessions", "ai_device", "kid_profile", "parent_profile")),
    "token_usage_daily": ("cheeko", ("device_token_usage", "ai_device", "ai_agent", "ai_model_config")),
    "token_usage_monthly": ("cheeko", ("device_token_usage", "ai_device", "ai_agent", "ai_model_config")),
    "fleet_daily": ("cheeko", ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log",
                               "analytics_game_sessions", "ai_device", "sys_user", "device_token_usage")),
    "cognova_cost_daily": ("cognova", ("token_usage",)),
    "cognova_agent_runs_daily": ("cognova", ("cron_agent_runs", "cron_agents")),
    "cognova_activity_daily": ("cognova", ("conversations", "conversation_messages", "tasks", "reminders", "hook_events")),
    "app_counter_drift": ("cheeko", ("analytics_user_progress", "ai_agent_chat_history", "analytics_game_attempts",
                                     "analytics_media_playback", "rfid_scan_log", "analytics_game_sessions", "ai_device",
                                     "kid_profile", "parent_profile")),
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


def references(sql: str) -> set[str]:
    """The warehouse tables ``sql`` reads: ``raw_cheeko.t``, ``raw_cognova.t``, ``staging.t``, ``marts.t``.

    A call of a table macro defined in a staging file (``streaks_as_of(...)``) reads what that file reads,
    so it counts as a reference to ``staging.<file>``.
    """
    found = {m.group(0) for m in TABLE_REFERENCE.finditer(sql)}
    found |= {f"staging.{file}" for name, file in table_macros().items() if re.search(rf"\b{name}\s*\(", sql)}
    return found


@cache
def table_macros() -> dict[str, str]:
    """Table macros the staging files define, by name: the file (without .sql) that defines each."""
    out = {}
    for name in STAGING:
        for match in TABLE_MACRO.finditer(staging_sql(name)):
            out[match.group(1)] = name
    return out


def prepare(con: duckdb.DuckDBPyConnection, prices: PriceSheet | None = None) -> bool:
    """Create the macros, price table and staging tables the marts read; True if staging was rebuilt.

    Staging (normalised MACs, local days, deduplicated events) is rebuilt only
    when the raw layer has loaded something since it was last built, or the
    price sheet changed, so the marts of one run share one pass over history.
    """
    sheet = prices or load_price_sheet()
    con.execute("CREATE SCHEMA IF NOT EXISTS staging; CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(staging_sql("macros"))
    con.execute("CREATE TABLE IF NOT EXISTS _warehouse.staging_state (raw_loaded_at TIMESTAMPTZ, price_sheet VARCHAR)")
    loaded = con.execute("SELECT max(finished_at) FROM _warehouse.loads").fetchone()[0]
    # The staging SQL is part of the key: a changed definition rebuilds staging even without new data.
    code = hashlib.sha256("".join((SQL_DIR / "staging" / f"{name}.sql").read_text() for name in ("macros", *STAGING)).encode())
    fingerprint = repr((sheet.version, sheet.default, sorted(sheet.models.items()), code.hexdigest()))
    state = con.execute("SELECT raw_loaded_at, price_sheet FROM _warehouse.staging_state").fetchone()
    if state == (loaded, fingerprint) and loaded is not None:
        return False
    con.execute("BEGIN TRANSACTION")
    try:
        load_prices(con, sheet)
        for name in STAGING:
            con.execute(staging_sql(name))
        con.execute("DELETE FROM _warehouse.staging_state")
        con.execute("INSERT INTO _warehouse.staging_state VALUES (?, ?)", [loaded, fingerprint])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return True


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
        con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} AS SELECT * FROM ({select}) WHERE false", _params(select, values))
        _evolve(con, name, select, values)
        scope = SCOPE_COLUMN.get(name)
        if scope:
            con.execute(f"DELETE FROM marts.{name} WHERE {scope} BETWEEN $first_day AND $last_day",
                        {"first_day": first_day, "last_day": last_day})
        else:
            con.execute(f"DELETE FROM marts.{name}")
        written = con.execute(f"INSERT INTO marts.{name} BY NAME {select}", _params(select, values)).fetchone()[0]
        _comment(con, definition)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
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
    for column, type_ in wanted.items():
        if column not in present:
            con.execute(f"ALTER TABLE marts.{name} ADD COLUMN {column} {type_}")
        elif present[column] != type_:
            con.execute(f"ALTER TABLE marts.{name} ALTER {column} TYPE {type_}")
    for column in present.keys() - wanted.keys():
        con.execute(f"ALTER TABLE marts.{name} DROP COLUMN {column}")
    con.execute("DROP TABLE __shape")


def _comment(con: duckdb.DuckDBPyConnection, definition) -> None:
    """The contract's descriptions as DuckDB comments, so analysts see them in the file."""
    con.execute(f"COMMENT ON TABLE marts.{definition.name} IS {warehouse.literal(definition.description)}")
    existing = {row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = ?", [definition.name]).fetchall()}
    for column, text in definition.columns.items():
        if column in existing:
            con.execute(f"COMMENT ON COLUMN marts.{definition.name}.{column} IS {warehouse.literal(text)}")


def build_order(names: list[str] | None = None) -> list[str]:
    """``names`` (default: every mart) in an order that builds inputs first."""
    wanted = [m.name for m in MARTS] if names is None else list(names)
    order: list[str] = []

    def visit(name: str) -> None:
        for dependency in MART_INPUTS.get(name, ()):
            if dependency in wanted:
                visit(dependency)
        if name not in order:
            order.append(name)

    for name in wanted:
        visit(name)
    return order


class MissingInputs(RuntimeError):
    """The raw tables a mart reads are not in the warehouse yet; the message names them and what to run."""


def missing_inputs(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[str]:
    """Raw tables that the staging SQL or the SQL of ``names`` reads and the warehouse does not hold."""
    files = [SQL_DIR / "staging" / f"{name}.sql" for name in STAGING] + [SQL_DIR / f"{name}.sql" for name in names]
    needed = {name for path in files for name in references(path.read_text()) if name.startswith("raw_")}
    present = {f"{schema}.{table}" for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
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
    prepare(con, prices)
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


def _union(parts: list[str]) -> str:
    return " UNION ALL ".join(parts)


def quality_report(con: duckdb.DuckDBPyConnection, *, as_of_time: dt.datetime, cheeko_url: str | None = None,
                   samples: int = 5) -> dict[str, tuple[int, list[str]]]:
    """Each data-quality check's count and a few sample keys.

    Future-dated events are counted at the source when ``cheeko_url`` is
    given: the raw layer only holds days that have happened.
    """
    prepare(con)
    queries = {
        "mac_unnormalisable": _union([f"SELECT '{t}:' || coalesce(CAST(mac_address AS VARCHAR), 'NULL') AS sample "
                                      f"FROM raw_cheeko.{t} WHERE normal_mac(mac_address) IS NULL" for t in MAC_TABLES]),
        # Only a set (non-blank) zone that is not an IANA name is unknown; a blank one is unset (RULES["local_day"]).
        "timezone_unknown": _union([f"SELECT '{t}:' || id || ':' || timezone AS sample FROM raw_cheeko.{t} "
                                    f"WHERE set_zone(timezone) NOT IN (SELECT name FROM pg_timezone_names())"
                                    for t in ("kid_profile", "parent_profile")]),
        "duplicate_events": _union([f"SELECT '{t}:' || CAST(id AS VARCHAR) AS sample FROM raw_cheeko.{t} "
                                    f"QUALIFY row_number() OVER (PARTITION BY {nk} ORDER BY id) > 1"
                                    for t, nk in NATURAL_KEYS.items()]),
        # A null total reported nothing; a null part counts 0 (RULES["stored_values"]).
        "token_totals_mismatch": "SELECT 'device_token_usage:' || id AS sample FROM raw_cheeko.device_token_usage "
                                 "WHERE total_tokens <> coalesce(input_tokens, 0) + coalesce(output_tokens, 0)",
        # A stored duration that is null reported nothing (metrics.md "Resolved details": stored values).
        "session_duration_disagree": """
            SELECT 'analytics_game_sessions:' || session_id AS sample FROM raw_cheeko.analytics_game_sessions
            WHERE started_at <= $cutoff
              AND abs(duration_seconds - date_diff('microsecond', started_at, ended_at) / 1e6) > 1""",
        "app_counter_drift": "SELECT 'analytics_user_progress:' || mac_address AS sample FROM ("
                             + (SQL_DIR / "app_counter_drift.sql").read_text() + ") WHERE drifting",
    }
    future = _union([f"SELECT '{t}:' || CAST(id AS VARCHAR) AS sample FROM {{source}}.{t} WHERE {c} > $cutoff"
                     for t, c in EVENT_TIMES.items()])
    if cheeko_url:
        from pipelines.warehouse import attach_source

        attach_source(con, "quality_source", cheeko_url)
        queries["future_timestamps"] = future.format(source="quality_source.public")
    else:
        queries["future_timestamps"] = future.format(source="raw_cheeko")
    report = {}
    values = {"as_of_time": as_of_time, "cutoff": as_of_time + FUTURE_GRACE}
    for name in QUALITY_CHECKS:
        sql = queries[name]
        count = con.execute(f"SELECT count(*) FROM ({sql})", _params(sql, values)).fetchone()[0]
        picked = [r[0] for r in con.execute(f"SELECT sample FROM ({sql}) ORDER BY sample LIMIT {int(samples)}",
                                            _params(sql, values)).fetchall()]
        report[name] = (int(count), picked)
    return report


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
    """Each data-quality check's count."""
    return {name: count for name, (count, _) in quality_report(con, as_of_time=as_of_time, cheeko_url=cheeko_url).items()}


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
