"""The marts, computed again in plain Python straight from the operational rows.

An independent reference for ``pipelines/rollups.py`` and ``sql/``: written
from ``shared/design/metrics.md`` and the contract in ``pipelines/marts.py``
(mart names, grains, columns, :data:`pipelines.marts.RULES`) alone, never from
the SQL. It reads whole tables with ``SELECT *`` through
:func:`pipelines.postgres.connect` and does everything else with the standard
library, so a disagreement with the warehouse points at one of the two.

Where both documents leave a choice open, the choice made here is written
next to the code that makes it (search for "Choice:").

Entry points:

- :func:`load_sources` reads the operational rows once;
- :func:`reference_marts` gives every mart in ``MARTS`` as lists of dicts keyed
  by the contract's column names;
- :func:`write_back_rows` gives what ``analytics_streaks``,
  ``analytics_user_progress`` and ``kid_learning_progress`` should hold;
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
from decimal import Decimal
from functools import cached_property
from pathlib import Path

from pipelines import postgres

UTC = dt.UTC
FUTURE_GRACE = dt.timedelta(minutes=5)
ABANDON_AFTER = dt.timedelta(minutes=30)
STALE_AFTER = dt.timedelta(hours=6)
PRICE_SHEET = Path(__file__).resolve().parent.parent / "pipelines" / "price_sheet.toml"
HEX = set("0123456789abcdef")
IANA = frozenset(zoneinfo.available_timezones())

CHEEKO_TABLES = (
    "ai_device", "kid_profile", "parent_profile", "sys_user", "ai_agent", "ai_model_config",
    "ai_agent_chat_history", "analytics_game_sessions", "analytics_game_attempts", "analytics_media_playback",
    "rfid_scan_log", "device_token_usage",
)
COGNOVA_TABLES = ("token_usage", "cron_agents", "cron_agent_runs", "conversations", "conversation_messages", "tasks",
                  "reminders", "hook_events")
# PostgreSQL `real` columns: the warehouse holds them as FLOAT (binary float32), psycopg parses their
# shortest decimal text; both are made the same float32 value here.
REAL_COLUMNS = {
    ("token_usage", "cost_usd"), ("cron_agent_runs", "cost_usd"), ("conversation_messages", "cost_usd"),
    ("conversations", "total_cost_usd"),
}


# -- shared rules -----------------------------------------------------------------------------------


def normalise_mac(raw: str | None) -> str | None:
    """RULES['mac']: lower-case, drop ':', '-', '.' and spaces; 12 hex digits or None."""
    if raw is None:
        return None
    s = raw.lower()
    for ch in ":-. ":
        s = s.replace(ch, "")
    if len(s) != 12 or not set(s) <= HEX:
        return None
    return ":".join(s[i:i + 2] for i in range(0, 12, 2))


def zone_is_unknown(name: str | None) -> bool:
    """A profile's zone counts for the timezone_unknown check: set, but not an IANA name."""
    return name is not None and name not in IANA


def zone_of(name: str) -> dt.tzinfo:
    """An IANA zone, or UTC for a name that is not one."""
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
    """SUM as SQL has it: nulls ignored, null when nothing is left."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


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


def load_price_sheet(path: Path = PRICE_SHEET) -> dict:
    """``{"version", "default": (in, out), "models": {code: (in, out)}}`` from the price sheet."""
    raw = tomllib.loads(path.read_text())
    pair = lambda t: (float(t["input_per_million"]), float(t["output_per_million"]))  # noqa: E731
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
    def devices(self) -> dict[str, dict]:
        """ai_device by normalised MAC (RULES['local_day']: matched by normalised MAC)."""
        out = {}
        for row in sorted(self.src.cheeko["ai_device"], key=lambda r: str(r["id"])):
            mac = normalise_mac(row["mac_address"])
            if mac is not None:
                out.setdefault(mac, row)
        return out

    @cached_property
    def zones(self) -> dict[str, dt.tzinfo]:
        kids = {k["id"]: k for k in self.src.cheeko["kid_profile"]}
        parents = {p["user_id"]: p for p in self.src.cheeko["parent_profile"] if p["user_id"] is not None}
        out = {}
        for mac, device in self.devices.items():
            kid = kids.get(device["kid_id"]) if device["kid_id"] is not None else None
            owner = parents.get(device["user_id"]) if device["user_id"] is not None else None
            # Choice: "else" falls through on a missing zone (null), not on an unknown one:
            # a kid whose zone is set but not IANA counts as UTC (it does not borrow the owner's).
            name = kid["timezone"] if kid and kid["timezone"] is not None else owner["timezone"] if owner else None
            out[mac] = UTC if name is None else zone_of(name)
        return out

    def local_date(self, mac: str, at: dt.datetime) -> dt.date:
        return at.astimezone(self.zones.get(mac, UTC)).date()

    # ---- events (rules: mac, as_of, duplicates) ----

    def _events(self, table: str, time_col: str, key_cols: tuple[str, ...]) -> list[Event]:
        seen, out = set(), []
        for row in sorted(self.src.cheeko[table], key=lambda r: str(r["id"])):
            mac = normalise_mac(row["mac_address"])
            at = row[time_col]
            # Choice: an invalid MAC leaves the row out of every mart, not only the per-device ones.
            if mac is None or at is None or at > self.cutoff:
                continue
            key = tuple(mac if c == "mac_address" else row[c] for c in key_cols)
            if key in seen:
                continue
            seen.add(key)
            out.append(Event(mac, at, self.local_date(mac, at), row))
        return out

    @cached_property
    def chats(self) -> list[Event]:
        return self._events("ai_agent_chat_history", "created_at", ("mac_address", "session_id", "chat_type", "created_at"))

    @cached_property
    def user_turns(self) -> list[Event]:
        return [e for e in self.chats if e.row["chat_type"] == 1]

    @cached_property
    def attempts(self) -> list[Event]:
        return self._events("analytics_game_attempts", "attempted_at", ("session_id", "question_key", "attempted_at"))

    @cached_property
    def playback(self) -> list[Event]:
        return self._events("analytics_media_playback", "occurred_at", ("mac_address", "content_id", "event_type", "occurred_at"))

    @cached_property
    def scans(self) -> list[Event]:
        return self._events("rfid_scan_log", "scanned_at", ("uid", "mac_address", "scanned_at"))

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
        """Game sessions with a valid MAC that started by the as-of time (+5 minutes)."""
        out = []
        for row in self.src.cheeko["analytics_game_sessions"]:
            mac = normalise_mac(row["mac_address"])
            if mac is None or row["started_at"] > self.cutoff:
                continue
            out.append(Event(mac, row["started_at"], self.local_date(mac, row["started_at"]), row))
        return out

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
            # Choice: a stored total that is null disagrees with nothing.
            disagree = ((row["total_questions"] is not None and row["total_questions"] != attempts)
                        or (row["correct_answers"] is not None and row["correct_answers"] != correct))
            out.append({
                "session_id": row["session_id"], "local_date": s.local, "mac_address": s.mac, "kid_id": row["kid_id"],
                "game_type": row["game_type"], "started_at": row["started_at"], "ended_at": row["ended_at"],
                "status": status, "ended_at_effective": effective, "duration_seconds": duration,
                "attempts": attempts, "correct": correct, "accuracy": ratio(correct, attempts),
                "stored_total_questions": row["total_questions"], "stored_correct_answers": row["correct_answers"],
                "totals_disagree": disagree,
            })
        return out

    def game_sessions(self) -> list[dict]:
        return [r for r in self.all_game_sessions if self.first_day <= r["local_date"] <= self.last_day]

    def game_daily(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for r in self.game_sessions():
            g = groups.setdefault((r["local_date"], r["mac_address"]), {
                "local_date": r["local_date"], "mac_address": r["mac_address"], "sessions": 0, "completed_sessions": 0,
                "attempts": 0, "correct": 0, "accuracy": None, "total_duration_seconds": 0.0})
            g["sessions"] += 1
            g["completed_sessions"] += r["status"] == "completed"
            g["attempts"] += r["attempts"]
            g["correct"] += r["correct"]
            g["total_duration_seconds"] += r["duration_seconds"] or 0.0
        for g in groups.values():
            g["accuracy"] = ratio(g["correct"], g["attempts"])
        return list(groups.values())

    @cached_property
    def attempt_kids(self) -> list[tuple[int, Event]]:
        """(kid, attempt): the session's kid_id, else the device's; attempts with neither are left out."""
        session_kid = {s["session_id"]: s["kid_id"] for s in self.src.cheeko["analytics_game_sessions"]}
        out = []
        for a in self.attempts:
            kid = session_kid.get(a.row["session_id"])
            if kid is None:
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
                    groups[(kid, a.row["subject"], a.row["topic"])].append(a)
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
                    "listen_seconds": 0, "rfid_scans": 0, "last_active_at": None})

            for mac, active in self.active_days.items():
                n = sum(1 for d in active if d <= day)
                if n:
                    row(mac)["total_active_days"] = n
            for e in self.user_turns:
                if e.local <= day:
                    row(e.mac)["user_turns"] += 1
            for e in self.sessions:
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
                    row(e.mac)["listen_seconds"] += e.row["position_seconds"] or 0
            for e in self.scans:
                if e.local <= day:
                    row(e.mac)["rfid_scans"] += 1
            for _, e in self.qualifying:
                if e.local <= day:
                    r = row(e.mac)
                    r["last_active_at"] = e.at if r["last_active_at"] is None else max(r["last_active_at"], e.at)
            for r in per.values():
                r["accuracy"] = ratio(r["correct"], r["attempts"])
            out.extend(per.values())
        return out

    # ---- tokens ----

    @cached_property
    def _agents_and_models(self) -> tuple[dict, dict]:
        return ({a["id"]: a for a in self.src.cheeko["ai_agent"]}, {m["id"]: m for m in self.src.cheeko["ai_model_config"]})

    def _price(self, mac: str) -> tuple[str, tuple[float, float]]:
        """(llm_model, (input, output) per million) for a device (RULES['prices'])."""
        device = self.devices.get(mac)
        agents, models = self._agents_and_models
        agent = agents.get(device["agent_id"]) if device and device["agent_id"] is not None else None
        model = models.get(agent["llm_model_id"]) if agent and agent["llm_model_id"] is not None else None
        code = model["model_code"] if model else None
        # Choice: a model the sheet does not list is priced (and named) 'default'.
        if code is not None and code in self.prices["models"]:
            return code, self.prices["models"][code]
        return "default", self.prices["default"]

    @cached_property
    def token_rows(self) -> list[dict]:
        """device_token_usage rows with a valid MAC, each with its estimated cost."""
        out = []
        for row in self.src.cheeko["device_token_usage"]:
            mac = normalise_mac(row["mac_address"])
            if mac is None:
                continue
            model, (p_in, p_out) = self._price(mac)
            cost = ((row["input_tokens"] or 0) * p_in + (row["output_tokens"] or 0) * p_out) / 1e6
            out.append({**row, "_mac": mac, "_model": model, "_cost": cost})
        return out

    @cached_property
    def all_token_usage_daily(self) -> list[dict]:
        owners = {mac: d["user_id"] for mac, d in self.devices.items()}
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in self.token_rows:
            groups[(r["usage_date"], r["_mac"])].append(r)
        out = []
        for (day, mac), rows in groups.items():
            model, (p_in, p_out) = self._price(mac)
            sums = {c: sql_sum(r[c] for r in rows) for c in TOKEN_SUMS}
            cost = ((sums["input_tokens"] or 0) * p_in + (sums["output_tokens"] or 0) * p_out) / 1e6
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
                        "avg_ttft_seconds": _weighted_ttft(rows), "est_cost_usd": sum(d["est_cost_usd"] for d in days),
                        "price_sheet_version": self.prices["version"]})
        return out

    # ---- fleet ----

    def fleet_daily(self) -> list[dict]:
        # Choice: one row for every day of the range, zeros on a quiet day (likewise cognova_activity_daily).
        day_of = lambda at: at.astimezone(UTC).date()  # noqa: E731
        rows = {d: {"day": d, "active_devices": set(), "new_devices": 0, "new_users": 0, "user_turns": 0,
                    "game_sessions": 0, "attempts": 0, "_correct": 0, "accuracy": None, "stories_completed": 0,
                    "songs_completed": 0, "total_tokens": 0, "est_cost_usd": 0.0, "avg_ttft_seconds": None,
                    "p50_ttft_seconds": None, "p95_ttft_seconds": None, "_tokens": []} for d in self.days}
        for _, e in self.qualifying:
            if (r := rows.get(day_of(e.at))) is not None:
                r["active_devices"].add(e.mac)
        for d in self.src.cheeko["ai_device"]:
            if d["create_date"] is not None and (r := rows.get(day_of(d["create_date"]))) is not None:
                r["new_devices"] += 1
        for u in self.src.cheeko["sys_user"]:
            if u["created_at"] is not None and (r := rows.get(day_of(u["created_at"]))) is not None:
                r["new_users"] += 1
        for e in self.user_turns:
            if (r := rows.get(day_of(e.at))) is not None:
                r["user_turns"] += 1
        for e in self.sessions:
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
            r["total_tokens"] = sum(t["total_tokens"] or 0 for t in tokens)
            r["est_cost_usd"] = sum(t["est_cost_usd"] for t in tokens)
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
            out.append({"day": day, "source": source, "operations": len(rows), "input_tokens": inp, "output_tokens": outp,
                        "total_tokens": sum((r["input_tokens"] or 0) + (r["output_tokens"] or 0) for r in rows),
                        "cost_usd": sql_sum(r["cost_usd"] for r in rows),
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
                        # Choice: sums as SQL has them: null for an agent-day whose runs all lack a cost (still running).
                        "cost_usd": sql_sum(r["cost_usd"] for r in rows),
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
                rows[day]["chat_cost_usd"].append(m["cost_usd"])
        for t in self.src.cognova["tasks"]:
            bump(t["created_at"], "tasks_created")  # Choice: soft-deleted tasks were still created.
            bump(t["completed_at"], "tasks_completed")
        for r in self.src.cognova["reminders"]:
            # Choice: remind_at is a schedule, not an event: the future rule does not apply to it.
            day = r["remind_at"].astimezone(UTC).date()
            if self.first_day <= day <= self.last_day:
                rows[day]["reminders_due"] += 1
                rows[day]["reminders_notified"] += bool(r["notified"])
        for h in self.src.cognova["hook_events"]:
            bump(h["created_at"], "hook_events")
            if h["blocked"]:
                bump(h["created_at"], "blocked_hook_events")
        for r in rows.values():
            # Choice: a day without priced messages cost nothing (0, like the counts beside it), not null.
            r["chat_cost_usd"] = float(sum(c for c in r["chat_cost_usd"] if c is not None))
        return list(rows.values())

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
    latest = sorted(atts, key=lambda a: (a.at, a.row["question_key"]), reverse=True)[:20]
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


def write_back_rows(marts: dict[str, list[dict]], sources: Sources, as_of_date: dt.date) -> dict[str, list[dict]]:
    """What the three write-back tables should hold after a write-back as of ``as_of_date``."""
    kids = {k["id"] for k in sources.cheeko["kid_profile"]}
    at = lambda name: [r for r in marts[name] if r["as_of_date"] == as_of_date]  # noqa: E731
    return {
        "analytics_streaks": at("device_streaks"),
        "analytics_user_progress": at("device_progress"),
        # kid_learning_progress.kid_id references kid_profile: a kid the profile table lacks cannot be written.
        "kid_learning_progress": [{k: v for k, v in r.items() if k != "as_of_date"} for r in at("learning_progress")
                                  if r["kid_id"] in kids],
    }


def quality_counts(sources: Sources, as_of_time: dt.datetime) -> dict[str, int]:
    """The data-quality counts, over every operational row (future and duplicate rows included)."""
    cheeko = sources.cheeko
    cutoff = as_of_time.astimezone(UTC) + FUTURE_GRACE
    mac_tables = ("ai_agent_chat_history", "analytics_game_attempts", "analytics_media_playback", "rfid_scan_log",
                  "device_token_usage", "analytics_game_sessions")
    times = {"ai_agent_chat_history": "created_at", "analytics_game_attempts": "attempted_at",
             "analytics_media_playback": "occurred_at", "rfid_scan_log": "scanned_at", "analytics_game_sessions": "started_at"}
    keys = {"ai_agent_chat_history": ("mac_address", "session_id", "chat_type", "created_at"),
            "analytics_game_attempts": ("session_id", "question_key", "attempted_at"),
            "analytics_media_playback": ("mac_address", "content_id", "event_type", "occurred_at"),
            "rfid_scan_log": ("uid", "mac_address", "scanned_at")}
    duplicates = 0
    for table, cols in keys.items():
        rows = cheeko[table]
        natural = {tuple(normalise_mac(r[c]) or r[c] if c == "mac_address" else r[c] for c in cols) for r in rows}
        duplicates += len(rows) - len(natural)
    # Stored session totals against deduplicated, non-future attempts (any MAC), for sessions not in the future.
    seen, per_session = set(), defaultdict(lambda: [0, 0])
    for a in cheeko["analytics_game_attempts"]:
        key = (a["session_id"], a["question_key"], a["attempted_at"])
        if a["attempted_at"] > cutoff or key in seen:
            continue
        seen.add(key)
        per_session[a["session_id"]][0] += 1
        per_session[a["session_id"]][1] += bool(a["is_correct"])
    disagree = 0
    for s in cheeko["analytics_game_sessions"]:
        if s["started_at"] > cutoff:
            continue
        n, c = per_session.get(s["session_id"], (0, 0))
        if (s["total_questions"] is not None and s["total_questions"] != n) or (s["correct_answers"] is not None and s["correct_answers"] != c):
            disagree += 1
    return {
        "mac_unnormalisable": sum(1 for t in mac_tables for r in cheeko[t] if normalise_mac(r["mac_address"]) is None),
        "timezone_unknown": sum(1 for t in ("kid_profile", "parent_profile") for r in cheeko[t] if zone_is_unknown(r["timezone"])),
        "future_timestamps": sum(1 for t, c in times.items() for r in cheeko[t] if r[c] is not None and r[c] > cutoff),
        "duplicate_events": duplicates,
        "token_totals_mismatch": sum(1 for r in cheeko["device_token_usage"]
                                     if r["total_tokens"] != (r["input_tokens"] or 0) + (r["output_tokens"] or 0)),
        "session_totals_disagree": disagree,
    }
