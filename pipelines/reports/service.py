"""The report tick wired to this project's warehouse, settings and mail transport.

:func:`run_tick` is what the hourly Dagster schedule and ``warehouse report
send`` call; :func:`preview` is ``warehouse report preview``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlencode

import duckdb

from pipelines import mail, rollups
from pipelines.reports import admin_data, delivery, family_data, render, schedule
from pipelines.settings import Settings

UTC = dt.timezone.utc


def sender(settings: Settings, *, retry: delivery.RetryPolicy | None = None) -> delivery.Sender:
    """SMTP from ``SMTP_URL``, else the outbox; a dry run always writes to ``outbox/dry-run``."""
    transport = (mail.OutboxTransport(settings.dry_run_outbox) if settings.report_dry_run
                 else mail.transport(settings.smtp_url, settings.outbox))
    return delivery.Sender(transport, settings.mail_from, retry or delivery.RetryPolicy(), dry_run=settings.report_dry_run)


def unsubscribe_link(settings: Settings, parent_user_id: int) -> str:
    """A one-click unsubscribe link; the token is a keyed hash, so a link cannot be forged for another parent."""
    token = hmac.new(settings.pseudonym_key.encode(), f"weekly_report:{parent_user_id}".encode(), hashlib.sha256)
    return f"{settings.unsubscribe_url}?{urlencode({'u': parent_user_id, 't': token.hexdigest()[:32]})}"


def admin_report_data(con: duckdb.DuckDBPyConnection, cheeko_url: str, day: dt.date, tz, now: dt.datetime, *,
                      require_complete: bool = True, through: dt.datetime | None = None,
                      quality: dict[str, int] | None = None) -> dict | None:
    """The admin report's data for ``day``; None when ``require_complete`` and the warehouse lacks part of the day.

    ``through`` and ``quality`` (the checks' counts) are the same for every day of a tick; a
    tick reads them once and passes them in.
    """
    _start, end = schedule.local_day_window(day, tz)
    through = through or admin_data.data_through(con)
    if require_complete and (through is None or through < end):
        return None
    if quality is None:
        quality = rollups.quality_counts(con, as_of_time=now, cheeko_url=cheeko_url)
    return admin_data.build(con, report_date=day, tz=tz, as_of_time=now, quality=quality,
                            delivery=delivery.health(cheeko_url, day), through=through)


def run_tick(settings: Settings, con: duckdb.DuckDBPyConnection, cheeko_url: str, now: dt.datetime, *,
             out: delivery.Sender | None = None, after_claim=None, log=print) -> delivery.TickResult:
    """Send every admin report and weekly parent email due at ``now``, reading the warehouse through ``con``."""
    out = out or sender(settings)
    through = admin_data.data_through(con) or dt.datetime.min.replace(tzinfo=UTC)  # no run writes it meanwhile

    @functools.cache
    def quality() -> dict[str, int]:  # a whole-warehouse scan: only when some report is built, and once
        return rollups.quality_counts(con, as_of_time=now, cheeko_url=cheeko_url)

    try:
        return delivery.tick(
            cheeko_url, out, now,
            admin_build=lambda day, tz: (None if schedule.local_day_window(day, tz)[1] > through else
                                         admin_report_data(con, cheeko_url, day, tz, now, through=through,
                                                           quality=quality())),
            parent_build=lambda target, week: family_data.build(con, target, week),
            ready=lambda instant: through >= instant,
            unsubscribe_url=lambda user_id: unsubscribe_link(settings, user_id),
            catch_up_days=settings.report_catchup_days, after_claim=after_claim, log=log)
    finally:
        out.transport.close()


def latest_complete_day(con: duckdb.DuckDBPyConnection, cheeko_url: str) -> dt.date | None:
    """The newest local day (in the first enabled config's zone, else Asia/Kolkata) the warehouse holds whole."""
    configs = delivery.read_configs(cheeko_url)
    try:
        tz = schedule.zone(configs[0]["schedule_timezone"] if configs else "Asia/Kolkata")
    except schedule.ScheduleError:
        tz = schedule.zone("Asia/Kolkata")
    through = admin_data.data_through(con)
    if through is None:
        return None
    day = through.astimezone(tz).date()
    while schedule.local_day_window(day, tz)[1] > through:
        day -= dt.timedelta(days=1)
    return day


def scheduled_tick(cheeko_url: str, day: dt.date) -> dt.datetime:
    """The moment the first enabled config's report for ``day`` falls due (for replaying a tick on old data)."""
    configs = delivery.read_configs(cheeko_url)
    tz = schedule.zone(configs[0]["schedule_timezone"]) if configs else schedule.zone("Asia/Kolkata")
    hour = configs[0]["schedule_hour"] if configs else 8
    return schedule.scheduled_at(day, tz, hour)


def preview(settings: Settings, con: duckdb.DuckDBPyConnection, cheeko_url: str, day: dt.date, *,
            timezone: str = "Asia/Kolkata", sections: dict | None = None, out_dir: Path | None = None) -> Path:
    """Write the admin report for ``day`` as an HTML file (charts beside it as PNGs) and return its path.

    Uses the first enabled config's zone and sections when there is one. A
    preview sends nothing and records nothing; a day the warehouse holds only
    in part is rendered with a banner saying so.
    """
    configs = delivery.read_configs(cheeko_url)
    if configs:
        timezone, sections = configs[0]["schedule_timezone"], configs[0]["sections"]
    tz = schedule.zone(timezone)
    now = dt.datetime.now(UTC)
    data = admin_report_data(con, cheeko_url, day, tz, now, require_complete=False)
    chosen, _warnings = render.section_list(sections)
    rendered = render.render_admin(data, chosen)
    folder = out_dir or settings.reports
    folder.mkdir(parents=True, exist_ok=True)
    html = rendered.html
    for chart in rendered.charts:
        name = f"admin-{day}-{chart.cid}.png"
        (folder / name).write_bytes(chart.png)
        html = html.replace(f"cid:{chart.cid}", name)  # a browser cannot resolve cid: outside an email
    path = folder / f"admin-{day}.html"
    path.write_text(html, encoding="utf-8")
    (folder / f"admin-{day}.txt").write_text(rendered.text, encoding="utf-8")
    return path
