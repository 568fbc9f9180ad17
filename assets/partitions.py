"""Partitions shared by the graph: one per UTC day, up to the last complete day."""

import datetime as dt

import dagster as dg

from pipelines.settings import load

DAILY = dg.DailyPartitionsDefinition(start_date=load().partitions_start.isoformat(), timezone="UTC")

# Each daily run also refreshes the day before its window: rows that arrive late (device
# uploads, sessions and agent runs that end after midnight) and the hours of a local day
# west of UTC that fall after UTC midnight are only in the source when the next day runs.
LATE_DATA = dt.timedelta(days=1)


def refresh_window(window: dg.TimeWindow) -> tuple[dt.datetime, dt.datetime]:
    """A partition's time window widened by ``LATE_DATA`` at its start."""
    return window.start - LATE_DATA, window.end
