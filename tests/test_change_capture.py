"""Change capture by transaction (issue 17), on a real PostgreSQL: incremental tables read the rows written by
transactions the previous run did not see, whatever their timestamps say; the key comparison repairs what is
missing; wraparound and a missing record fall back to a full reconciliation. Every scenario ends with the
warehouse equal to the source (a full load of the same rows into a fresh warehouse). On both backends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import sys

import pytest

from pipelines import extract, postgres, warehouse
from pipelines.extract import CAPTURE_XMIN, CURSOR_FALLBACK, FULL_RECONCILIATION, XID_HORIZON, capture_plan
from pipelines.postgres import Snapshot, XidSnapshot
from pipelines.source_tables import SourceTable
from pipelines.warehouse import Location

pytestmark = pytest.mark.both_backends

KEY = "test-pseudonym-key"
PROBE = SourceTable("cheeko", "capture_probe", "incremental", "probe", cursor=("updated_at",), reconcile_deletes=True)
KEEPER = dataclasses.replace(PROBE, name="capture_keeper", reconcile_deletes=False)
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # far behind any watermark and its lookback


def run_sql(url: str, statement: str, params: tuple | dict = ()) -> None:
    with postgres.connect(url) as conn:
        conn.execute(statement, params)


def load(url: str, path: Location, table: SourceTable = PROBE, key: str = KEY) -> extract.LoadResult:
    return extract.extract_tables(path, {"cheeko": url}, [table], pseudonym_key=key)[table.key]


def rows(path: Location, table: SourceTable = PROBE) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(f"SELECT * FROM {extract.target_name(table)} ORDER BY id").fetchall()


def fresh_warehouse() -> Location:
    """A new, empty warehouse on the session's backend (set for each test by ``_fresh_warehouses``)."""
    raise AssertionError("only inside a test")


@pytest.fixture(autouse=True)
def _fresh_warehouses(backend, tmp_path, monkeypatch):
    numbers = itertools.count()
    monkeypatch.setattr(sys.modules[__name__], "fresh_warehouse", lambda: backend.new(tmp_path, f"fresh-{next(numbers)}"))


def equals_source(url: str, path: Location, table: SourceTable = PROBE) -> bool:
    """The warehouse's rows of ``table`` are those a full load of the source gives now."""
    fresh = fresh_warehouse()
    load(url, fresh, dataclasses.replace(table, load="full"))
    return rows(path, table) == rows(fresh, table)


def execute(path: Location, statement: str, params: dict | None = None) -> None:
    with warehouse.connect(path) as con:
        con.execute(statement, params or {})


@pytest.fixture
def probe(make_databases, warehouse_at, classify):
    """A source table of every common type with ten rows stamped last year, and an empty warehouse."""
    url = make_databases().cheeko
    for name in (PROBE.name, KEEPER.name):
        classify("cheeko", name, "id", "name", "amount", "tags", "doc", "ref", "day", "flag", "naive", "updated_at",
                 "colour")
        run_sql(url, f"""CREATE TABLE {name} (id bigint PRIMARY KEY, name text, amount numeric(12,3), tags text[],
            doc jsonb, ref uuid, day date, flag boolean, naive timestamp(3), updated_at timestamptz)""")
        run_sql(url, f"INSERT INTO {name} SELECT i, 'row ' || i, i * 1.5, ARRAY['t' || i], jsonb_build_object('i', i), "
                     f"gen_random_uuid(), date '2025-01-01' + i, mod(i, 2) = 0, timestamp '2025-01-01' + i * interval '1 hour', "
                     f"timestamptz '2025-06-01' + i * interval '1 day' FROM generate_series(1, 10) i")
    return url, warehouse_at


# -- the decision, as a pure function ----------------------------------------------------------------------


def test_the_first_load_and_a_server_without_pg_current_snapshot():
    now = XidSnapshot(1000, 1005, (1001,))
    assert capture_plan(None, now).mode == FULL_RECONCILIATION
    assert str(capture_plan(None, None)) == ("cursor fallback: the source server has no pg_current_snapshot() "
                                             "(PostgreSQL before 13)")
    assert capture_plan("not a snapshot", now).mode == FULL_RECONCILIATION


def test_rows_are_read_from_the_recorded_xmin_to_the_current_xmax():
    plan = capture_plan("1000:1005:1001,1003", XidSnapshot(1004, 1100))
    assert (plan.mode, plan.since, plan.until, str(plan)) == (CAPTURE_XMIN, 1000, 1100, "xmin")


def test_one_epoch_later_is_still_comparable_across_the_wrap():
    before = (1 << 32) + 2**32 - 50  # epoch 1, 50 ids before the 32-bit counter wraps
    plan = capture_plan(f"{before}:{before + 10}:", XidSnapshot((2 << 32) + 20, (2 << 32) + 30))
    assert plan.mode == CAPTURE_XMIN and plan.until - plan.since == 80


@pytest.mark.parametrize(("previous", "current", "reason"), [
    ("1000:1000:", XidSnapshot((2 << 32) + 10, (2 << 32) + 10), "epoch went from 0 to 2"),
    ("1000:1000:", XidSnapshot(1000 + XID_HORIZON, 1000 + XID_HORIZON), "2^31 or more"),
    ((5 << 32) + 100, XidSnapshot((4 << 32) + 7, (4 << 32) + 7), "went back"),
])
def test_wraparound_or_a_replaced_source_gives_a_full_reconciliation(previous, current, reason):
    if isinstance(previous, int):
        previous = f"{previous}:{previous}:"
    plan = capture_plan(previous, current)
    assert plan.mode == FULL_RECONCILIATION and reason in plan.reason


def test_the_xmin_filter_places_32_bit_ids_around_the_wrap(make_databases):
    """The condition PostgreSQL runs, on 32-bit ids either side of the wrap: [since, until) and nothing else."""
    url = make_databases().cheeko
    since, until = (3 << 32) + 2**32 - 5, (4 << 32) + 6  # 11 ids: 2^32-5 .. 2^32-1, then 0 .. 5 of the next epoch
    low = [2**32 - 6, 2**32 - 5, 2**32 - 1, 0, 1, 2, 3, 5, 6, 7, 2**31, 100]
    condition = extract.Capture(CAPTURE_XMIN, since=since, until=until).source_filter()
    with postgres.connect(url) as conn:
        picked = [x for (x,) in conn.execute(f"SELECT xmin FROM unnest(%s::bigint[]) AS v(xmin) WHERE {condition}",
                                             (low,)).fetchall()]
    # 0, 1 and 2 are never real row writers (invalid, bootstrap, frozen): old rows, not read.
    assert picked == [2**32 - 5, 2**32 - 1, 3, 5]


# -- on a real source ------------------------------------------------------------------------------------------


def test_back_dated_inserts_and_updates_after_a_run_are_read_by_the_next(probe):
    url, path = probe
    first = load(url, path)
    assert first.capture.startswith(FULL_RECONCILIATION) and first.rows_written == 10
    # Committed after the run, stamped years before its watermark (an import, an admin script, clock skew).
    run_sql(url, "INSERT INTO capture_probe (id, name, updated_at) VALUES (11, 'imported', %s)", (LONG_AGO,))
    run_sql(url, "UPDATE capture_probe SET name = 'fixed by hand', updated_at = %s WHERE id = 3", (LONG_AGO,))
    run_sql(url, "UPDATE capture_probe SET amount = 99.125 WHERE id = 4")  # the app forgot to touch updated_at
    run_sql(url, "DELETE FROM capture_probe WHERE id = 5")
    second = load(url, path)
    assert second.capture == CAPTURE_XMIN
    assert (second.rows_written, second.rows_deleted, second.rows_repaired) == (3, 1, 0)
    assert second.source_rows == second.warehouse_rows == 10
    assert equals_source(url, path)
    third = load(url, path)  # nothing written since: nothing read, nothing written
    assert (third.capture, third.rows_written, third.source_rows, third.warehouse_rows) == (extract.UNCHANGED, 0, 10, 10)


def test_a_full_table_no_transaction_touched_is_left_as_it_is(probe):
    url, path = probe
    full = dataclasses.replace(PROBE, load="full")
    assert load(url, path, full).rows_written == 10
    with warehouse.connect(path, read_only=True) as con:
        loads = con.execute("SELECT count(*) FROM _warehouse.loads").fetchone()[0]
    spared = load(url, path, full)
    assert (spared.capture, spared.rows_written, spared.source_rows, spared.warehouse_rows) == (extract.UNCHANGED, 0, 10, 10)
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM _warehouse.loads").fetchone()[0] == loads  # nothing committed
    # A delete alone leaves no xmin behind: the count tells it. An update does.
    run_sql(url, "DELETE FROM capture_probe WHERE id = 1")
    assert load(url, path, full).rows_written == 9
    run_sql(url, "UPDATE capture_probe SET name = 'changed' WHERE id = 2")
    assert load(url, path, full).rows_written == 9
    assert load(url, path, full).capture == extract.UNCHANGED
    assert equals_source(url, path, full)
    # Another pseudonym key, or a row edited away in the warehouse: loaded again.
    assert load(url, path, full, key="another key").rows_written == 9
    execute(path, "DELETE FROM raw_cheeko.capture_probe WHERE id = 3")
    assert load(url, path, full, key="another key").rows_written == 9
    assert equals_source(url, path, full)


def test_a_transaction_open_across_a_run_is_read_by_the_next_run(probe):
    """Its rows, including one written in a savepoint (a subtransaction, which a pg_snapshot does not list as
    running), commit after the run read its snapshot: the next run reads them."""
    url, path = probe
    load(url, path)
    with postgres.connect(url) as open_transaction:
        open_transaction.execute("UPDATE capture_probe SET name = 'long transaction', updated_at = %s WHERE id = 1",
                                 (LONG_AGO,))
        open_transaction.execute("SAVEPOINT nested")
        open_transaction.execute("INSERT INTO capture_probe (id, name, updated_at) VALUES (20, 'in a savepoint', %s)",
                                 (LONG_AGO,))
        # Another transaction commits meanwhile, so the savepoint's id lies below the run's snapshot's xmax.
        run_sql(url, "UPDATE capture_probe SET name = 'quick' WHERE id = 2")
        during = load(url, path)
        assert during.capture == CAPTURE_XMIN and during.rows_written == 1  # only the committed one
        assert 20 not in [r[0] for r in rows(path)]
        open_transaction.commit()
    after = load(url, path)
    assert after.capture == CAPTURE_XMIN and after.rows_written >= 2
    assert {r[0]: r[1] for r in rows(path)}[20] == "in a savepoint"
    assert equals_source(url, path)


def test_postgres_query_reads_the_runs_snapshot(probe):
    """The changed rows are read through postgres_query: it must run in the transaction that imported the run's
    snapshot, or a row committed after the snapshot would be loaded and its transaction never read again."""
    url, path = probe
    load(url, path)
    run_sql(url, "UPDATE capture_probe SET name = 'before the snapshot' WHERE id = 6")
    with Snapshot(url) as snapshot, warehouse.connect(path) as con:
        warehouse.attach_source(con, "src_cheeko", url)
        run_sql(url, "UPDATE capture_probe SET name = 'after the snapshot' WHERE id = 7")
        result = extract.extract_table(con, PROBE, snapshot, alias="src_cheeko", pseudonym_key=KEY)
    assert result.capture == CAPTURE_XMIN and result.rows_written == 1
    names = {r[0]: r[1] for r in rows(path)}
    assert names[6] == "before the snapshot" and names[7] == "row 7"
    assert load(url, path).rows_written == 1
    assert equals_source(url, path)


@pytest.mark.parametrize("moved", ["the record", "the source"])
def test_an_epoch_change_gives_a_full_reconciliation_with_its_reason(probe, monkeypatch, moved):
    """The epoch cannot be advanced cheaply on a real server. Either the recorded snapshot is fabricated two epochs
    ahead of the source (a source restored or replaced), or the source's snapshot is shifted two epochs on (a
    wraparound since the previous run): both must read the table whole."""
    url, path = probe
    load(url, path)
    # What xmin cannot see: a row changed in the warehouse by hand. Only reading everything puts it right.
    execute(path, "UPDATE raw_cheeko.capture_probe SET name = 'stale' WHERE id = 8")
    with Snapshot(url) as snapshot:
        now = snapshot.xids
    two_epochs = 2 << 32
    if moved == "the record":
        execute(path, "UPDATE _warehouse.captures SET xid_snapshot = $s",
                {"s": str(XidSnapshot(now.xmin + two_epochs, now.xmax + two_epochs))})
        reason = f"(epoch {now.epoch + 2}) to "
    else:
        real_init = Snapshot.__init__

        def wrapped_twice(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            self.xids = XidSnapshot(self.xids.xmin + two_epochs, self.xids.xmax + two_epochs)

        monkeypatch.setattr(Snapshot, "__init__", wrapped_twice)
        reason = f"epoch went from {now.epoch} to {now.epoch + 2}"
    result = load(url, path)
    assert result.capture.startswith(f"{FULL_RECONCILIATION}: ") and reason in result.capture
    assert result.rows_written == 10
    assert equals_source(url, path)
    with warehouse.connect(path, read_only=True) as con:
        how = con.execute("SELECT capture FROM _warehouse.loads ORDER BY finished_at DESC LIMIT 1").fetchone()[0]
    assert how == result.capture  # the run's bookkeeping says it too


def test_missing_and_extra_keys_are_repaired_in_the_same_run(probe):
    url, path = probe
    load(url, path)
    load(url, path, KEEPER)
    # Rows lost by an earlier load (the clock cursor's back-dated rows), and one that is not at the source.
    for table in (PROBE, KEEPER):
        execute(path, f"DELETE FROM {extract.target_name(table)} WHERE id IN (2, 9)")
        execute(path, f"INSERT INTO {extract.target_name(table)} (id, name) VALUES (500, 'gone at the source')")
    result = load(url, path)
    assert (result.capture, result.rows_written, result.rows_repaired, result.rows_deleted) == (CAPTURE_XMIN, 0, 2, 1)
    assert result.source_rows == result.warehouse_rows == 10
    assert equals_source(url, path)
    # Without reconcile_deletes a row gone at the source is kept, and said; the missing ones are reloaded all the same.
    kept = load(url, path, KEEPER)
    assert (kept.rows_repaired, kept.rows_deleted, kept.rows_kept) == (2, 0, 1)
    assert kept.source_rows == kept.warehouse_rows - kept.rows_kept == 10


def test_a_row_with_no_key_written_by_hand_does_not_stop_the_repair(probe):
    """A NULL key in the warehouse (no source row has one) is neither gone nor in the way of repairing the keys the
    warehouse lacks (``NOT IN`` would find none missing once a NULL is there); it is counted as a duplicate key,
    so the ``matches_source`` check fails on it."""
    url, path = probe
    for table in (PROBE, KEEPER):
        load(url, path, table)
        execute(path, f"DELETE FROM {extract.target_name(table)} WHERE id = 4")
        execute(path, f"INSERT INTO {extract.target_name(table)} (id, name) VALUES (NULL, 'written by hand')")
    result = load(url, path)
    assert (result.rows_repaired, result.rows_deleted, result.duplicate_keys) == (1, 0, 1)
    assert result.source_rows == 10 and result.warehouse_rows == 11
    kept = load(url, path, KEEPER)
    assert (kept.rows_repaired, kept.rows_deleted, kept.rows_kept, kept.duplicate_keys) == (1, 0, 0, 1)
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {extract.target_name(PROBE)} WHERE id = 4").fetchone()[0] == 1


def test_a_new_pseudonym_key_or_column_reads_every_row_again(probe):
    url, path = probe
    load(url, path)
    assert load(url, path, key="another key").capture == (f"{FULL_RECONCILIATION}: the columns read, the privacy "
                                                          f"policy or the pseudonym key changed")
    run_sql(url, "ALTER TABLE capture_probe ADD COLUMN colour text DEFAULT 'blue'")
    result = load(url, path, key="another key")
    assert result.capture.startswith(FULL_RECONCILIATION) and result.added_columns == ["colour"]
    assert equals_source(url, path)


def test_without_pg_current_snapshot_the_cursor_is_used_and_the_record_dropped(probe, monkeypatch):
    url, path = probe
    load(url, path)
    run_sql(url, "UPDATE capture_probe SET name = 'recent', updated_at = now() WHERE id = 1")
    real_init = Snapshot.__init__

    def old_server(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.xids = None  # what a PostgreSQL 12 source gives

    with pytest.MonkeyPatch.context() as patch:  # only the server's age: the probe's privacy rules stay
        patch.setattr(Snapshot, "__init__", old_server)
        fallback = load(url, path)
    # The updated row, and the latest one again (at the watermark, inside its lookback).
    assert fallback.capture.startswith(f"{CURSOR_FALLBACK}: ") and fallback.rows_written == 2
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM _warehouse.captures").fetchone()[0] == 0
    # What the cursor may have missed meanwhile is not bounded by any snapshot: the next capture reads it all.
    assert load(url, path).capture.startswith(FULL_RECONCILIATION)
    assert equals_source(url, path)
