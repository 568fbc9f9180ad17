"""The admin daily report's numbers, gathered from the warehouse into one JSON-able snapshot.

The snapshot is what ``email_report_history.report_data`` stores and what
the templates render, so a sent report can be read again exactly as sent.
Money is a ``Decimal`` (the marts' DECIMAL(18, 8)); :func:`report_json`
writes the snapshot without losing a digit of it.
Days are local days of the report's zone (:func:`schedule.local_day_window`);
each query is a file in ``sql/reports/``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from pipelines import rollups
from pipelines.reports.schedule import local_day_window

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "reports"
TREND_DAYS = 14
OVERVIEW_METRICS = ("active_devices", "new_devices", "new_users")
EVENT_TABLES = ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log")
SECTIONS = ("overview", "engagement", "games", "content", "tokens", "cognova", "data_quality", "delivery")
MONEY_PLACES = Decimal("0.00000001")  # the marts' DECIMAL(18, 8): an average of money is rounded to it


def query(con: duckdb.DuckDBPyConnection, name: str, values: dict) -> list[dict]:
    """Rows of ``sql/reports/<name>.sql`` as JSON-friendly dicts, with the ``$`` parameters it uses bound."""
    sql = (SQL_DIR / f"{name}.sql").read_text()
    cursor = con.execute(sql, {k: v for k, v in values.items() if f"${k}" in sql})
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, (_plain(v) for v in row))) for row in cursor.fetchall()]


def _plain(value):
    """JSON-friendly: dates as ISO strings, non-finite floats as None; decimals (money) stay exact."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return value


def _json_number(value):
    if isinstance(value, Decimal):
        as_float = float(value)
        # A JSON number when the float's shortest repr is this very number, else a string: never a rounded amount.
        return as_float if Decimal(repr(as_float)) == value else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def report_json(data) -> str:
    """``data`` (a report's snapshot) as JSON text, money kept exact.

    A ``Decimal`` is written as a JSON number when that number round-trips
    exactly through a float (``Decimal(repr(float(d))) == d``), else as a
    string. Every place a report's data becomes JSON (``email_report_history``)
    goes through here.
    """
    return json.dumps(data, default=_json_number, allow_nan=False)


def data_through(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """The instant up to which every Cheeko event table has been extracted (None before any load)."""
    row = con.execute(
        "SELECT min(through) FROM (SELECT table_name, max(window_end) AS through FROM _warehouse.loads "
        "WHERE database = 'cheeko' AND load = 'daily' AND table_name IN (SELECT unnest($tables::VARCHAR[])) "
        "GROUP BY table_name HAVING count(*) > 0) HAVING count(*) = len($tables::VARCHAR[])",
        {"tables": list(EVENT_TABLES)},
    ).fetchone()
    return row[0] if row else None


def _compare(series: list[dict], metric: str) -> dict:
    """Today's value, the day before, the 7 days before today on average, and the changes.

    A day without a value (money nobody reported: null, not 0) gives no change, and the
    average is over the days that have one. Changes in percent are floats; an average of
    money is rounded to the marts' 8 places.
    """
    today = series[-1][metric]
    previous = series[-2][metric] if len(series) > 1 else None
    week = [row[metric] for row in series[-8:-1] if row[metric] is not None]
    avg7 = sum(week) / len(week) if week else None
    if isinstance(avg7, Decimal):
        avg7 = avg7.quantize(MONEY_PLACES)
    both = today is not None and previous is not None
    return {
        "value": today,
        "previous": previous,
        "change": today - previous if both else None,
        "change_pct": float(today - previous) / float(previous) if both and previous else None,
        "avg7": avg7,
        "vs_avg7_pct": float(today - avg7) / float(avg7) if today is not None and avg7 else None,
    }


def build(con: duckdb.DuckDBPyConnection, *, report_date: dt.date, tz: ZoneInfo, as_of_time: dt.datetime,
          quality: dict[str, int] | None = None, delivery: dict | None = None,
          through: dt.datetime | None = None) -> dict:
    """Everything the admin report shows for ``report_date`` (a local day in ``tz``): JSON values, money as ``Decimal``.

    ``quality`` is the data-quality checks' counts (``rollups.quality_counts``);
    ``delivery`` the delivery health from :func:`pipelines.reports.delivery.health`;
    ``through`` what :func:`data_through` says (read here when not given).
    """
    rollups.prepare(con)  # staging tables and the shared macros
    days = [report_date - dt.timedelta(days=i) for i in range(TREND_DAYS - 1, -1, -1)]
    windows = [local_day_window(day, tz) for day in days]
    window_start, window_end = windows[-1]
    values = {
        "days": days, "starts": [w[0] for w in windows], "ends": [w[1] for w in windows],
        "report_date": report_date, "window_start": window_start, "window_end": window_end,
    }
    trend = query(con, "admin_trend", values)
    today = trend[-1]
    through = through or data_through(con)
    return {
        "report_date": report_date.isoformat(),
        "timezone": tz.key,
        "window": {"start": window_start.isoformat(), "end": window_end.isoformat(),
                   "hours": round((window_end - window_start).total_seconds() / 3600, 2)},
        "as_of": as_of_time.isoformat(),
        "data_through": through.isoformat() if through else None,
        "overview": {metric: _compare(trend, metric) for metric in OVERVIEW_METRICS},
        "trend": trend,
        "engagement": {
            "user_turns": _compare(trend, "user_turns"),
            "turns_per_active_device": (today["user_turns"] / today["active_devices"]) if today["active_devices"] else None,
            "streaks": (query(con, "admin_streaks", values) or [{}])[0],
        },
        "games": {
            "sessions": _compare(trend, "game_sessions"),
            "attempts": today["attempts"],
            "accuracy": today["correct"] / today["attempts"] if today["attempts"] else None,
            "by_subject": query(con, "admin_subjects", values),
            "mastery": query(con, "admin_mastery", values),
        },
        "content": {
            "stories_completed": _compare(trend, "stories_completed"),
            "songs_completed": _compare(trend, "songs_completed"),
            "top": query(con, "admin_top_content", values),
        },
        "tokens": {
            "total_tokens": _compare(trend, "total_tokens"),
            "est_cost_usd": _compare(trend, "est_cost_usd"),
            "avg_ttft_seconds": today["avg_ttft_seconds"],
            "p95_ttft_seconds": today["p95_ttft_seconds"],
            "by_model": query(con, "admin_tokens_by_model", values),
            "price_sheet_version": rollups.load_price_sheet().version,
        },
        "cognova": {
            "cost_by_source": query(con, "admin_cognova_cost", values),
            "agent_runs": query(con, "admin_agent_runs", values),
        },
        "data_quality": dict(sorted((quality or {}).items())),
        "delivery": delivery or {},
    }
