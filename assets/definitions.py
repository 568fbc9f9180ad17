"""The code location: collects the asset graph, its automation and its resources.

Nothing imports this module but Dagster (``dagster dev -m assets.definitions``,
``warehouse ui``) and the ``warehouse`` CLI. Loading it touches no database,
network or model. Runs execute in process: the DuckDB warehouse has one
writer at a time, and one process per run lets all its assets share one
source snapshot.
"""

import dagster as dg

from assets.automation import AUTOMATION_JOBS, AUTOMATION_SCHEDULES, AUTOMATION_SENSORS
from assets.extracts import EXTRACT_ASSETS
from assets.maintenance import MAINTENANCE_JOBS, MAINTENANCE_SCHEDULES
from assets.memory import MEMORY_ASSETS
from assets.raw import RAW_ASSETS
from assets.reports import REPORT_ASSETS, email_reports_job, email_reports_schedule
from assets.resources import EmbeddingModel, SourceDatabases, Warehouse
from assets.rollups import ROLLUP_ASSETS, ROLLUP_CHECKS

defs = dg.Definitions(
    assets=[*RAW_ASSETS, *ROLLUP_ASSETS, *MEMORY_ASSETS, *REPORT_ASSETS, *EXTRACT_ASSETS],
    asset_checks=ROLLUP_CHECKS,
    jobs=[*AUTOMATION_JOBS, email_reports_job, *MAINTENANCE_JOBS],
    schedules=[*AUTOMATION_SCHEDULES, email_reports_schedule, *MAINTENANCE_SCHEDULES],
    sensors=AUTOMATION_SENSORS,
    resources={"warehouse": Warehouse(), "sources": SourceDatabases(), "embedding_model": EmbeddingModel()},
    executor=dg.in_process_executor,
)
