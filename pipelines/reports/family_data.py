"""One kid's week for the weekly parent email, and who receives which email.

Every query is bound to one ``kid_id`` and reads only that kid's devices,
so an email can hold nothing of another family. :func:`build` also checks
what it returns against the kid it was asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from pipelines import postgres
from pipelines.reports.admin_data import query

MAX_TIPS = 3


@dataclass(frozen=True)
class Recipient:
    """A kid whose parent wants the weekly email."""

    kid_id: int
    kid_name: str
    parent_user_id: int
    email: str | None
    timezone: str | None
    language: str | None


# The app's tables read directly to find the parents who want the weekly email (checked when a database
# is adopted, pipelines.adoption).
APP_COLUMNS = {
    "kid_profile": ("id", "name", "nickname", "user_id"),
    "parent_profile": ("user_id", "email", "timezone", "language", "weekly_report", "email_notifications"),
    "sys_user": ("id", "email", "status"),
}


def recipients(url: str) -> list[Recipient]:
    """Kids whose parent has ``weekly_report`` and ``email_notifications`` on (unset means on, the defaults)."""
    with postgres.read_only(url) as conn:
        rows = conn.execute(
            "SELECT k.id, coalesce(nullif(trim(k.nickname), ''), k.name), p.user_id, "
            "coalesce(nullif(trim(p.email), ''), nullif(trim(u.email), '')), p.timezone, p.language "
            "FROM kid_profile k JOIN parent_profile p ON p.user_id = k.user_id LEFT JOIN sys_user u ON u.id = k.user_id "
            "WHERE coalesce(p.weekly_report, true) AND coalesce(p.email_notifications, true) "
            "AND coalesce(u.status, 1) = 1 ORDER BY k.id").fetchall()
    return [Recipient(*row) for row in rows]


def build(con: duckdb.DuckDBPyConnection, recipient: Recipient, week_start: dt.date) -> dict | None:
    """The kid's Monday-to-Sunday week starting ``week_start``, or None when the kid did nothing that week."""
    last_day = week_start + dt.timedelta(days=6)
    values = {"kid_id": recipient.kid_id, "first_day": week_start, "last_day": last_day,
              "before_day": week_start - dt.timedelta(days=1)}
    days = query(con, "family_days", values)
    active_days = sum(1 for d in days if d["active"])
    if not active_days:
        return None
    seconds = sum(d["game_seconds"] + d["listen_seconds"] + d["talk_seconds"] for d in days)
    streak = query(con, "family_streak", values)[0]
    subjects = query(con, "family_subjects", values)
    mastery = query(con, "family_mastery", values)
    content = query(con, "family_content", values)
    data = {
        "kid_id": recipient.kid_id,
        "kid_name": recipient.kid_name,
        "language": recipient.language or "en",
        "week_start": week_start.isoformat(),
        "active_days": active_days,
        "minutes": round(seconds / 60),
        "minutes_by_kind": {kind: round(sum(d[f"{kind}_seconds"] for d in days) / 60) for kind in ("game", "listen", "talk")},
        "days": days,
        "streak_days": streak["current_streak_days"],
        "subjects": subjects,
        "mastery_changes": mastery,
        "stories": [c for c in content if c["content_type"] == "story"],
        "songs": [c for c in content if c["content_type"] == "music"],
    }
    data["tips"] = tips(data)
    return data


def tips(data: dict) -> list[dict]:
    """One to three things to try at home, chosen from what the week showed (keys of the strings files).

    Topics and subjects are the app's names; the email shows each in the parent's language.
    """
    chosen: list[dict] = []
    practising = [m for m in data["mastery_changes"] if m["now"] in ("struggling", "practicing")]
    weakest = min(data["subjects"], key=lambda s: (s["accuracy"], -s["attempts"]), default=None)
    if practising:
        chosen.append({"key": "practise_topic", "topic": practising[0]["topic"]})
    elif weakest and weakest["attempts"] >= 5 and weakest["accuracy"] < 0.7:
        chosen.append({"key": "practise_subject", "subject": weakest["subject"]})
    if data["stories"]:
        chosen.append({"key": "retell_story", "title": data["stories"][0]["title"]})
    if data["active_days"] < 4:
        chosen.append({"key": "routine"})
    mastered = [m for m in data["mastery_changes"] if m["now"] == "mastered"]
    if mastered:
        chosen.append({"key": "celebrate", "topic": mastered[0]["topic"]})
    if data["songs"]:
        chosen.append({"key": "sing_along", "title": data["songs"][0]["title"]})
    if not chosen:
        chosen.append({"key": "ask_about_day"})
    return chosen[:MAX_TIPS]
