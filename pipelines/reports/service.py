"""The report tick wired to this project's warehouse, settings and mail transport.

:func:`run_tick` is what the hourly Dagster schedule and ``warehouse report
send`` call; :func:`preview` is ``warehouse report preview``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import duckdb

from pipelines import mail, rollups
from pipelines.reports import admin_data, delivery, family_data, render, schedule
from pipelines.settings import Settings

UTC = dt.timezone.utc
DEFAULT_ZONE = "Asia/Kolkata"  # where the fleet is, for a preview or a demo without a usable config


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
                      config_id: str, require_complete: bool = True, through: dt.datetime | None = None,
                      quality: dict[str, int] | None = None) -> dict | None:
    """Config ``config_id``'s admin report data for ``day``; None when ``require_complete`` and the warehouse lacks
    part of the day.

    ``through`` and ``quality`` (the checks' counts) are the same for every day of a tick; a
    tick reads them once and passes them in. The delivery health is the config's own.
    """
    _start, end = schedule.local_day_window(day, tz)
    through = through or admin_data.data_through(con)
    if require_complete and (through is None or through < end):
        return None
    if quality is None:
        quality = rollups.quality_counts(con, as_of_time=now, cheeko_url=cheeko_url)
    return admin_data.build(con, report_date=day, tz=tz, as_of_time=now, quality=quality,
                            delivery=delivery.health(cheeko_url, day, config_id=config_id), through=through)


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
            admin_build=lambda day, tz, config_id: (
                None if schedule.local_day_window(day, tz)[1] > through else
                admin_report_data(con, cheeko_url, day, tz, now, config_id=config_id, through=through,
                                  quality=quality())),
            parent_build=lambda target, week: family_data.build(con, target, week),
            ready=lambda instant: through >= instant,
            unsubscribe_url=lambda user_id: unsubscribe_link(settings, user_id),
            catch_up_days=settings.report_catchup_days, after_claim=after_claim, log=log)
    finally:
        out.transport.close()


def latest_complete_day(con: duckdb.DuckDBPyConnection, cheeko_url: str, tz=None) -> dt.date | None:
    """The newest local day the warehouse holds whole: in ``tz``, else the first enabled config's zone, else
    Asia/Kolkata."""
    if tz is None:
        configs = delivery.read_configs(cheeko_url)
        try:
            tz = schedule.zone(configs[0]["schedule_timezone"] if configs else DEFAULT_ZONE)
        except schedule.ScheduleError:
            tz = schedule.zone(DEFAULT_ZONE)
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
    tz = schedule.zone(configs[0]["schedule_timezone"]) if configs else schedule.zone(DEFAULT_ZONE)
    hour = configs[0]["schedule_hour"] if configs else 8
    return schedule.scheduled_at(day, tz, hour)


@dataclass(frozen=True)
class Preview:
    """What :func:`preview` wrote, and with which config."""

    day: dt.date
    path: Path  # the HTML; the text/plain part is beside it as .txt
    text_path: Path
    config_id: str | None  # None: no enabled config was usable, so the default zone and every section
    notes: tuple[str, ...] = ()  # configs passed over and why, warnings about the one used


def preview_config(cheeko_url: str, config_id: str | None = None) -> tuple[delivery.AdminConfig | None, list[str]]:
    """The config a preview uses, and notes on the choice.

    With ``config_id``: that config, enabled or not, or a :class:`delivery.ConfigError`
    naming it and the field at fault. Without: the first enabled config (by id) that
    is usable; None when there is none (the preview then uses the defaults).
    """
    notes: list[str] = []
    if config_id is not None:
        rows = delivery.read_configs(cheeko_url, config_id=config_id)
        if not rows:
            known = [row["id"] for row in delivery.read_configs(cheeko_url)]
            raise delivery.ConfigError(f"email_report_config {config_id}: no such config (enabled: "
                                       f"{', '.join(known) or 'none'})")
        config = delivery.validate(rows[0])
        if not rows[0]["enabled"]:
            notes.append(f"email_report_config {config.id} is not enabled: no report is sent for it")
        return config, notes + [f"email_report_config {config.id}: {w}" for w in config.warnings]
    for row in delivery.read_configs(cheeko_url):
        try:
            config = delivery.validate(row)
        except delivery.ConfigError as error:
            notes.append(f"passed over: {error}")
            continue
        return config, notes + [f"email_report_config {config.id}: {w}" for w in config.warnings]
    notes.append(f"no usable enabled email_report_config: previewing with {DEFAULT_ZONE} and every section")
    return None, notes


def preview(settings: Settings, con: duckdb.DuckDBPyConnection, cheeko_url: str, day: dt.date | None = None, *,
            config_id: str | None = None, out_dir: Path | None = None) -> Preview:
    """Write the admin report for ``day`` as an HTML file (charts beside it as PNGs, the text part as .txt).

    The config is ``config_id``'s, else the first usable enabled one (:func:`preview_config`);
    ``day`` defaults to the newest local day the warehouse holds whole in its zone. A preview
    sends nothing and records nothing; a day the warehouse holds only in part is rendered
    with a banner saying so.
    """
    config, notes = preview_config(cheeko_url, config_id)
    tz = config.tz if config else schedule.zone(DEFAULT_ZONE)
    sections = config.sections if config else list(admin_data.SECTIONS)
    day = day or latest_complete_day(con, cheeko_url, tz)
    if day is None:
        raise ValueError("the warehouse holds no complete day yet; pass --date")
    now = dt.datetime.now(UTC)
    data = admin_report_data(con, cheeko_url, day, tz, now, config_id=config.id if config else "",
                             require_complete=False)
    rendered = render.render_admin(data, sections)
    folder = out_dir or settings.reports
    folder.mkdir(parents=True, exist_ok=True)
    html = rendered.html
    for chart in rendered.charts:
        name = f"admin-{day}-{chart.cid}.png"
        (folder / name).write_bytes(chart.png)
        html = html.replace(f"cid:{chart.cid}", name)  # a browser cannot resolve cid: outside an email
    path = folder / f"admin-{day}.html"
    path.write_text(html, encoding="utf-8")
    text_path = folder / f"admin-{day}.txt"
    text_path.write_text(rendered.text, encoding="utf-8")
    return Preview(day, path, text_path, config.id if config else None, tuple(notes))
