"""The Dagster instance's event log on PostgreSQL, without re-reading its own schema for every event.

dagster-postgres asks the catalogue whether a table or column exists each time it stores or reads an asset event:
``has_table("asset_event_tags")`` for every materialization (inside its transaction, so on a second connection),
``has_table("asset_check_executions")`` for every check event, and ``has_asset_key_col`` (a column reflection of
``asset_keys``) for each step's input versions and asset records. On a one-day ``warehouse run`` those catalogue
queries were about a tenth of the run (py-spy, benchmarks/orchestration.py). The answers only change when
``dagster instance migrate`` adds the table or column, so a present one is remembered for the life of the storage
object; an absent one is asked again, so a migration run beside a long-lived daemon is still seen.

Named in ``deploy/dagster.postgres.yaml`` (and so in the embedded default's instance) as the event log storage,
so the webserver, the daemon and the runs it launches (which open the instance from its recorded class) use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class SchemaCachingPostgresEventLogStorage(PostgresEventLogStorage):
    """:class:`dagster_postgres.PostgresEventLogStorage` that remembers which of its tables and columns exist."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before the parent's constructor: on a new database it creates the tables and may ask about them.
        self._tables_present: set[str] = set()
        self._asset_key_columns_present: set[str] = set()
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> SchemaCachingPostgresEventLogStorage:
        # The parent's builds its own class by name; the same arguments, this class.
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))

    def has_table(self, table_name: str) -> bool:
        return _remembered(self._tables_present, table_name, super().has_table)

    def has_asset_key_col(self, column_name: str) -> bool:
        return _remembered(self._asset_key_columns_present, column_name, super().has_asset_key_col)


def _remembered(present: set[str], name: str, ask: Callable[[str], bool]) -> bool:
    """Whether ``name`` exists: True when ``present`` holds it, else what ``ask`` says, remembered when it is True."""
    if name in present:
        return True
    if ask(name):
        present.add(name)
        return True
    return False
