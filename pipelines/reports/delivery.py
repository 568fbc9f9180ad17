"""Claim, send and record every report email: never twice, never lost.

One tick at a time holds an advisory lock on the Cheeko database. Under it:

1. Claims left by a tick that died are settled. ``claimed`` means no SMTP
   call was made, so the email is simply sent now; ``sending`` means the
   process died during the SMTP call: it may have been delivered, so it is
   marked ``unknown`` and never resent (a duplicate is worse than a gap the
   delivery-health section shows).
2. For each email due, the recipients without a final status are claimed in
   one committed transaction (``warehouse.email_deliveries``) before any
   SMTP call.
3. Each recipient is sent separately (their own message, their own status):
   transient failures are retried with backoff, then left as ``retry`` for
   the next tick; permanent ones are ``failed`` at once.
4. Each admin dispatch writes an ``email_report_history`` row: ``sent``,
   ``partial`` or ``failed``, the errors, the report data and ``sent_at``.

Every write goes through :mod:`pipelines.writes`; mail through :mod:`pipelines.mail`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr

from pipelines import mail, postgres, writes
from pipelines.reports import admin_data, render, schedule

ADMIN = "admin_daily"
PARENT = "parent_weekly"
LOCK_KEY = 0x7265706F727473  # pg_advisory_lock key of the report tick ("reports")
FINAL = ("sent", "failed", "unknown", "skipped")
WHOLE_REPORT = ""  # the recipient of a row that records the whole report (bad config, skipped date)
SKIP_RECORD_LIMIT = 90  # dates recorded as skipped in one tick, at most
HEALTH_DAYS = 7
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# The app's tables delivery reads and writes directly, and the columns it uses (checked when a database
# is adopted, pipelines.adoption).
APP_COLUMNS = {
    "email_report_config": ("id", "enabled", "schedule_hour", "schedule_timezone", "recipients", "sections",
                            "created_at", "updated_at"),
    "email_report_history": ("id", "report_date", "recipients", "status", "error_message", "report_data", "sent_at"),
}


class ConfigError(ValueError):
    """An ``email_report_config`` row that cannot be used; the message names the row and the field."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a transient SMTP failure is retried within one tick."""

    attempts: int = 3
    base_delay: float = 2.0  # seconds; doubled after each try

    def delays(self) -> Iterator[float]:
        for attempt in range(self.attempts - 1):
            yield self.base_delay * 2 ** attempt


@dataclass(frozen=True)
class Sender:
    """Where emails go and how they are signed."""

    transport: object  # mail.SmtpTransport or mail.OutboxTransport
    from_address: str
    retry: RetryPolicy = RetryPolicy()
    dry_run: bool = False  # render and hand to the transport (an outbox), but claim and record nothing

    @property
    def domain(self) -> str:
        address = parseaddr(self.from_address)[1]
        return address.rpartition("@")[2] or "localhost"


@dataclass
class Dispatch:
    """What one report (or one parent email) did in a tick."""

    report: str
    subject_key: str
    report_date: dt.date
    status: str  # sent / partial / failed / skipped / waiting
    recipients: dict[str, str] = field(default_factory=dict)  # recipient -> final or retry status
    errors: list[str] = field(default_factory=list)
    delayed: bool = False
    history_id: str | None = None


@dataclass
class TickResult:
    """Everything one tick did; ``busy`` when another tick held the lock."""

    busy: bool = False
    dispatches: list[Dispatch] = field(default_factory=list)
    orphans_resent: int = 0
    orphans_unknown: int = 0
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for d in self.dispatches for s in d.recipients.values() if s == status)


# -- the lock and the claims ----------------------------------------------------------------------------------

@contextmanager
def tick_lock(url: str) -> Iterator[bool]:
    """Hold the report tick's advisory lock for the block; yields False when another tick has it."""
    with postgres.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        try:
            yield got
        finally:
            if got and not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def settle_orphans(url: str) -> tuple[int, int]:
    """Claims left by a tick that died: (claims to send again, sends marked unknown). Call under the lock."""
    def work():
        with writes.transaction(url) as conn:
            unknown = conn.execute(
                "UPDATE warehouse.email_deliveries SET status = 'unknown', updated_at = now(), "
                "error = 'the tick stopped during the SMTP call; it may have been delivered, so it is not resent' "
                "WHERE status = 'sending'").rowcount
            pending = conn.execute("SELECT count(*) FROM warehouse.email_deliveries WHERE status = 'claimed'").fetchone()[0]
            return pending, unknown
    return writes.with_retries(work)


def open_recipients(url: str, report: str, subject_key: str, report_date: dt.date, recipients: list[str]) -> list[str]:
    """Those of ``recipients`` that have no final status for this report and date."""
    with postgres.read_only(url) as conn:
        final = {r for (r,) in conn.execute(
            "SELECT recipient FROM warehouse.email_deliveries WHERE report = %s AND subject_key = %s "
            "AND report_date = %s AND status = ANY(%s)", (report, subject_key, report_date, list(FINAL)))}
    return [r for r in recipients if r not in final]


def claim(url: str, report: str, subject_key: str, report_date: dt.date, recipients: list[str], *,
          delayed: bool, domain: str) -> list[tuple[str, str]]:
    """Claim ``recipients`` in one committed transaction; returns (recipient, Message-ID) of those claimed.

    A recipient already ``sent``, ``failed``, ``unknown`` or ``skipped`` is not
    claimed again; ``retry`` and orphaned ``claimed`` rows are.
    """
    def work():
        claimed = []
        with writes.transaction(url) as conn:
            for recipient in recipients:
                mid = render.message_id(report, subject_key, report_date, recipient, domain)
                row = conn.execute(
                    "INSERT INTO warehouse.email_deliveries AS d "
                    "(report, subject_key, report_date, recipient, status, delayed, message_id) "
                    "VALUES (%s, %s, %s, %s, 'claimed', %s, %s) "
                    "ON CONFLICT (report, subject_key, report_date, recipient) DO UPDATE "
                    "SET status = 'claimed', claimed_at = now(), updated_at = now(), delayed = EXCLUDED.delayed "
                    "WHERE d.status IN ('claimed', 'retry') RETURNING message_id",
                    (report, subject_key, report_date, recipient, delayed, mid)).fetchone()
                if row:
                    claimed.append((recipient, row[0]))
        return claimed
    return writes.with_retries(work)


def _set_status(url: str, report: str, subject_key: str, report_date: dt.date, recipient: str, status: str, *,
                error: str | None = None, attempts: int = 0) -> None:
    def work():
        with writes.transaction(url) as conn:
            conn.execute(
                "UPDATE warehouse.email_deliveries SET status = %s, error = %s, attempts = attempts + %s, "
                "updated_at = now(), sent_at = CASE WHEN %s = 'sent' THEN now() ELSE sent_at END "
                "WHERE report = %s AND subject_key = %s AND report_date = %s AND recipient = %s",
                (status, error, attempts, status, report, subject_key, report_date, recipient))
    writes.with_retries(work)


def send_claimed(url: str, sender: Sender, report: str, subject_key: str, report_date: dt.date,
                 claimed: list[tuple[str, str]], rendered: render.Rendered, *,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, tuple[str, str | None]]:
    """Send each claimed recipient their own message; returns recipient -> (status, error)."""
    outcomes = {}
    for recipient, mid in claimed:
        msg = render.message(rendered, sender=sender.from_address, recipient=recipient, message_id=mid)
        # Committed before the SMTP call: from here on a crash must not lead to a second send.
        _set_status(url, report, subject_key, report_date, recipient, "sending")
        status, error, tries = "sent", None, 0
        delays = sender.retry.delays()
        while True:
            tries += 1
            try:
                sender.transport.send(msg)
                break
            except mail.TransientMailError as failure:
                delay = next(delays, None)
                if delay is None:
                    status, error = "retry", f"{failure} (after {tries} tries; retried next tick)"
                    break
                sleep(delay)
            except mail.PermanentMailError as failure:
                status, error = "failed", str(failure)
                break
        _set_status(url, report, subject_key, report_date, recipient, status, error=error, attempts=tries)
        outcomes[recipient] = (status, error)
    return outcomes


def record_whole(url: str, report: str, subject_key: str, report_date: dt.date, status: str, error: str, *,
                 changed_since: dt.datetime | None = None) -> bool:
    """Record a report-level outcome (bad config, skipped date) once; True when it is new.

    With ``changed_since`` an earlier record is replaced when it is older (the
    config was edited since, and is still wrong), so the new error is recorded.
    """
    def work():
        with writes.transaction(url) as conn:
            row = conn.execute(
                "INSERT INTO warehouse.email_deliveries AS d (report, subject_key, report_date, recipient, status, error) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (report, subject_key, report_date, recipient) DO UPDATE "
                "SET status = EXCLUDED.status, error = EXCLUDED.error, updated_at = now() "
                "WHERE %s::timestamptz IS NOT NULL AND d.updated_at < %s::timestamptz RETURNING 1",
                (report, subject_key, report_date, WHOLE_REPORT, status, error, changed_since, changed_since)).fetchone()
            return row is not None
    return writes.with_retries(work)


def write_history(url: str, report_date: dt.date, recipients: list[str], status: str, error: str | None,
                  report_data: dict | None, *, subject_key: str, settled: list[str]) -> str:
    """One ``email_report_history`` row for an admin dispatch, linked from the claims it settled."""
    def work():
        with writes.transaction(url) as conn:
            history_id = conn.execute(
                "INSERT INTO email_report_history (report_date, recipients, status, error_message, report_data, sent_at) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, now()) RETURNING id",
                (report_date, recipients, status, error,
                 admin_data.report_json(report_data) if report_data is not None else None),
            ).fetchone()[0]
            conn.execute("UPDATE warehouse.email_deliveries SET history_id = %s WHERE report = %s AND subject_key = %s "
                         "AND report_date = %s AND recipient = ANY(%s)",
                         (history_id, ADMIN, subject_key, report_date, settled))
            return str(history_id)
    return writes.with_retries(work)


def health(url: str, before: dt.date, *, config_id: str, days: int = HEALTH_DAYS) -> dict:
    """What did not arrive in the ``days`` before ``before``, for the delivery-health section of one config's report.

    Its own admin reports (``subject_key`` = ``config_id``; another config's
    problems are that config's report's business) and the weekly parent emails,
    which no config owns and only the admin reports show. A parent week skipped
    for having no activity is by design, not a problem. Rows are grouped by
    report, date and status; ``emails`` counts the emails concerned, ``whole``
    says the report as a whole was not sent (a bad config, a skipped date).
    """
    with postgres.read_only(url) as conn:
        rows = conn.execute(
            "SELECT report, report_date, status, count(*) FILTER (WHERE recipient <> '') AS emails, "
            "count(*) FILTER (WHERE recipient = '') AS whole, "
            "(array_agg(error ORDER BY updated_at DESC) FILTER (WHERE error IS NOT NULL))[1] AS last_error "
            "FROM warehouse.email_deliveries WHERE report_date >= %s AND report_date < %s "
            "AND status IN ('failed', 'retry', 'unknown', 'skipped') "
            "AND ((report = %s AND subject_key = %s) OR (report = %s AND status <> 'skipped')) "
            "GROUP BY report, report_date, status ORDER BY report_date DESC, report, status",
            (before - dt.timedelta(days=days), before, ADMIN, config_id, PARENT)).fetchall()
    problems = []
    for report, day, status, emails, whole, error in rows:
        if report == PARENT:  # a parent row without a recipient is one kid's email (no address): still one email
            emails, whole = emails + whole, 0
        problems.append({"report": report, "report_date": day.isoformat(), "status": status, "emails": emails,
                         "whole": bool(whole) and not emails, "last_error": error or ""})
    return {"days": days, "problems": problems}


# -- the admin report -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdminConfig:
    """One validated ``email_report_config`` row."""

    id: str
    tz: object  # ZoneInfo
    schedule_hour: int
    recipients: list[str]
    invalid_recipients: list[str]
    sections: list[str]
    warnings: list[str]
    updated_at: dt.datetime | None


_CONFIG_COLUMNS = ("id", "enabled", "schedule_hour", "schedule_timezone", "recipients", "sections", "updated_at")


def read_configs(url: str, *, config_id: str | None = None) -> list[dict]:
    """Every enabled ``email_report_config`` row, as stored, by id; with ``config_id`` that row, enabled or not."""
    with postgres.read_only(url) as conn:
        cursor = conn.execute("SELECT id::text, enabled, schedule_hour, schedule_timezone, recipients, sections, "
                              "coalesce(updated_at, created_at) FROM email_report_config "
                              "WHERE CASE WHEN %s::text IS NULL THEN enabled ELSE id::text = %s END ORDER BY id",
                              (config_id, config_id))
        return [dict(zip(_CONFIG_COLUMNS, row)) for row in cursor.fetchall()]


def validate(row: dict) -> AdminConfig:
    """An :class:`AdminConfig` from a stored row, or a :class:`ConfigError` that names the field at fault."""
    where = f"email_report_config {row['id']}"
    try:
        tz = schedule.zone(row["schedule_timezone"])
    except schedule.ScheduleError as error:
        raise ConfigError(f"{where}: {error}") from None
    hour = row["schedule_hour"]
    if not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ConfigError(f"{where}: schedule_hour must be a whole hour from 0 to 23, got {hour!r}")
    recipients = row["recipients"]
    if not isinstance(recipients, list) or not recipients:
        raise ConfigError(f"{where}: recipients must be a non-empty JSON array of email addresses, got "
                          f"{json.dumps(recipients)[:80]}")
    valid, invalid, seen = [], [], set()
    for entry in recipients:
        address = entry.strip() if isinstance(entry, str) else None
        if address and _ADDRESS.match(address):
            if address.lower() not in seen:
                seen.add(address.lower())
                valid.append(address)
        else:
            invalid.append(str(entry))
    if not valid:
        raise ConfigError(f"{where}: recipients holds no valid email address ({', '.join(invalid)[:120]})")
    try:
        sections, warnings = render.section_list(row["sections"])
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    return AdminConfig(row["id"], tz, hour, valid, invalid, sections, warnings, row["updated_at"])


def _handled_range(url: str, config_id: str) -> tuple[dt.date | None, dt.date | None]:
    """The first and the last report date this config has any record for."""
    with postgres.read_only(url) as conn:
        return conn.execute("SELECT min(report_date), max(report_date) FROM warehouse.email_deliveries "
                            "WHERE report = %s AND subject_key = %s", (ADMIN, config_id)).fetchone()


def _record_skipped(url: str, config: AdminConfig, last: dt.date | None, oldest_sendable: dt.date,
                    catch_up_days: int) -> list[dt.date]:
    """Dates between the last one handled and the catch-up window: recorded as skipped; stale retries given up."""
    skipped = []
    if last is not None:
        day = max(last + dt.timedelta(days=1), oldest_sendable - dt.timedelta(days=SKIP_RECORD_LIMIT))
        while day < oldest_sendable:
            reason = (f"not sent: more than {catch_up_days} {'day' if catch_up_days == 1 else 'days'} late when "
                      "the scheduler next ran (WAREHOUSE_REPORT_CATCHUP_DAYS)")
            if record_whole(url, ADMIN, config.id, day, "skipped", reason):
                write_history(url, day, config.recipients, "skipped", reason, None, subject_key=config.id, settled=[""])
                skipped.append(day)
            day += dt.timedelta(days=1)

    def give_up():
        with writes.transaction(url) as conn:
            conn.execute("UPDATE warehouse.email_deliveries SET status = 'failed', updated_at = now(), "
                         "error = coalesce(error, '') || '; given up: the catch-up window closed' "
                         "WHERE report = %s AND subject_key = %s AND status IN ('retry', 'claimed') AND report_date < %s",
                         (ADMIN, config.id, oldest_sendable))
    writes.with_retries(give_up)
    return skipped


def admin_tick(url: str, sender: Sender, now: dt.datetime, *, build: Callable[[dt.date, object, str], dict | None],
               catch_up_days: int, after_claim: Callable[[], None] | None = None,
               log: Callable[[str], None] = lambda _line: None) -> list[Dispatch]:
    """Send every admin report due at ``now``. Call under :func:`tick_lock`.

    ``build(report_date, tz, config_id)`` returns the report data, or None when the
    warehouse does not yet hold the whole day (the report waits for a later tick).
    ``after_claim`` runs after the claims commit and before any SMTP call (tests crash there).
    """
    dispatches = []
    for row in read_configs(url):
        try:
            config = validate(row)
        except ConfigError as error:
            if sender.dry_run:
                log(f"dry run: {error}")
                continue
            dispatches.append(_config_failure(url, row, now, str(error), log))
            continue
        for warning in config.warnings:
            log(f"email_report_config {config.id}: {warning}")
        due = schedule.admin_due_dates(now, config.tz, config.schedule_hour, catch_up_days)
        first, last = _handled_range(url, config.id)
        # Catch-up is for downtime, not for days before a config's first report: a new config starts
        # with the latest day only.
        days = tuple(d for d in due.catch_up if d >= first) if first is not None else (due.latest,)
        days = days or (due.latest,)
        for day in ([] if sender.dry_run else _record_skipped(url, config, last, due.catch_up[-1], catch_up_days)):
            dispatches.append(Dispatch(ADMIN, config.id, day, "skipped", errors=["outside the catch-up window"]))
        for day in reversed(days):  # oldest first: the reader gets them in order
            try:
                dispatch = _admin_dispatch(url, sender, config, day, due.latest, build, after_claim, log)
            except (mail.MailError, OSError, ValueError, KeyError, TypeError) as error:
                # Not recorded as failed: nothing was claimed, so the next tick tries again.
                dispatch = Dispatch(ADMIN, config.id, day, "error", errors=[f"{type(error).__name__}: {error}"])
                log(f"admin report {day}: error, retried next tick: {type(error).__name__}: {error}")
            if dispatch:
                dispatches.append(dispatch)
    return dispatches


def _dry_run(sender: Sender, rendered: render.Rendered, report: str, subject_key: str, day: dt.date,
             recipients: list[str], log) -> Dispatch:
    """A dry run: the messages go to the transport (the dry-run outbox); nothing is claimed or recorded."""
    for recipient in recipients:
        mid = render.message_id(report, subject_key, day, recipient, sender.domain)
        sender.transport.send(render.message(rendered, sender=sender.from_address, recipient=recipient, message_id=mid))
    log(f"dry run: {report} {day} for {len(recipients)} recipient(s) written to {sender.transport.description}")
    return Dispatch(report, subject_key, day, "dry-run", {r: "dry-run" for r in recipients})


def _config_failure(url: str, row: dict, now: dt.datetime, error: str, log) -> Dispatch:
    """A failed history row for a config that cannot be used, once per report date and config version."""
    try:
        tz = schedule.zone(row.get("schedule_timezone"))
    except schedule.ScheduleError:
        tz = dt.timezone.utc  # the date still needs a zone; the error names the bad one
    day = now.astimezone(tz).date() - dt.timedelta(days=1)
    dispatch = Dispatch(ADMIN, row["id"], day, "failed", errors=[error])
    if record_whole(url, ADMIN, row["id"], day, "failed", error, changed_since=row.get("updated_at")):
        recipients = [str(r) for r in row["recipients"]] if isinstance(row["recipients"], list) else []
        dispatch.history_id = write_history(url, day, recipients, "failed", error, None, subject_key=row["id"], settled=[""])
        log(f"admin report {day}: failed: {error}")
    return dispatch


def _admin_dispatch(url, sender: Sender, config: AdminConfig, day: dt.date, latest: dt.date, build,
                    after_claim, log) -> Dispatch | None:
    pending = open_recipients(url, ADMIN, config.id, day, config.recipients + config.invalid_recipients)
    if not pending:
        return None
    delayed = day < latest
    data = build(day, config.tz, config.id)
    if data is None:
        log(f"admin report {day}: waiting: the warehouse does not hold the whole local day yet")
        return Dispatch(ADMIN, config.id, day, "waiting")
    data["config_warnings"] = config.warnings
    due_at = schedule.scheduled_at(day, config.tz, config.schedule_hour)
    rendered = render.render_admin(data, config.sections, delayed=delayed, due_at=due_at)
    if sender.dry_run:
        return _dry_run(sender, rendered, ADMIN, config.id, day, [r for r in pending if r in config.recipients], log)
    claimed = claim(url, ADMIN, config.id, day, pending, delayed=delayed, domain=sender.domain)
    if after_claim:
        after_claim()
    valid = [(r, m) for r, m in claimed if r in config.recipients]
    outcomes = send_claimed(url, sender, ADMIN, config.id, day, valid, rendered)
    for recipient, _mid in claimed:
        if recipient not in config.recipients:
            error = f"{recipient!r} is not an email address (email_report_config {config.id} recipients)"
            _set_status(url, ADMIN, config.id, day, recipient, "failed", error=error)
            outcomes[recipient] = ("failed", error)
    statuses = {r: s for r, (s, _e) in outcomes.items()}
    errors = [f"{r}: {e}" for r, (_s, e) in outcomes.items() if e]
    sent = sum(1 for s in statuses.values() if s == "sent")
    status = "sent" if sent == len(statuses) else "partial" if sent else "failed"
    dispatch = Dispatch(ADMIN, config.id, day, status, statuses, errors, delayed)
    if statuses:
        dispatch.history_id = write_history(url, day, list(statuses), status, "; ".join(errors) or None, data,
                                            subject_key=config.id, settled=list(statuses))
    log(f"admin report {day}{' (delayed)' if delayed else ''}: {status}: {sent}/{len(statuses)} sent"
        + (f"; {'; '.join(errors)}" if errors else ""))
    return dispatch


# -- the weekly parent emails ---------------------------------------------------------------------------------

def parent_tick(url: str, sender: Sender, now: dt.datetime, *, build: Callable[[object, dt.date], dict | None],
                ready: Callable[[dt.datetime], bool], unsubscribe_url: Callable[[int], str], catch_up_days: int,
                log: Callable[[str], None] = lambda _line: None) -> list[Dispatch]:
    """Send each kid's weekly email that is due at ``now`` (Monday 09:00 in the parent's zone). Call under the lock.

    ``build(recipient, week_start)`` returns the kid's week or None when it had
    no activity (recorded as skipped: nothing encouraging to say about an empty
    week). ``ready(instant)`` says whether the warehouse holds data up to it.
    """
    from pipelines.reports import family_data

    dispatches = []
    targets = family_data.recipients(url)
    with postgres.read_only(url) as conn:
        settled = {(k, d) for k, d in conn.execute(
            "SELECT subject_key, report_date FROM warehouse.email_deliveries WHERE report = %s AND status = ANY(%s) "
            "AND report_date >= %s", (PARENT, list(FINAL), (now - dt.timedelta(days=21)).date())).fetchall()}
    for target in targets:
        try:
            tz = schedule.zone(target.timezone, setting="parent_profile.timezone")
        except schedule.ScheduleError:
            tz = dt.timezone.utc  # as the marts do: an unknown zone counts as UTC
        week = schedule.parent_week(now, tz, catch_up_days)
        key = str(target.kid_id)
        if week is None or (key, week) in settled:
            continue
        if not target.email or not _ADDRESS.match(target.email):
            if sender.dry_run:
                continue
            record_whole(url, PARENT, key, week, "failed", f"kid {target.kid_id}: the parent (user "
                         f"{target.parent_user_id}) has no valid email address")
            dispatches.append(Dispatch(PARENT, key, week, "failed", errors=["no valid email address"]))
            continue
        week_end = dt.datetime.combine(week + dt.timedelta(days=7), dt.time(0), tzinfo=tz)
        if not ready(week_end.astimezone(dt.timezone.utc)):
            dispatches.append(Dispatch(PARENT, key, week, "waiting"))
            continue
        try:
            dispatch = _parent_dispatch(url, sender, target, key, week, build, unsubscribe_url)
        except (mail.MailError, OSError, ValueError, KeyError, TypeError) as error:
            dispatch = Dispatch(PARENT, key, week, "error", errors=[f"{type(error).__name__}: {error}"])
            log(f"weekly email for kid {key}: error, retried next tick: {type(error).__name__}: {error}")
        if dispatch:
            dispatches.append(dispatch)
    if dispatches:
        log("weekly parent emails: " + ", ".join(f"{n} {status}" for status, n in sorted(
            Counter(d.status for d in dispatches).items())))
    return dispatches


def _parent_dispatch(url, sender: Sender, target, key: str, week: dt.date, build, unsubscribe_url) -> Dispatch | None:
    """One kid's weekly email: build, render, claim, send."""
    data = build(target, week)
    if data is None:
        if not sender.dry_run:
            record_whole(url, PARENT, key, week, "skipped", "no activity that week")
        return Dispatch(PARENT, key, week, "skipped", errors=["no activity"])
    if data["kid_id"] != target.kid_id:  # a family's email holds only its own kid's numbers
        raise AssertionError(f"weekly data for kid {data['kid_id']} built for kid {target.kid_id}")
    rendered = render.render_parent(data, unsubscribe_url=unsubscribe_url(target.parent_user_id))
    if sender.dry_run:
        return _dry_run(sender, rendered, PARENT, key, week, [target.email], lambda _line: None)
    claimed = claim(url, PARENT, key, week, [target.email], delayed=False, domain=sender.domain)
    if not claimed:
        return None
    outcomes = send_claimed(url, sender, PARENT, key, week, claimed, rendered)
    statuses = {r: s for r, (s, _e) in outcomes.items()}
    errors = [f"{r}: {e}" for r, (_s, e) in outcomes.items() if e]
    return Dispatch(PARENT, key, week, "sent" if all(s == "sent" for s in statuses.values()) else "failed",
                    statuses, errors)


def tick(url: str, sender: Sender, now: dt.datetime, *, admin_build, parent_build, ready, unsubscribe_url,
         catch_up_days: int, after_claim: Callable[[], None] | None = None,
         log: Callable[[str], None] = lambda _line: None) -> TickResult:
    """One scheduler tick: settle orphaned claims, then send the admin reports and parent emails due at ``now``."""
    result = TickResult()
    with tick_lock(url) as got:
        if not got:
            result.busy = True
            log("another report tick holds the lock; this one does nothing")
            return result
        if not sender.dry_run:
            result.orphans_resent, result.orphans_unknown = settle_orphans(url)
        if result.orphans_resent or result.orphans_unknown:
            log(f"claims left by a stopped tick: {result.orphans_resent} to send now, "
                f"{result.orphans_unknown} marked unknown (may have been delivered; not resent)")
        result.dispatches += admin_tick(url, sender, now, build=admin_build, catch_up_days=catch_up_days,
                                        after_claim=after_claim, log=log)
        result.dispatches += parent_tick(url, sender, now, build=parent_build, ready=ready,
                                         unsubscribe_url=unsubscribe_url, catch_up_days=catch_up_days, log=log)
    return result
