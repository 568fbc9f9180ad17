"""Scheduled email reports (group ``reports``): the admin daily report and the weekly parent emails."""

import datetime as dt

import dagster as dg

from assets.pools import writer_pool
from assets.resources import SourceDatabases, Warehouse
from assets.rollups import keys_of
from pipelines import lineage
from pipelines import settings as settings_module
from pipelines.reports import service

EMAIL_REPORTS_KEY = dg.AssetKey(["email_reports"])
# What the report queries in sql/reports/ read, parsed from them.
REPORT_INPUTS = keys_of(frozenset().union(*lineage.report_inputs().values()))


def _tick_time(context: dg.AssetExecutionContext) -> dt.datetime:
    """The schedule's tick time when a schedule started the run (so a re-run decides the same), else now."""
    tag = context.run.tags.get("dagster/scheduled_execution_time")
    return dt.datetime.fromisoformat(tag).astimezone(dt.UTC) if tag else dt.datetime.now(dt.UTC)


@dg.asset(
    key=EMAIL_REPORTS_KEY,
    group_name="reports",
    description=(
        "Sends what is due at the tick: the admin daily report of every enabled email_report_config (the previous "
        "full local day in its schedule_timezone, from schedule_hour on, with bounded catch-up) and the weekly "
        "parent emails (Monday 09:00 in the parent's zone). Each recipient is claimed in "
        "warehouse.email_deliveries before any SMTP call, so re-runs and crashes never send twice; each admin "
        "dispatch writes email_report_history. SMTP_URL, else .eml files in the outbox; WAREHOUSE_REPORT_DRY_RUN=1 "
        "writes to outbox/dry-run and records nothing."
    ),
    kinds={"email", "postgres", "duckdb"},
    owners=["team:data"],
    deps=REPORT_INPUTS,
    pool=writer_pool("reports"),
    # The tick is hourly: two missed ticks in a row is an outage worth a look.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=2, minutes=10),
                                                    warn_window=dt.timedelta(hours=1, minutes=10)),
)
def email_reports(context: dg.AssetExecutionContext, warehouse: Warehouse, sources: SourceDatabases) -> dg.MaterializeResult:
    settings = settings_module.load()
    now = _tick_time(context)
    with warehouse.connect() as con:
        result = service.run_tick(settings, con, sources.url("cheeko"), now, log=context.log.info)
    errors = [f"{d.report} {d.subject_key} {d.report_date}: {'; '.join(d.errors)}"
              for d in result.dispatches if d.status == "error"]
    lines = [f"| {d.report} | {d.report_date} | {d.status} | {len(d.recipients)} |"
             for d in result.dispatches if d.report == "admin_daily"]
    metadata = {
        "tick": now.isoformat(),
        "transport": service.sender(settings).transport.description,
        "dry_run": settings.report_dry_run,
        "emails_sent": result.count("sent"),
        "emails_failed": result.count("failed"),
        "emails_to_retry": result.count("retry"),
        "orphaned_claims_resent": result.orphans_resent,
        "orphaned_sends_unknown": result.orphans_unknown,
        "parent_emails_skipped_no_activity": sum(1 for d in result.dispatches
                                                 if d.report == "parent_weekly" and d.status == "skipped"),
        "waiting_for_data": sum(1 for d in result.dispatches if d.status == "waiting"),
        "busy": result.busy,
        "admin_reports": dg.MetadataValue.md("| report | date | status | recipients |\n|---|---|---|---|\n"
                                             + "\n".join(lines) if lines else "nothing due"),
        "dagster/row_count": result.count("sent"),
    }
    if errors:
        # Everything else went out; the run fails so the errors are seen, and the next tick tries them again.
        raise dg.Failure(description="some reports could not be built or rendered:\n" + "\n".join(errors[:20]),
                         metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


email_reports_job = dg.define_asset_job(
    "email_reports_job", selection=dg.AssetSelection.assets(EMAIL_REPORTS_KEY),
    description="One report tick: sends whatever is due now.",
)

email_reports_schedule = dg.ScheduleDefinition(
    name="email_reports_hourly",
    job=email_reports_job,
    cron_schedule="5 * * * *",  # five past: the hourly extraction has had a moment to land
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: each config is due when its local hour reaches schedule_hour (DST-aware); parents "
                "from Monday 09:00 in their zone. A tick with nothing due sends nothing.",
)

REPORT_ASSETS = [email_reports]
