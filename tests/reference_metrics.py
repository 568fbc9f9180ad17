"""The marts, computed again in plain Python straight from the operational rows.

An independent reference for ``pipelines/rollups.py`` and ``sql/``: written
from ``shared/design/metrics.md`` and the contract in ``pipelines/marts.py``
(mart names, grains, columns, :data:`pipelines.marts.RULES`) alone, never from
the SQL. It reads whole tables with ``SELECT *`` through
:func:`pipelines.postgres.connect` and does everything else with the standard
library, so a disagreement with the warehouse points at one of the two.

Where both documents leave a choice open, the choice made here is written
next to the code that makes it (search for "Choice:"). Money (every
``*cost_usd`` column) is :class:`decimal.Decimal` with 8 places, exact
(RULES['money']); a sum over no values is ``None`` for tokens, seconds and
money, 0 for counts of rows (RULES['sums']).

Entry points:

- :func:`load_sources` reads the operational rows once;
- :func:`reference_marts` gives every mart in ``MARTS`` as lists of dicts keyed
  by the contract's column names;
- :func:`published_rows` gives what the pipeline's ``warehouse.device_streaks``,
  ``warehouse.device_progress`` and ``warehouse.learning_progress`` in Cheeko
  should hold after a publish (the app's own ``analytics_streaks``,
  ``analytics_user_progress`` and ``kid_learning_progress`` are never written);
- :func:`quality_counts` gives the data-quality check counts;
- :func:`streak` is the streak definition on its own.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import tomllib
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import cached_property
from pathlib import Path

from pipelines import postgres

UTC = dt.UTC
FUTURE_GRACE = dt.timedelta(minutes=5)
ABANDON_AFTER = dt.timedelta(minutes=30)
STALE_AFTER = dt.timedelta(hours=6)
PRICE_SHEET = Path(__file__).resolve().parent.parent / "pipelines" / "price_sheet.toml"
HEX = set("0123456789abcdef")
# Choice: "surrounding whitespace" (MACs, time zones) is ASCII whitespace: space, tab, newline, carriage return,
# vertical tab and form feed (not Python's wider Unicode set).
WHITESPACE = " \t\n\r\v\f"
# RULES['money']: DECIMAL(18, 8) US dollars, each source row rounded half away from zero once.
CENT_MILLIONTHS = Decimal("0.00000001")
EXACT = Context(prec=60)  # enough digits that no product or sum of token counts and prices is ever rounded
IANA = frozenset(zoneinfo.available_timezones())
# RULES['sessions']: the modes that are games whatever their attempts.
GAME_MODES = frozenset({"Math", "Riddle", "WordLadder"})
# Tables that ``rollups.publish`` fills in Cheeko's warehouse schema: mart -> its key without as_of_date.
PUBLISHED = {"device_streaks": ("mac_address",), "device_progress": ("mac_address",),
             "learning_progress": ("kid_id", "subject", "topic")}

CHEEKO_TABLES = (
    "ai_device", "kid_profile", "parent_profile", "sys_user", "ai_agent", "ai_model_config",
    "ai_agent_chat_history", "analytics_game_sessions", "analytics_game_attempts", "analytics_media_playback",
    "rfid_scan_log", "device_token_usage", "analytics_user_progress",
)
COGNOVA_TABLES = ("token_usage", "cron_agents", "cron_agent_runs", "conversations", "conversation_messages", "tasks",
                  "reminders", "hook_events")
# PostgreSQL `real` columns: the warehouse holds them as FLOAT (binary float32), psycopg parses their
# shortest decimal text; both are made the same float32 value here.
REAL_COLUMNS = {
    ("token_usage", "cost_usd"), ("cron_agent_runs", "cost_usd"), ("conversation_messages", "cost_usd"),
    ("conversations", "total_cost_usd"),
}


# RULES['event_times']: where an event's time is read, the first non-null column winning.
EVENT_TIMES = {
    "ai_agent_chat_history": ("created_at",),
    "analytics_game_attempts": ("attempt_time", "answered_at", "created_at"),
    "analytics_media_playback": ("created_at",),
    "rfid_scan_log": ("created_at",),
    "analytics_game_sessions": ("started_at",),
}
# RULES['duplicates']: natural keys; "mac_address" stands for the normalised MAC. The attempts' key is its raw
# columns (no MAC), a NULL equal to a NULL, as SQL's PARTITION BY has it.
NATURAL_KEYS = {
    "ai_agent_chat_history": ("mac_address", "session_id", "chat_type", "created_at"),
    "analytics_game_attempts": ("session_id", "attempt_number", "attempt_time", "question_text"),
    "analytics_media_playback": ("mac_address", "content_id", "event_type", "created_at"),
    "rfid_scan_log": ("rfid_uid", "mac_address", "created_at"),
}


# -- shared rules -----------------------------------------------------------------------------------


def normalise_mac(raw: str | None) -> str | None:
    """RULES['mac']: trim surrounding whitespace, lower-case, drop ':', '-', '.' and spaces; 12 hex digits or None."""
    if raw is None:
        return None
    s = raw.strip(WHITESPACE).lower()
    for ch in ":-. ":
        s = s.replace(ch, "")
    if len(s) != 12 or not set(s) <= HEX:
        return None
    return ":".join(s[i:i + 2] for i in range(0, 12, 2))


def event_time(table: str, row: dict) -> dt.datetime | None:
    """RULES['event_times']: the row's event time, None when every column it may come from is null."""
    return next((row[c] for c in EVENT_TIMES[table] if row[c] is not None), None)


def natural_key(table: str, row: dict) -> tuple:
    """RULES['duplicates']: the row's natural key, its MAC normalised."""
    # Choice: a MAC that cannot be normalised stands in the key as spelled (two such rows repeat each other
    # only when spelled alike); it matters only to the duplicate_events count, such rows count in no mart.
    return tuple(normalise_mac(row[c]) or row[c] if c == "mac_address" else row[c] for c in NATURAL_KEYS[table])


def zone_name(raw: str | None) -> str | None:
    """RULES['local_day']: a profile's zone trimmed; None when it is unset (NULL or blank after trimming)."""
    name = None if raw is None else raw.strip(WHITESPACE)
    return name or None


def zone_is_unknown(raw: str | None) -> bool:
    """A profile's zone counts for the timezone_unknown check: set (not blank), but not an IANA name once trimmed."""
    name = zone_name(raw)
    return name is not None and name not in IANA


def zone_of(name: str) -> dt.tzinfo:
    """An IANA zone, or UTC for a (set) name that is not one."""
    return zoneinfo.ZoneInfo(name) if name in IANA else UTC


def as_float32(value):
    """The float32 value PostgreSQL stores for a `real`, as a Python float."""
    return None if value is None else struct.unpack("f", struct.pack("f", value))[0]


def quantile_cont(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, DuckDB's quantile_cont)."""
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def sql_sum(values) -> object:
    """SUM as SQL has it: nulls ignored, null when nothing is left (RULES['sums'] for a measured quantity)."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def money(value) -> Decimal | None:
    """RULES['money']: one source row's dollars as DECIMAL(18, 8), rounded half away from zero. A float (a Cognova
    `real`, already its exact float32 value) converts from its exact binary value, not from a shorter text."""
    if value is None:
        return None
    exact = Decimal(value) if isinstance(value, (float, int)) else value
    return exact.quantize(CENT_MILLIONTHS, rounding=ROUND_HALF_UP, context=EXACT)


def money_sum(values) -> Decimal | None:
    """RULES['money'] and ['sums']: an exact decimal sum of per-row amounts, null when no row reported one."""
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)).quantize(CENT_MILLIONTHS, context=EXACT) if present else None


def usage_cost(row: dict, prices: tuple[Decimal, Decimal]) -> Decimal | None:
    """RULES['prices'] and ['money']: one device_token_usage row's cost; a null part counts 0 unless both are null
    (the row reported nothing: no cost)."""
    inp, out = row["input_tokens"], row["output_tokens"]
    if inp is None and out is None:
        return None
    p_in, p_out = prices
    dollars = EXACT.divide(EXACT.add(EXACT.multiply(Decimal(inp or 0), p_in), EXACT.multiply(Decimal(out or 0), p_out)),
                           Decimal(10 ** 6))
    return money(dollars)


def ratio(num, den) -> float | None:
    return None if not den else num / den


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def streak(active: set[dt.date] | list[dt.date], as_of_date: dt.date) -> dict | None:
    """metrics.md 'Streaks' for one device; None when it has no active day on or before ``as_of_date``."""
    days = sorted({d for d in active if d <= as_of_date})
    if not days:
        return None
    longest = run = 1
    for prev, cur in zip(days, days[1:]):
        run = run + 1 if cur - prev == dt.timedelta(days=1) else 1
        longest = max(longest, run)
    present = set(days)
    one = dt.timedelta(days=1)
    end = as_of_date if as_of_date in present else as_of_date - one if as_of_date - one in present else None
    current, start = 0, None
    if end is not None:
        start = end
        while start - one in present:
            start -= one
        current = (end - start).days + 1
    return {"current_streak_days": current, "longest_streak_days": longest, "last_active_date": days[-1],
            "streak_start_date": start, "total_active_days": len(days)}


def duration_disagrees(session: dict) -> bool:
    """Overrides: the stored duration_seconds differs from ended_at - started_at by more than 1 second, both set."""
    if session["duration_seconds"] is None or session["ended_at"] is None:
        return False
    return abs(session["duration_seconds"] - (session["ended_at"] - session["started_at"]).total_seconds()) > 1


def price(value) -> Decimal:
    """A price per million tokens as an exact decimal (a float is taken by its shortest text, as written)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def load_price_sheet(path: Path = PRICE_SHEET) -> dict:
    """``{"version", "default": (in, out), "models": {code: (in, out)}}`` from the price sheet, prices exact
    decimals read from their text (never through a binary float)."""
    raw = tomllib.loads(path.read_text(), parse_float=Decimal)
    pair = lambda t: (price(t["input_per_million"]), price(t["output_per_million"]))  # noqa: E731
    return {"version": str(raw["version"]), "default": pair(raw["default"]),
            "models": {code: pair(p) for code, p in raw.get("models", {}).items()}}


# -- sources -------------------------------------------------------------------------------------------


def _read(url: str, tables: tuple[str, ...]) -> dict[str, list[dict]]:
    out = {}
    with postgres.connect(url) as conn:
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            names = [d.name for d in cur.description]
            rows = []
            for values in cur.fetchall():
                row = dict(zip(names, values))
                for name, value in row.items():
                    if isinstance(value, dt.datetime):
                        row[name] = value.astimezone(UTC)
                    elif (table, name) in REAL_COLUMNS:
                        row[name] = as_float32(value)
                rows.append(row)
            out[table] = rows
    return out


@dataclass
class Sources:
    """The operational rows the marts read, table by table."""

    cheeko: dict[str, list[dict]]
    cognova: dict[str, list[dict]]


def load_sources(cheeko_url: str, cognova_url: str | None = None) -> Sources:
    return Sources(_read(cheeko_url, CHEEKO_TABLES), _read(cognova_url, COGNOVA_TABLES) if cognova_url else
                   {t: [] for t in COGNOVA_TABLES})


# -- the computation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One deduplicated, non-future event row with a valid MAC."""

    mac: str
    at: dt.datetime
    local: dt.date
    row: dict


class Reference:
    """Every mart for one as-of time and day range, from :class:`Sources`."""

    def __init__(self, sources: Sources, as_of_time: dt.datetime, first_day: dt.date, last_day: dt.date,
                 prices: dict | None = None):
        assert as_of_time.tzinfo is not None
        self.src = sources
        self.as_of = as_of_time.astimezone(UTC)
        self.cutoff = self.as_of + FUTURE_GRACE
        self.first_day, self.last_day = first_day, last_day
        self.days = days_between(first_day, last_day)
        self.prices = prices if prices is not None else load_price_sheet()

    # ---- dimensions ----

    @cached_property
    def device_rows(self) -> dict[str, list[dict]]:
        """Every ai_device row with a valid MAC, by normalised MAC (RULES['devices']; an invalid MAC is no device)."""
        out: dict[str, list[dict]] = defaultdict(list)
        for row in self.src.cheeko["ai_device"]:
            mac = normalise_mac(row["mac_address"])
            if mac is not None:
                out[mac].append(row)
        return dict(out)

    @cached_property
    def devices(self) -> dict[str, dict]:
        """RULES['devices']: one device per normalised MAC, the most recently updated of its rows (update_date, then
        the greatest id): its kid, owner and agent."""
        def recency(row: dict) -> tuple:
            # Choice: a null update_date is older than any date (so never the latest while another row has one);
            # ids (uuids) compare by their text, which for uuids is their numeric order.
            updated = row["update_date"]
            return updated is not None, updated or dt.datetime.min.replace(tzinfo=UTC), str(row["id"])

        return {mac: max(rows, key=recency) for mac, rows in self.device_rows.items()}

    @cached_property
    def device_created(self) -> dict[str, dt.datetime]:
        """RULES['devices']: a device is new on the earliest create_date among its rows (devices with none are not)."""
        out = {}
        for mac, rows in self.device_rows.items():
            dates = [r["create_date"] for r in rows if r["create_date"] is not None]
            if dates:
                out[mac] = min(dates)
        return out

    @cached_property
    def zones(self) -> dict[str, dt.tzinfo]:
        """RULES['local_day']: the kid's zone, else the owner's, else UTC; NULL or blank is unset and falls through,
        a set name is trimmed and, when not an IANA name, is UTC without falling through."""
        kids = {k["id"]: k for k in self.src.cheeko["kid_profile"]}
        parents = {p["user_id"]: p for p in self.src.cheeko["parent_profile"] if p["user_id"] is not None}
        out = {}
        for mac, device in self.devices.items():
            kid = kids.get(device["kid_id"]) if device["kid_id"] is not None else None
            owner = parents.get(device["user_id"]) if device["user_id"] is not None else None
            names = [zone_name(kid["timezone"]) if kid else None, zone_name(owner["timezone"]) if owner else None]
            name = next((n for n in names if n is not None), None)
            out[mac] = UTC if name is None else zone_of(name)
        return out

    def local_date(self, mac: str, at: dt.datetime) -> dt.date:
        return at.astimezone(self.zones.get(mac, UTC)).date()

    # ---- events (rules: mac, as_of, duplicates) ----

    def _rows(self, table: str) -> list[tuple[str, dt.datetime, dict]]:
        """(MAC, event time, row) for the rows with a valid MAC and an event time, any time, by id."""
        out = []
        for row in sorted(self.src.cheeko[table], key=lambda r: r["id"]):
            mac, at = normalise_mac(row["mac_address"]), event_time(table, row)
            # Choice: an invalid MAC leaves the row out of every mart, not only the per-device ones.
            if mac is not None and at is not None:
                out.append((mac, at, row))
        return out

    def _events(self, table: str) -> list[Event]:
        # Choice: rows with an invalid MAC or a future time are left out first, then the rest deduplicated
        # (the smallest id of each natural key kept): a repeat counts once among the rows that count at all, so
        # an attempt logged twice, once with a garbled MAC (or, its attempt_time null, a future fallback time),
        # still counts once.
        seen, out = set(), []
        for mac, at, row in self._rows(table):
            if at > self.cutoff:
                continue
            key = natural_key(table, row)
            if key in seen:
                continue
            seen.add(key)
            out.append(Event(mac, at, self.local_date(mac, at), row))
        return out

    @cached_property
    def chats(self) -> list[Event]:
        return self._events("ai_agent_chat_history")

    @cached_property
    def user_turns(self) -> list[Event]:
        return [e for e in self.chats if e.row["chat_type"] == 1]

    @cached_property
    def attempts(self) -> list[Event]:
        return self._events("analytics_game_attempts")

    @cached_property
    def playback(self) -> list[Event]:
        return self._events("analytics_media_playback")

    @cached_property
    def scans(self) -> list[Event]:
        return self._events("rfid_scan_log")

    @cached_property
    def plays(self) -> list[Event]:
        return [e for e in self.playback if e.row["event_type"] in ("play", "complete")]

    @cached_property
    def qualifying(self) -> list[tuple[str, Event]]:
        return ([("user_turns", e) for e in self.user_turns] + [("game_attempts", e) for e in self.attempts]
                + [("media_plays", e) for e in self.plays] + [("rfid_scans", e) for e in self.scans])

    @cached_property
    def active_days(self) -> dict[str, set[dt.date]]:
        out: dict[str, set[dt.date]] = defaultdict(set)
        for _, e in self.qualifying:
            out[e.mac].add(e.local)
        return dict(out)

    @cached_property
    def sessions(self) -> list[Event]:
        """Mode sessions (games and not) with a valid MAC that started by the as-of time (+5 minutes)."""
        # (session_id is unique in analytics_game_sessions: sessions need no deduplication.)
        return [Event(mac, at, self.local_date(mac, at), row) for mac, at, row in self._rows("analytics_game_sessions")
                if at <= self.cutoff]

    @cached_property
    def sessions_with_attempts(self) -> set[str]:
        """RULES['sessions']: session ids that a deduplicated attempt with a valid MAC carries, at any time."""
        # Choice: "any time" means the future cut-off does not apply (an attempt dated after the as-of time
        # still makes its session a game), but an attempt with no event time at all counts for nothing, as in
        # every event metric; its MAC need not be the session's.
        return {row["session_id"] for _, _, row in self._rows("analytics_game_attempts")}

    def is_game(self, session: dict) -> bool:
        return session["mode_type"] in GAME_MODES or session["session_id"] in self.sessions_with_attempts

    @cached_property
    def games(self) -> list[Event]:
        """The sessions that are games (RULES['sessions'])."""
        return [s for s in self.sessions if self.is_game(s.row)]

    @cached_property
    def attempts_by_session(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = defaultdict(list)
        for e in self.attempts:
            out[e.row["session_id"]].append(e)
        return out

    # ---- marts ----

    def daily_device_activity(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for source, e in self.qualifying:
            if not self.first_day <= e.local <= self.last_day:
                continue
            g = groups.setdefault((e.local, e.mac), {
                "activity_date": e.local, "mac_address": e.mac, "user_turns": 0, "game_attempts": 0, "media_plays": 0,
                "rfid_scans": 0, "first_event_at": e.at, "last_event_at": e.at})
            g[source] += 1
            g["first_event_at"] = min(g["first_event_at"], e.at)
            g["last_event_at"] = max(g["last_event_at"], e.at)
        return list(groups.values())

    def device_streaks(self) -> list[dict]:
        out = []
        for day in self.days:
            for mac, active in self.active_days.items():
                s = streak(active, day)
                if s is not None:
                    out.append({"as_of_date": day, "mac_address": mac, **s})
        return out

    @cached_property
    def all_game_sessions(self) -> list[dict]:
        """game_sessions rows for every session, whatever its local date."""
        out = []
        for s in self.sessions:
            row = s.row
            atts = self.attempts_by_session.get(row["session_id"], [])
            attempts, correct = len(atts), sum(1 for a in atts if a.row["is_correct"])
            last_event = max((a.at for a in atts), default=row["started_at"])
            if row["ended_at"] is not None:
                status, effective = "completed", row["ended_at"]
            elif self.as_of - last_event > ABANDON_AFTER:
                status, effective = "abandoned", last_event
            else:
                status, effective = "open", None
            duration = None if effective is None else max(0.0, (effective - row["started_at"]).total_seconds())
            out.append({
                "session_id": row["session_id"], "local_date": s.local, "mac_address": s.mac,
                "kid_id": self.devices.get(s.mac, {}).get("kid_id"), "agent_id": row["agent_id"],
                "mode_type": row["mode_type"], "is_game": self.is_game(row), "started_at": row["started_at"],
                "ended_at": row["ended_at"], "status": status, "completion_status": row["completion_status"],
                "ended_at_effective": effective, "duration_seconds": duration,
                "attempts": attempts, "correct": correct, "accuracy": ratio(correct, attempts),
                "interaction_count": row["interaction_count"], "stored_duration_seconds": row["duration_seconds"],
                "duration_disagrees": duration_disagrees(row),
            })
        return out

    def game_sessions(self) -> list[dict]:
        return [r for r in self.all_game_sessions if self.first_day <= r["local_date"] <= self.last_day]

    def game_daily(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for r in self.game_sessions():
            if not r["is_game"]:
                continue
            g = groups.setdefault((r["local_date"], r["mac_address"]), {
                "local_date": r["local_date"], "mac_address": r["mac_address"], "sessions": 0, "completed_sessions": 0,
                "attempts": 0, "correct": 0, "accuracy": None, "total_duration_seconds": []})
            g["sessions"] += 1
            g["completed_sessions"] += r["status"] == "completed"
            g["attempts"] += r["attempts"]
            g["correct"] += r["correct"]
            g["total_duration_seconds"].append(r["duration_seconds"])
        for g in groups.values():
            g["accuracy"] = ratio(g["correct"], g["attempts"])
            # RULES['sums']: seconds are measured; open sessions have none, and a day of only open ones sums to null.
            g["total_duration_seconds"] = sql_sum(g["total_duration_seconds"])
        return list(groups.values())

    @cached_property
    def attempt_kids(self) -> list[tuple[int, Event]]:
        """(kid, attempt): the kid is the device's (ai_device.kid_id); attempts of devices without one are left out."""
        out = []
        for a in self.attempts:
            kid = self.devices.get(a.mac, {}).get("kid_id")
            if kid is not None:
                out.append((kid, a))
        return out

    def learning_progress(self) -> list[dict]:
        out = []
        for day in self.days:
            groups: dict[tuple, list[Event]] = defaultdict(list)
            for kid, a in self.attempt_kids:
                if a.local <= day:
                    # RULES['games']: subject is the game_type, topic the question_type ('general' when null).
                    topic = a.row["question_type"] if a.row["question_type"] is not None else "general"
                    groups[(kid, a.row["game_type"], topic)].append(a)
            for (kid, subject, topic), atts in groups.items():
                out.append({"as_of_date": day, "kid_id": kid, "subject": subject, "topic": topic, **_learning(atts)})
        return out

    def device_progress(self) -> list[dict]:
        out = []
        for day in self.days:
            per: dict[str, dict] = {}

            def row(mac: str) -> dict:
                return per.setdefault(mac, {
                    "as_of_date": day, "mac_address": mac, "total_active_days": 0, "user_turns": 0, "game_sessions": 0,
                    "attempts": 0, "correct": 0, "accuracy": None, "stories_completed": 0, "songs_completed": 0,
                    "listen_seconds": [], "rfid_scans": 0, "last_active_at": None})

            for mac, active in self.active_days.items():
                n = sum(1 for d in active if d <= day)
                if n:
                    row(mac)["total_active_days"] = n
            for e in self.user_turns:
                if e.local <= day:
                    row(e.mac)["user_turns"] += 1
            # Choice: a device whose only rows are sessions that are not games has no counted event, so no row.
            for e in self.games:
                if e.local <= day:
                    row(e.mac)["game_sessions"] += 1
            for e in self.attempts:
                if e.local <= day:
                    r = row(e.mac)
                    r["attempts"] += 1
                    r["correct"] += bool(e.row["is_correct"])
            for e in self.playback:
                if e.local > day:
                    continue
                kind, ctype = e.row["event_type"], e.row["content_type"]
                if kind == "complete" and ctype == "story":
                    row(e.mac)["stories_completed"] += 1
                if kind == "complete" and ctype == "music":
                    row(e.mac)["songs_completed"] += 1
                if kind in ("complete", "pause"):
                    row(e.mac)["listen_seconds"].append(e.row["position_seconds"])
            for e in self.scans:
                if e.local <= day:
                    row(e.mac)["rfid_scans"] += 1
            for _, e in self.qualifying:
                if e.local <= day:
                    r = row(e.mac)
                    r["last_active_at"] = e.at if r["last_active_at"] is None else max(r["last_active_at"], e.at)
            for r in per.values():
                r["accuracy"] = ratio(r["correct"], r["attempts"])
                # RULES['sums']: null without a complete or pause event.
                # Choice: ... or when every one of them left position_seconds null (SQL's SUM: nothing reported).
                r["listen_seconds"] = sql_sum(r["listen_seconds"])
            out.extend(per.values())
        return out

    # ---- tokens ----

    @cached_property
    def _agents_and_models(self) -> tuple[dict, dict]:
        return ({a["id"]: a for a in self.src.cheeko["ai_agent"]}, {m["id"]: m for m in self.src.cheeko["ai_model_config"]})

    def _price(self, mac: str) -> tuple[str, tuple[Decimal, Decimal]]:
        """(llm_model, (input, output) per million) for a device (RULES['prices'])."""
        device = self.devices.get(mac)
        agents, models = self._agents_and_models
        agent = agents.get(device["agent_id"]) if device and device["agent_id"] is not None else None
        model = models.get(agent["llm_model_id"]) if agent and agent["llm_model_id"] is not None else None
        code = model["model_code"] if model else None
        # Choice: a model the sheet does not list is priced (and named) 'default'.
        if code is not None and code in self.prices["models"]:
            return code, tuple(map(price, self.prices["models"][code]))
        return "default", tuple(map(price, self.prices["default"]))

    @cached_property
    def token_rows(self) -> list[dict]:
        """device_token_usage rows with a valid MAC, each with its estimated cost (RULES['prices'], ['money']: rounded
        once, per row)."""
        out = []
        for row in self.src.cheeko["device_token_usage"]:
            mac = normalise_mac(row["mac_address"])
            if mac is None:
                continue
            model, prices = self._price(mac)
            out.append({**row, "_mac": mac, "_model": model, "_cost": usage_cost(row, prices)})
        return out

    @cached_property
    def all_token_usage_daily(self) -> list[dict]:
        owners = {mac: d["user_id"] for mac, d in self.devices.items()}
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in self.token_rows:
            groups[(r["usage_date"], r["_mac"])].append(r)
        out = []
        for (day, mac), rows in groups.items():
            model, _ = self._price(mac)
            sums = {c: sql_sum(r[c] for r in rows) for c in TOKEN_SUMS}
            # Two spellings of a device on one day are two rows: each priced and rounded (RULES['money']), then summed.
            cost = money_sum(r["_cost"] for r in rows)
            out.append({"usage_date": day, "mac_address": mac, "owner_user_id": owners.get(mac), "llm_model": model,
                        **sums, "avg_ttft_seconds": _weighted_ttft(rows), "est_cost_usd": cost,
                        "price_sheet_version": self.prices["version"], "_rows": rows})
        return out

    def token_usage_daily(self) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "_rows"} for r in self.all_token_usage_daily
                if self.first_day <= r["usage_date"] <= self.last_day]

    def token_usage_monthly(self) -> list[dict]:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in self.all_token_usage_daily:
            if r["usage_date"] <= self.last_day:
                groups[(r["usage_date"].replace(day=1), r["owner_user_id"])].append(r)
        out = []
        for (month, owner), days in groups.items():
            rows = [raw for d in days for raw in d["_rows"]]
            out.append({"month": month, "owner_user_id": owner, "devices": len({d["mac_address"] for d in days}),
                        **{c: sql_sum(d[c] for d in days) for c in ("input_tokens", "output_tokens", "total_tokens",
                                                                      "message_count", "session_count")},
                        "avg_ttft_seconds": _weighted_ttft(rows), "est_cost_usd": money_sum(d["est_cost_usd"] for d in days),
                        "price_sheet_version": self.prices["version"]})
        return out

    # ---- fleet ----

    def fleet_daily(self) -> list[dict]:
        # One row for every day of the range (the contract): counts 0 on a quiet day, measured sums (tokens, cost)
        # null when nobody reported them (RULES['sums']), ratios null.
        day_of = lambda at: at.astimezone(UTC).date()  # noqa: E731
        rows = {d: {"day": d, "active_devices": set(), "new_devices": 0, "new_users": 0, "user_turns": 0,
                    "game_sessions": 0, "attempts": 0, "_correct": 0, "accuracy": None, "stories_completed": 0,
                    "songs_completed": 0, "total_tokens": None, "est_cost_usd": None, "avg_ttft_seconds": None,
                    "p50_ttft_seconds": None, "p95_ttft_seconds": None, "_tokens": []} for d in self.days}
        for _, e in self.qualifying:
            if (r := rows.get(day_of(e.at))) is not None:
                r["active_devices"].add(e.mac)
        # RULES['devices']: a device (not a row) is new on the UTC day of its earliest create_date; rows with an invalid
        # MAC are no device.
        for created in self.device_created.values():
            if (r := rows.get(day_of(created))) is not None:
                r["new_devices"] += 1
        for u in self.src.cheeko["sys_user"]:
            if u["created_at"] is not None and (r := rows.get(day_of(u["created_at"]))) is not None:
                r["new_users"] += 1
        for e in self.user_turns:
            if (r := rows.get(day_of(e.at))) is not None:
                r["user_turns"] += 1
        for e in self.games:
            if (r := rows.get(day_of(e.at))) is not None:
                r["game_sessions"] += 1
        for e in self.attempts:
            if (r := rows.get(day_of(e.at))) is not None:
                r["attempts"] += 1
                r["_correct"] += bool(e.row["is_correct"])
        for e in self.playback:
            if e.row["event_type"] == "complete" and (r := rows.get(day_of(e.at))) is not None:
                r["stories_completed"] += e.row["content_type"] == "story"
                r["songs_completed"] += e.row["content_type"] == "music"
        for t in self.all_token_usage_daily:
            if (r := rows.get(t["usage_date"])) is not None:
                r["_tokens"].append(t)
        for r in rows.values():
            r["active_devices"] = len(r["active_devices"])
            r["accuracy"] = ratio(r.pop("_correct"), r["attempts"])
            tokens = r.pop("_tokens")
            r["total_tokens"] = sql_sum(t["total_tokens"] for t in tokens)
            r["est_cost_usd"] = money_sum(t["est_cost_usd"] for t in tokens)
            r["avg_ttft_seconds"] = _weighted_ttft([raw for t in tokens for raw in t["_rows"]])
            ttfts = [float(t["avg_ttft_seconds"]) for t in tokens if t["avg_ttft_seconds"] is not None]
            r["p50_ttft_seconds"] = quantile_cont(ttfts, 0.5)
            r["p95_ttft_seconds"] = quantile_cont(ttfts, 0.95)
        return list(rows.values())

    # ---- Cognova ----

    def _utc_day(self, at: dt.datetime | None) -> dt.date | None:
        """The UTC date of an event in range and not in the future, else None."""
        if at is None or at > self.cutoff:
            return None
        day = at.astimezone(UTC).date()
        return day if self.first_day <= day <= self.last_day else None

    def cognova_cost_daily(self) -> list[dict]:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in self.src.cognova["token_usage"]:
            if (day := self._utc_day(row["created_at"])) is not None:
                groups[(day, row["source"])].append(row)
        out = []
        for (day, source), rows in groups.items():
            inp, outp = sql_sum(r["input_tokens"] for r in rows), sql_sum(r["output_tokens"] for r in rows)
            reported = [r for r in rows if r["input_tokens"] is not None or r["output_tokens"] is not None]
            out.append({"day": day, "source": source, "operations": len(rows), "input_tokens": inp, "output_tokens": outp,
                        # The contract: over the rows that report either part, a null part counting 0; null if none.
                        "total_tokens": sql_sum((r["input_tokens"] or 0) + (r["output_tokens"] or 0) for r in reported),
                        "cost_usd": money_sum(money(r["cost_usd"]) for r in rows),
                        "duration_ms": sql_sum(r["duration_ms"] for r in rows)})
        return out

    def cognova_agent_runs_daily(self) -> list[dict]:
        names = {a["id"]: a["name"] for a in self.src.cognova["cron_agents"]}
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in self.src.cognova["cron_agent_runs"]:
            if (day := self._utc_day(row["started_at"])) is not None:
                groups[(day, row["agent_id"])].append(row)
        out = []
        for (day, agent), rows in groups.items():
            count = lambda s: sum(1 for r in rows if r["status"] == s)  # noqa: E731
            running = [r for r in rows if r["status"] == "running"]
            stale = sum(1 for r in running if self.as_of - r["started_at"] > STALE_AFTER)
            finished = count("success") + count("error") + count("budget_exceeded") + count("cancelled")
            durations = [float(r["duration_ms"]) for r in rows
                         if r["status"] in ("success", "error", "budget_exceeded", "cancelled") and r["duration_ms"] is not None]
            out.append({"day": day, "agent_id": agent, "agent_name": names.get(agent), "runs": len(rows),
                        "success": count("success"), "error": count("error"), "budget_exceeded": count("budget_exceeded"),
                        "cancelled": count("cancelled"), "running": len(running) - stale, "stale": stale,
                        "success_rate": ratio(count("success"), finished),
                        "p50_duration_ms": quantile_cont(durations, 0.5), "p95_duration_ms": quantile_cont(durations, 0.95),
                        # RULES['sums']: null for an agent-day whose runs all lack a cost (still running).
                        "cost_usd": money_sum(money(r["cost_usd"]) for r in rows),
                        "input_tokens": sql_sum(r["input_tokens"] for r in rows),
                        "output_tokens": sql_sum(r["output_tokens"] for r in rows)})
        return out

    def cognova_activity_daily(self) -> list[dict]:
        rows = {d: {"day": d, "conversations_started": 0, "messages": 0, "chat_cost_usd": [], "tasks_created": 0,
                    "tasks_completed": 0, "reminders_due": 0, "reminders_notified": 0, "hook_events": 0,
                    "blocked_hook_events": 0} for d in self.days}

        def bump(at, column, by=1):
            if (day := self._utc_day(at)) is not None:
                rows[day][column] += by

        for c in self.src.cognova["conversations"]:
            bump(c["started_at"], "conversations_started")
        for m in self.src.cognova["conversation_messages"]:
            bump(m["created_at"], "messages")
            if (day := self._utc_day(m["created_at"])) is not None:
                rows[day]["chat_cost_usd"].append(money(m["cost_usd"]))
        for t in self.src.cognova["tasks"]:
            bump(t["created_at"], "tasks_created")  # Choice: soft-deleted tasks were still created.
            bump(t["completed_at"], "tasks_completed")
        for r in self.src.cognova["reminders"]:
            # metrics.md 'Resolved details': remind_at is a schedule, not an event: the future rule does not apply.
            day = r["remind_at"].astimezone(UTC).date()
            if self.first_day <= day <= self.last_day:
                rows[day]["reminders_due"] += 1
                rows[day]["reminders_notified"] += bool(r["notified"])
        for h in self.src.cognova["hook_events"]:
            bump(h["created_at"], "hook_events")
            if h["blocked"]:
                bump(h["created_at"], "blocked_hook_events")
        for r in rows.values():
            # RULES['sums']: money is measured: null on a day no message reported a cost (the counts beside it are 0).
            r["chat_cost_usd"] = money_sum(r["chat_cost_usd"])
        return list(rows.values())

    # ---- the app's running counters (metrics.md 'Overrides': the app's analytics tables are the app's) ----

    @cached_property
    def app_progress(self) -> dict[str, dict]:
        """analytics_user_progress rows with a valid MAC by normalised MAC; of two spellings the most recently
        updated wins (updated_at, then id)."""
        # Choice: a null updated_at is older than any time.
        order = lambda r: (r["updated_at"] is not None, r["updated_at"] or dt.datetime.min, r["id"])  # noqa: E731
        out = {}
        for row in sorted(self.src.cheeko["analytics_user_progress"], key=order):
            mac = normalise_mac(row["mac_address"])
            if mac is not None:
                out[mac] = row
        return out

    def app_counter_drift(self) -> list[dict]:
        """The app's counters against the exact values at the moment the app last wrote them (the row's updated_at,
        capped at the as-of time): events up to then, streaks as of the device's local date then."""
        from pipelines.marts import DRIFT_COUNTERS

        out = []
        for mac, app in self.app_progress.items():
            compared_at = min(app["updated_at"] or self.as_of, self.as_of)
            counted_to = compared_at + FUTURE_GRACE  # the as-of rule's grace for clocks, at the app's moment
            as_of_date = self.local_date(mac, compared_at)
            games = sum(1 for e in self.games if e.mac == mac and e.at <= counted_to)
            attempts = [e for e in self.attempts if e.mac == mac and e.at <= counted_to]
            correct = sum(1 for e in attempts if e.row["is_correct"])
            seen = [e.at for _, e in self.qualifying if e.mac == mac and e.at <= counted_to]
            # A day is active or not: an event later on the as-of date itself counts for the streak.
            s = streak(self.active_days.get(mac, set()), as_of_date) or {"current_streak_days": 0, "longest_streak_days": 0}
            # Choice: an attempt whose is_correct is null is wrong (wrong = attempts - correct, as DRIFT_COUNTERS has it).
            exact = {"games_played": games, "correct_answers": correct,
                     "wrong_answers": len(attempts) - correct, "current_streak": s["current_streak_days"],
                     "longest_streak": s["longest_streak_days"]}
            row = {"mac_address": mac, "kid_id": app["kid_id"], "compared_at": compared_at, "as_of_date": as_of_date}
            drifts = []
            for counter, (column, _) in DRIFT_COUNTERS.items():
                drift = None if app[column] is None else app[column] - exact[counter]
                row |= {f"app_{counter}": app[column], f"warehouse_{counter}": exact[counter], f"{counter}_drift": drift}
                if drift is not None:
                    drifts.append(abs(drift))
            app_last, warehouse_last = app["last_activity_at"], max(seen, default=None)
            seconds = None if app_last is None or warehouse_last is None else (app_last - warehouse_last).total_seconds()
            # The contract (marts.py, "drifting"): an app that claims activity the warehouse never saw drifts; an
            # app that reported no last activity (null) does not, whatever the warehouse saw.
            claims_unseen = app_last is not None and warehouse_last is None
            out.append(row | {"app_last_activity_at": app_last, "warehouse_last_activity_at": warehouse_last,
                              "last_activity_drift_seconds": seconds, "max_count_drift": max(drifts, default=0),
                              "drifting": any(d != 0 for d in drifts) or (seconds is not None and abs(seconds) > 1)
                                          or claims_unseen})
        return out

    # ---- all of them ----

    def marts(self) -> dict[str, list[dict]]:
        from pipelines.marts import MARTS

        return {m.name: getattr(self, m.name)() for m in MARTS}


TOKEN_SUMS = ("input_tokens", "output_tokens", "total_tokens", "input_audio_tokens", "input_text_tokens",
              "input_cached_tokens", "output_audio_tokens", "output_text_tokens", "message_count", "session_count",
              "session_duration_seconds", "total_response_duration_seconds")


def _weighted_ttft(rows: list[dict]) -> float | None:
    """Σ(avg_ttft × messages) / Σ(messages) over rows with both set; null if none."""
    both = [r for r in rows if r["avg_ttft_seconds"] is not None and r["message_count"] is not None]
    den = sum(r["message_count"] for r in both)
    if not both or not den:
        return None
    return float(sum(Decimal(r["avg_ttft_seconds"]) * r["message_count"] for r in both)) / den


def _learning(atts: list[Event]) -> dict:
    correct = sum(1 for a in atts if a.row["is_correct"])
    # Latest first: event time, then attempt_number, then id.
    # Choice: a null attempt_number orders before every number (NULLS FIRST ascending), so it is the older of a tie.
    latest = sorted(atts, key=lambda a: (a.at, a.row["attempt_number"] is not None, a.row["attempt_number"] or 0,
                                         a.row["id"]), reverse=True)[:20]
    recent = sum(1 for a in latest if a.row["is_correct"]) / len(latest)
    if len(atts) < 5:
        mastery = "needs_data"
    elif recent < 0.5:
        mastery = "struggling"
    elif recent < 0.8:
        mastery = "practicing"
    else:
        mastery = "mastered"
    return {"attempts": len(atts), "correct": correct, "accuracy": correct / len(atts), "recent_accuracy": recent,
            "mastery": mastery, "last_practiced_at": max(a.at for a in atts)}


def reference_marts(sources: Sources, as_of_time: dt.datetime, first_day: dt.date, last_day: dt.date,
                    prices: dict | None = None) -> dict[str, list[dict]]:
    """Every mart of ``pipelines.marts.MARTS``, as the contract defines it."""
    return Reference(sources, as_of_time, first_day, last_day, prices).marts()


def published_rows(marts: dict[str, list[dict]], as_of_date: dt.date) -> dict[str, list[dict]]:
    """What ``warehouse.device_streaks``, ``warehouse.device_progress`` and ``warehouse.learning_progress`` should
    hold after a publish as of ``as_of_date``: the marts' rows of that date, every column (``as_of_date``
    included), one row per key of :data:`PUBLISHED`. Every kid is published (the table has no foreign key)."""
    return {name: [r for r in marts[name] if r["as_of_date"] == as_of_date] for name in PUBLISHED}


def quality_counts(sources: Sources, as_of_time: dt.datetime) -> dict[str, int]:
    """The data-quality counts, over every operational row (future and duplicate rows included)."""
    cheeko = sources.cheeko
    cutoff = as_of_time.astimezone(UTC) + FUTURE_GRACE
    # RULES['mac']: the check counts the event tables, device_token_usage and ai_device.
    mac_tables = ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log",
                  "device_token_usage", "analytics_game_sessions", "ai_device")
    future = 0
    for table in EVENT_TIMES:
        future += sum(1 for r in cheeko[table] if (at := event_time(table, r)) is not None and at > cutoff)
    duplicates = sum(len(cheeko[t]) - len({natural_key(t, r) for r in cheeko[t]}) for t in NATURAL_KEYS)
    # Sessions that started by the cut-off, whatever their MAC (the check counts the rows the marts leave out too).
    disagree = sum(1 for s in cheeko["analytics_game_sessions"] if s["started_at"] <= cutoff and duration_disagrees(s))
    # The drift check is as of the run's as-of time; the day range plays no part in app_counter_drift.
    day = as_of_time.astimezone(UTC).date()
    drifting = sum(1 for r in Reference(sources, as_of_time, day, day).app_counter_drift() if r["drifting"])
    return {
        "mac_unnormalisable": sum(1 for t in mac_tables for r in cheeko[t] if normalise_mac(r["mac_address"]) is None),
        "timezone_unknown": sum(1 for t in ("kid_profile", "parent_profile") for r in cheeko[t] if zone_is_unknown(r["timezone"])),
        "future_timestamps": future,
        "duplicate_events": duplicates,
        # RULES['stored_values']: a null total reported nothing and never disagrees; a null part counts 0.
        "token_totals_mismatch": sum(1 for r in cheeko["device_token_usage"] if r["total_tokens"] is not None
                                     and r["total_tokens"] != (r["input_tokens"] or 0) + (r["output_tokens"] or 0)),
        "session_duration_disagree": disagree,
        "app_counter_drift": drifting,
    }
