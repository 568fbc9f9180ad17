"""Partitions and freshness shared by the graph: one partition per UTC day, up to the last complete day."""

import datetime as dt

import dagster as dg

from pipelines.settings import load

DAILY = dg.DailyPartitionsDefinition(start_date=load().partitions_start.isoformat(), timezone="UTC")

# On every daily-partitioned asset, so a date-range backfill can select them all:
#   dagster asset materialize -m assets.definitions --select 'tag:partitioned=daily' --partition-range A...B
PARTITIONED_TAG = {"partitioned": "daily"}

# Each daily run also refreshes the day before its window: rows that arrive late (device
# uploads, sessions and agent runs that end after midnight) and the hours of a local day
# west of UTC that fall after UTC midnight are only in the source when the next day runs.
LATE_DATA = dt.timedelta(days=1)


def refresh_window(window: dg.TimeWindow) -> tuple[dt.datetime, dt.datetime]:
    """A partition's time window widened by ``LATE_DATA`` at its start."""
    return window.start - LATE_DATA, window.end


# The daily run starts at 00:30 UTC (assets.automation); an asset of the daily run that has not been
# materialized between midnight and 03:00 UTC is overdue (the run failed, was not scheduled, or is stuck).
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 3 * * *", lower_bound_delta=dt.timedelta(hours=3),
                                          timezone="UTC")
