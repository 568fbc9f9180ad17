"""When reports are due, in the recipient's own time zone (``zoneinfo``, so DST days are 23 or 25 hours)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.timezone.utc
PARENT_SEND_WEEKDAY = 0  # Monday
PARENT_SEND_HOUR = 9


class ScheduleError(ValueError):
    """A schedule setting (time zone, hour) that cannot be used; the message names it."""


def zone(name: str | None, *, setting: str = "schedule_timezone") -> ZoneInfo:
    """The IANA zone ``name``; a clear :class:`ScheduleError` when it is not one."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"{setting} is empty; it must be an IANA time zone such as 'Asia/Kolkata'")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{setting} {name!r} is not an IANA time zone (for example 'Asia/Kolkata')") from None


def local_day_window(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants of local midnight starting ``day`` and the next local midnight."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(UTC)
    return start, end


@dataclass(frozen=True)
class DueDates:
    """The admin report dates one tick should look at."""

    latest: dt.date  # the newest local day that has ended and whose send hour has come
    catch_up: tuple[dt.date, ...]  # newest first, ``latest`` included: sent (older ones marked delayed)


def admin_due_dates(now: dt.datetime, tz: ZoneInfo, schedule_hour: int, catch_up_days: int) -> DueDates:
    """Dates the admin report may be sent for at ``now``.

    The report for local day D is due from ``schedule_hour`` on D+1, local
    time. A tick at or past that hour looks at D and the ``catch_up_days - 1``
    days before it; older unsent dates are the caller's to record as skipped.
    On a spring-forward day an hour that does not exist is passed as soon as
    the clock jumps over it; on a fall-back day the hour comes twice, and the
    second tick finds the report already sent.
    """
    if not isinstance(schedule_hour, int) or not 0 <= schedule_hour <= 23:
        raise ScheduleError(f"schedule_hour must be a whole hour from 0 to 23, got {schedule_hour!r}")
    local_now = now.astimezone(tz)
    latest = local_now.date() - dt.timedelta(days=1 if local_now.hour >= schedule_hour else 2)
    return DueDates(latest, tuple(latest - dt.timedelta(days=i) for i in range(max(1, catch_up_days))))


def scheduled_at(report_date: dt.date, tz: ZoneInfo, schedule_hour: int) -> dt.datetime:
    """When the admin report for ``report_date`` was due (UTC)."""
    return dt.datetime.combine(report_date + dt.timedelta(days=1), dt.time(schedule_hour), tzinfo=tz).astimezone(UTC)


def parent_week(now: dt.datetime, tz: ZoneInfo, catch_up_days: int) -> dt.date | None:
    """The Monday of the week a parent email covers, if one is due at ``now``; else None.

    The email for the Monday-to-Sunday week W is due from 09:00 on the Monday
    after it, in the parent's zone, and is sent until ``catch_up_days`` days
    after that; a later tick leaves it (the next Monday brings a new one).
    """
    local_now = now.astimezone(tz)
    monday = local_now.date() - dt.timedelta(days=(local_now.weekday() - PARENT_SEND_WEEKDAY) % 7)
    send_at = dt.datetime.combine(monday, dt.time(PARENT_SEND_HOUR), tzinfo=tz)
    if local_now < send_at:
        monday -= dt.timedelta(days=7)
        send_at = dt.datetime.combine(monday, dt.time(PARENT_SEND_HOUR), tzinfo=tz)
    if now - send_at.astimezone(UTC) >= dt.timedelta(days=max(1, catch_up_days)):
        return None
    return monday - dt.timedelta(days=7)
