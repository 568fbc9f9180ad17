"""The asset graph: thin Dagster assets, checks, schedules and resources over ``pipelines``."""
