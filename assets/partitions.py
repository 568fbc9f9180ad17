"""Partitions shared by the graph: one per UTC day, up to the last complete day."""

import dagster as dg

from pipelines.settings import load

DAILY = dg.DailyPartitionsDefinition(start_date=load().partitions_start.isoformat(), timezone="UTC")
