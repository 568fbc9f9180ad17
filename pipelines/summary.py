"""A few lines about what a warehouse holds, read from an analyst snapshot (the demo's closing summary)."""

from __future__ import annotations

from pathlib import Path

from pipelines import warehouse
from pipelines.privacy import quote
from pipelines.reports.render import plural_form
from pipelines.warehouse import RAW_SCHEMAS

LAYERS = (*RAW_SCHEMAS.values(), "marts")


def layer_rows(snapshot: Path) -> dict[str, tuple[int, int]]:
    """``{schema: (tables, rows)}`` for the raw layers and the marts."""
    out: dict[str, tuple[int, int]] = {}
    with warehouse.connect(snapshot, read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN (SELECT unnest(?)) "
                             "ORDER BY 1, 2", [list(LAYERS)]).fetchall()
        for schema, table in tables:
            rows = con.execute(f"SELECT count(*) FROM {quote(schema)}.{quote(table)}").fetchone()[0]
            count, total = out.get(schema, (0, 0))
            out[schema] = (count + 1, total + rows)
    return {schema: out[schema] for schema in LAYERS if schema in out}


def fleet_highlights(snapshot: Path) -> list[str]:
    """The latest day of ``marts.fleet_daily`` and the week before it, in two lines."""
    with warehouse.connect(snapshot, read_only=True) as con:
        latest = con.execute(
            "SELECT day, active_devices, new_devices, user_turns, game_sessions, accuracy, stories_completed, "
            "songs_completed, total_tokens, est_cost_usd FROM marts.fleet_daily ORDER BY day DESC LIMIT 1").fetchone()
        if latest is None:
            return ["fleet_daily is empty"]
        week = con.execute(
            "SELECT min(day), avg(active_devices), arg_max(day, active_devices), max(active_devices), "
            "sum(user_turns), sum(total_tokens), sum(est_cost_usd) FROM marts.fleet_daily WHERE day > ?::DATE - 7",
            [latest[0]]).fetchone()
    day, active, new, turns, sessions, accuracy, stories, songs, tokens, cost = latest
    first, mean, peak_day, peak, week_turns, week_tokens, week_cost = week
    accuracy_text = f"{accuracy:.0%} correct" if accuracy is not None else "no attempts"
    return [
        f"{day}: {counted(active, 'active device')} ({new} new), {counted(turns, 'user turn')}, "
        f"{counted(sessions, 'game session')} ({accuracy_text}), {counted(stories, 'story', 'stories')} and "
        f"{counted(songs, 'song')} completed, {_usage(tokens, cost)}",
        f"{first} .. {day}: {mean:.1f} active devices a day (peak {peak} on {peak_day}), "
        f"{counted(week_turns, 'user turn')}, {_usage(week_tokens, week_cost)}",
    ]


def counted(n: int, one: str, other: str | None = None) -> str:
    """``n`` and its noun in the right form: "1 story", "3 stories"."""
    return f"{n:,} {one if plural_form('en', n) == 'one' else other or one + 's'}"


def _usage(tokens: int | None, cost) -> str:
    """Tokens and their estimated cost; null sums mean no device reported tokens (marts.RULES["sums"])."""
    if tokens is None and cost is None:
        return "no token usage reported"
    return f"{counted(tokens or 0, 'token')} (${cost or 0:,.2f})"
