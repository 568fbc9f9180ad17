"""The Dagster instance's event log on PostgreSQL, without re-reading its own schema for every event.

dagster-postgres asks the catalogue whether a table or column exists each time it stores or reads an asset event:
``has_table("asset_event_tags")`` for every materialization (inside its transaction, so on a second connection),
``has_table("asset_check_executions")`` for every check event, and ``has_asset_key_col`` (a column reflection of
``asset_keys``) for each step's input versions and asset records. On a one-day ``warehouse run`` those catalogue
queries were about a tenth of the run (py-spy, benchmarks/orchestration.py). The answers only change when
``dagster instance migrate`` adds the table or column, so a present one is remembered for the life of the storage
object; an absent one is asked again, so a migration run beside a long-lived daemon is still seen.

It also stores the "planned" events a run begins with in one statement. With ``DAGSTER_EVENT_BATCH_SIZE`` set
(``warehouse run`` sets 100), Dagster hands them over in batches of that size (one event per asset, one per check:
231 on a daily ``warehouse run``), but dagster-postgres writes a batch in one statement only when it holds
materializations alone or observations alone; planned events it writes one by one, each as a single event: an
``INSERT ... RETURNING``, a ``NOTIFY`` nobody listens to, then its index row. That was 1.5 s of a 20 s daily run
(py-spy). Here a batch's events go into ``event_logs`` in one ``INSERT``, and each then gets the index rows
dagster-postgres would write for it, in the same transaction: the ``asset_keys`` rows of the planned
materializations through the storage's own method, and the ``asset_check_executions`` rows of every planned check
in ``INSERT`` statements of up to ``CHECK_ROWS_PER_INSERT`` rows (dagster-postgres writes each check's rows in a
transaction of its own, one row per partition of the run, the event serialized again for each: 141 checks, 846
rows, about a tenth of the active time of a whole-graph run of the tests' fleet, py-spy).

And :func:`hold_storage_connections` keeps the storage's connections open for the life of a process that runs
(``warehouse run``, and every run worker the daemon launches, as its resources start), instead of one new
connection per stored event.

Named in ``deploy/dagster.postgres.yaml`` (and so in the embedded default's instance) as the event log storage,
so the webserver, the daemon and the runs it launches (which open the instance from its recorded class) use it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


STORAGE_RECYCLE_SECONDS = 3600  # a held storage connection is renewed after an hour (the webserver's default)
STORAGE_OVERFLOW = 4
_HELD: weakref.WeakSet = weakref.WeakSet()  # the instances hold_storage_connections was applied to


def hold_storage_connections(instance: dg.DagsterInstance) -> None:
    """Let ``instance``'s storage keep its database connections open for this process, as the webserver does:
    ``warehouse run`` asks before its run; every run asks again as its resources start (``assets.resources``), so
    the runs the daemon launches (the daily schedule, UI backfills) hold theirs too.

    Dagster's PostgreSQL storage otherwise opens and closes a connection for every event it stores: one pooled
    connection (and up to ``STORAGE_OVERFLOW`` more for the progress watcher's reads) halved the cost of an
    event there, 30.9 -> 14.6 ms (benchmarks/orchestration.py --storage postgres, docs/scaling.md). No statement
    timeout: a run's writes are not a webserver's requests. SQLite storage has nothing to hold and ignores it.
    Once per instance: each call makes new engines, and the old ones would keep their connections. The price: a
    storage server restarting during the command fails its next event write, where a new connection per event
    could have reached it again (the daemon retries a failed run: dagster.yaml's run_retries)."""
    if instance in _HELD:
        return
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=STORAGE_RECYCLE_SECONDS,
                                    max_overflow=STORAGE_OVERFLOW)
    _HELD.add(instance)


class SchemaCachingPostgresEventLogStorage(PostgresEventLogStorage):
    """:class:`dagster_postgres.PostgresEventLogStorage` that remembers which of its tables and columns exist and
    writes a run's planned events in one statement."""

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

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        kinds = {event.dagster_event_type for event in events}
        if not events or not kinds <= PLANNED:
            super().store_event_batch(events)
            return
        insert = self.prepare_insert_event_batch(events)
        table = insert.table
        # The events and the assets' rows in one transaction: if it fails, nothing of the batch is stored, and
        # Dagster's fallback (each event on its own) stores each once.
        with self.index_transaction() as conn:
            rows = conn.execute(insert.returning(table.c.id, table.c.dagster_event_type, table.c.asset_key)).fetchall()
            # PostgreSQL returns an INSERT's rows in VALUES order (the parent's batch of materializations relies on
            # it too); checked, since each index row must point at its own event.
            if [(kind, key) for _, kind, key in rows] != [_identity(event) for event in events]:
                raise RuntimeError("event_logs returned the batch's rows out of order")
            stored = [(event, int(row[0])) for event, row in zip(events, rows, strict=True)]
            for event, event_id in stored:
                if event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
                    self._store_asset_event(conn, event, event_id)
            rows: list[dict[str, Any]] = []
            for event, event_id in stored:
                if event.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
                    for row in self._planned_check_rows(event, event_id):
                        rows.append(row)
                        if len(rows) == CHECK_ROWS_PER_INSERT:
                            conn.execute(CHECK_EXECUTIONS.insert().values(rows))
                            rows.clear()
            if rows:
                conn.execute(CHECK_EXECUTIONS.insert().values(rows))

    def _planned_check_rows(self, event: dg.EventLogEntry, event_id: int) -> Iterator[dict[str, Any]]:
        """The ``asset_check_executions`` rows dagster-postgres writes for a planned check: one per partition the
        run plans it for (one with no partition when it plans none), the event serialized once."""
        planned = event.dagster_event.event_specific_data
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        serialized, at = dg.serialize_value(event), self._event_insert_timestamp(event)
        for partition in partitions:
            yield {"asset_key": planned.asset_key.to_string(), "check_name": planned.check_name, "partition": partition,
                   "run_id": event.run_id, "execution_status": "PLANNED", "evaluation_event": serialized,
                   "evaluation_event_timestamp": at, "evaluation_event_storage_id": event_id}


PLANNED = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}
# Rows per INSERT of planned checks: a run over a range plans every check for each of its days (141 checks over
# the 1,066 days from the default start would be 150,306 rows, each carrying its serialized event).
CHECK_ROWS_PER_INSERT = 1000
# The columns of Dagster's table that a planned check's rows fill (the others keep their defaults).
CHECK_EXECUTIONS = sa.table("asset_check_executions", *map(sa.column, (
    "asset_key", "check_name", "partition", "run_id", "execution_status", "evaluation_event",
    "evaluation_event_timestamp", "evaluation_event_storage_id")))


def _identity(event: dg.EventLogEntry) -> tuple[str, str | None]:
    """The event's type and asset key as ``event_logs`` holds them."""
    key = event.dagster_event.asset_key
    return event.dagster_event_type.value, key.to_string() if key else None


def _remembered(present: set[str], name: str, ask: Callable[[str], bool]) -> bool:
    """Whether ``name`` exists: True when ``present`` holds it, else what ``ask`` says, remembered when it is True."""
    if name in present:
        return True
    if ask(name):
        present.add(name)
        return True
    return False
