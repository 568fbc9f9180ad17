"""The production instance configurations in ``deploy/`` load, and run, against a real PostgreSQL.

``deploy/dagster.postgres.yaml`` is loaded as a DAGSTER_HOME's dagster.yaml,
with its DAGSTER_PG_* variables pointing at a throwaway database on the
session's server; a run goes through it and is read back from PostgreSQL.
``deploy/dagster.k8s.yaml`` is loaded the same way (when dagster-k8s is
installed) with a kubeconfig for a server that does not exist: the run
launcher only reads its configuration until a run is launched.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from assets import instance_storage
from assets.instance_storage import SchemaCachingPostgresEventLogStorage
from assets.resources import SourceDatabases
from pipelines import postgres

ROOT = Path(__file__).resolve().parents[1]
BASE_YAML = ROOT / "dagster.yaml"
POSTGRES_YAML = ROOT / "deploy" / "dagster.postgres.yaml"
K8S_YAML = ROOT / "deploy" / "dagster.k8s.yaml"
HEARTBEAT_KEY = dg.AssetKey("heartbeat")


@dg.asset(key=HEARTBEAT_KEY)
def heartbeat() -> int:
    """A trivial asset: enough to make the instance store a run and its events."""
    return 1


@dg.asset
def reads_a_source(sources: SourceDatabases) -> None:
    """Needs the operational databases' resource, as every raw asset and the memory sync do; reads nothing."""


@pytest.fixture
def dagster_database(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch):
    """A throwaway database for Dagster's storage; DAGSTER_PG_* point at it. Yields its URL."""
    name = f"test_dagster_{os.getpid()}"
    postgres.drop_database(pg_admin_url, name)
    postgres.ensure_database(pg_admin_url, name)
    server = urlsplit(pg_admin_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", server.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(server.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", server.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", server.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    yield postgres.with_database(pg_admin_url, name)
    postgres.drop_database(pg_admin_url, name)


def _home(tmp_path: Path, config_text: str) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(config_text)
    return home


STORAGES = ("run_storage", "event_log_storage", "schedule_storage")


def test_deploy_configs_are_the_repository_config_plus_storage_and_launcher():
    base = yaml.safe_load(BASE_YAML.read_text())
    variant = yaml.safe_load(POSTGRES_YAML.read_text())
    k8s = yaml.safe_load(K8S_YAML.read_text())
    # Everything dagster.yaml sets (telemetry, pools, retries, ...) carries over unchanged.
    assert {k: v for k, v in variant.items() if k not in STORAGES} == base, "update deploy/dagster.postgres.yaml"
    assert {k: v for k, v in k8s.items() if k not in (*STORAGES, "run_launcher")} == base, "update deploy/dagster.k8s.yaml"
    assert all(k8s[name] == variant[name] for name in STORAGES)
    # One database for all three, over psycopg2.
    databases = [variant[name]["config"]["postgres_db"] for name in STORAGES]
    assert all(database == databases[0] for database in databases)
    assert databases[0]["scheme"] == "postgresql+psycopg2"


def test_the_embedded_instance_is_the_postgres_config_with_the_embedded_server_filled_in():
    """What `warehouse` writes for the embedded defaults: deploy/dagster.postgres.yaml, every DAGSTER_PG_* variable
    replaced by the embedded server's value (`test_cli`'s demo runs on it), nothing else changed."""
    from pipelines import dagster_home

    variant = yaml.safe_load(POSTGRES_YAML.read_text())
    embedded = yaml.safe_load(dagster_home.on_embedded_server(54329))
    filled = {"hostname": "127.0.0.1", "port": 54329, "username": "postgres", "password": "",
              "db_name": dagster_home.DAGSTER_DATABASE, "scheme": "postgresql+psycopg2"}
    for name in STORAGES:
        assert embedded[name]["config"]["postgres_db"] == filled
        assert set(filled) == set(variant[name]["config"]["postgres_db"])
        assert {k: v for k, v in embedded[name].items() if k != "config"} == \
            {k: v for k, v in variant[name].items() if k != "config"}
    assert {k: v for k, v in embedded.items() if k not in STORAGES} == \
        {k: v for k, v in variant.items() if k not in STORAGES}


def test_postgres_instance_stores_runs_and_events_in_postgres(tmp_path, dagster_database):
    home = _home(tmp_path, POSTGRES_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, SchemaCachingPostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        # Processes the daemon launches open the instance from its recorded classes: the caching one too.
        assert instance.get_ref().event_storage_data.class_name == SchemaCachingPostgresEventLogStorage.__name__
        pools = instance.get_concurrency_config().pool_config
        assert (pools.pool_granularity.value, pools.default_pool_limit) == ("run", 1)

        result = dg.materialize([heartbeat], instance=instance)
        assert result.success
        assert instance.all_instigator_state() == []  # schedule storage answers

    # A new instance (as another process would open it) reads the run back.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(HEARTBEAT_KEY)
        assert event is not None and event.run_id == result.run_id

    # The rows are in PostgreSQL, and no SQLite storage was made beside the config.
    with postgres.connect(dagster_database) as conn:
        runs = conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()[0]
        materializations = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (result.run_id,)).fetchone()[0]
    assert (runs, materializations) == (1, 1)
    assert not list(home.rglob("*.db"))


def test_the_event_log_remembers_the_tables_it_has_and_asks_again_for_those_it_lacks(tmp_path, dagster_database):
    """The schema-caching event log: a table found once is not looked up again (it still answers after the table
    is renamed away behind its back), and one not found is looked up each time (a migration made beside a
    long-lived process is seen)."""
    home = _home(tmp_path, POSTGRES_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, SchemaCachingPostgresEventLogStorage)
        assert storage.has_table("asset_event_tags") and storage.has_asset_key_col("cached_status_data")
        assert not storage.has_table("warehouse_probe")
        with postgres.connect(dagster_database) as conn:
            conn.execute("ALTER TABLE asset_event_tags RENAME TO asset_event_tags_away")
            conn.execute("CREATE TABLE warehouse_probe (id int)")
        try:
            assert storage.has_table("asset_event_tags")  # remembered: no catalogue query
            assert PostgresEventLogStorage.has_table(storage, "asset_event_tags") is False  # what asking would say
            assert storage.has_table("warehouse_probe")  # asked again, and now there
        finally:
            with postgres.connect(dagster_database) as conn:
                conn.execute("ALTER TABLE asset_event_tags_away RENAME TO asset_event_tags")
        # And it stores runs as dagster-postgres's own does.
        result = dg.materialize([heartbeat], instance=instance)
        assert result.success and instance.get_latest_materialization_event(HEARTBEAT_KEY).run_id == result.run_id


PAIR = [dg.AssetKey("first"), dg.AssetKey("second")]


@dg.multi_asset(specs=[dg.AssetSpec(key) for key in PAIR],
                check_specs=[dg.AssetCheckSpec(name, asset=key) for key in PAIR for name in ("size", "keys")])
def pair():
    """Two assets with two checks each, one failing: the shape of a raw step."""
    for key in PAIR:
        yield dg.MaterializeResult(asset_key=key, metadata={"rows": 1})
        for name in ("size", "keys"):
            yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=name == "size")


@dg.asset(key="third", check_specs=[dg.AssetCheckSpec("size", asset="third")])
def third():
    """Fails: its planned events are all the index holds of it (the asset's last run, a check still planned)."""
    raise RuntimeError("the source went away")


@dg.asset(key="daily", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"),
          backfill_policy=dg.BackfillPolicy.single_run(), check_specs=[dg.AssetCheckSpec("size", asset="daily")])
def daily():
    """Daily partitions, materialized over a range in one run as `warehouse run` does."""
    yield dg.MaterializeResult(metadata={"rows": 1})
    yield dg.AssetCheckResult(check_name="size", passed=True)


RANGE = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-03"}
PLANNED_CASES = {
    # case: the assets, the run's tags, DAGSTER_EVENT_BATCH_SIZE, one planned event per asset over the range
    "a failed step": ([pair, third], {}, "100", False),
    "a range, planned per day, in batches of two": ([daily], RANGE, "2", False),
    "a range, planned as one subset": ([daily], RANGE, "100", True),
}


def _stored(url: str, run_id: str) -> dict:
    """What an instance's storage holds for ``run_id``: its events in order, the asset and check index rows."""
    with postgres.connect(url) as conn:
        events = conn.execute("SELECT id, dagster_event_type, asset_key, partition FROM event_logs WHERE run_id = %s "
                              "AND dagster_event_type IS NOT NULL ORDER BY id", (run_id,)).fetchall()
        rank = {event_id: i for i, (event_id, *_) in enumerate(events)}
        assets = conn.execute("SELECT asset_key, last_run_id, last_materialization_timestamp IS NOT NULL, "
                              "last_materialization IS NOT NULL FROM asset_keys ORDER BY asset_key").fetchall()
        # Each row's event as stored, and its time that of the event it points at.
        checks = conn.execute("SELECT asset_key, check_name, partition, execution_status, "
                              "evaluation_event::json->>'__class__', evaluation_event_timestamp = "
                              "(SELECT timestamp FROM event_logs WHERE id = evaluation_event_storage_id), "
                              "evaluation_event_storage_id, materialization_event_storage_id FROM asset_check_executions "
                              "WHERE run_id = %s ORDER BY asset_key, check_name, partition", (run_id,)).fetchall()
    return {"events": [tuple(row) for _, *row in events],
            "assets": [(key, last == run_id, *flags) for key, last, *flags in assets],
            # Storage ids differ between databases: which event of the run each check row points at.
            "checks": [(*row, rank.get(evaluation), rank.get(materialization))
                       for *row, evaluation, materialization in checks]}


@pytest.mark.parametrize("case", PLANNED_CASES)
def test_planned_events_written_in_one_statement_store_what_dagster_postgres_stores(
        case, tmp_path, dagster_database, pg_admin_url, monkeypatch):
    """The caching event log writes a run's planned events (of two kinds, which dagster-postgres writes one by one)
    in one INSERT per batch: the run's events, the asset rows and the check executions come out as dagster-postgres's
    own storage writes them, run for run; for an asset whose step failed, they are all the index holds."""
    from assets.runs import PLANNED_AS_RANGE

    assets, tags, batch_size, as_range = PLANNED_CASES[case]
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)  # as `warehouse run` sets it: the planned events come as batches
    monkeypatch.setattr(instance_storage, "CHECK_ROWS_PER_INSERT", 2)  # the daily check's three days: two INSERTs
    if as_range:
        monkeypatch.setenv(PLANNED_AS_RANGE, "true")
    plain_config = POSTGRES_YAML.read_text().replace(
        "module: assets.instance_storage\n  class: SchemaCachingPostgresEventLogStorage",
        "module: dagster_postgres.event_log\n  class: PostgresEventLogStorage")
    assert "PostgresEventLogStorage\n" in plain_config
    plain_name = f"{urlsplit(dagster_database).path.lstrip('/')}_plain"
    postgres.drop_database(pg_admin_url, plain_name)
    postgres.ensure_database(pg_admin_url, plain_name)
    stored, single, batches = {}, [], []
    try:
        for name, config, url in (("ours", POSTGRES_YAML.read_text(), dagster_database),
                                  ("plain", plain_config, postgres.with_database(pg_admin_url, plain_name))):
            monkeypatch.setenv("DAGSTER_PG_DB", urlsplit(url).path.lstrip("/"))
            (tmp_path / name).mkdir()
            home = _home(tmp_path / name, config)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                storage = instance.event_log_storage
                assert (type(storage) is SchemaCachingPostgresEventLogStorage) == (name == "ours")
                one_by_one, in_batches = storage.store_event, storage.store_event_batch
                monkeypatch.setattr(storage, "store_event",
                                    lambda event, _store=one_by_one: single.append((name, event.dagster_event_type))
                                    or _store(event))
                monkeypatch.setattr(storage, "store_event_batch",
                                    lambda events, _store=in_batches: batches.append((name, len(events)))
                                    or _store(events))
                result = dg.materialize(assets, instance=instance, tags=tags, raise_on_error=False)
            assert result.success == (case != "a failed step")
            stored[name] = _stored(url, result.run_id)
    finally:
        postgres.drop_database(pg_admin_url, plain_name)
    planned = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}
    assert not [kind for name, kind in single if name == "ours" and kind in planned]
    assert [kind for name, kind in single if name == "plain" and kind in planned]  # what it replaces
    sizes = [size for name, size in batches if name == "ours"]
    assert sizes and max(sizes) <= int(batch_size) and (len(sizes) > 1 or batch_size == "100")  # split when small
    assert stored["ours"] == stored["plain"]
    if case == "a failed step":
        assert [row[3] for row in stored["ours"]["checks"]] == ["FAILED", "SUCCEEDED"] * 2 + ["PLANNED"]
        assert [row[:2] for row in stored["ours"]["assets"]] == [('["first"]', True), ('["second"]', True),
                                                                 ('["third"]', True)]
    else:
        partitions = {row[2] for row in stored["ours"]["events"] if row[0] == "ASSET_MATERIALIZATION"}
        assert partitions == {"2026-11-01", "2026-11-02", "2026-11-03"}


def _sessions(url: str) -> int:
    """Connections ever made to ``url``'s database (closed ones are counted when they close)."""
    with postgres.connect(url) as conn:
        return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def test_warehouse_run_holds_its_storage_connections(tmp_path, dagster_database):
    """`warehouse run` (runs.materialize) keeps Dagster's PostgreSQL storage connected for the command, instead of a
    new connection per stored event: the sessions opened during a run stay a few, whatever the number of events."""
    home = _home(tmp_path, POSTGRES_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dg.materialize([heartbeat], instance=instance)  # tables made, migrations checked
        before = _sessions(dagster_database)
        unheld = dg.materialize([heartbeat], instance=instance)
        per_event = _sessions(dagster_database) - before - 1  # less this test's own connection
        events = len(instance.all_logs(unheld.run_id))
        assert per_event >= events / 2, "Dagster's storage pools its connections by itself now: drop the helper"

        instance_storage.hold_storage_connections(instance)
        instance_storage.hold_storage_connections(instance)  # a second command on the same instance: nothing more held
        before = _sessions(dagster_database)
        held = dg.materialize([heartbeat], instance=instance)
        assert held.success and len(instance.all_logs(held.run_id)) == events
        assert _sessions(dagster_database) - before - 1 <= 3


def test_a_run_the_daemon_launches_holds_its_storage_connections_as_its_resources_start(tmp_path, dagster_database):
    """The daily schedule's runs and UI backfills never pass through `warehouse run`: the run worker the daemon
    starts opens the instance itself. The pipeline's resources hold the connections as they start, so such a run
    stores its events over a few connections too."""
    home = _home(tmp_path, POSTGRES_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dg.materialize([heartbeat], instance=instance)  # tables made, migrations checked
        before = _sessions(dagster_database)
        dg.materialize([heartbeat], instance=instance)  # no resource of the pipeline's: a connection per event
        unheld = _sessions(dagster_database) - before - 1
        assert dg.materialize([reads_a_source], instance=instance, resources={"sources": SourceDatabases()}).success
        # From its resources' start on, the run's events went over held connections, and so do later runs'.
        before = _sessions(dagster_database)
        dg.materialize([heartbeat], instance=instance)
        assert unheld > 10 and _sessions(dagster_database) - before - 1 <= 3


FAKE_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""


def test_k8s_instance_builds_its_run_launcher(tmp_path, dagster_database, monkeypatch):
    dagster_k8s = pytest.importorskip("dagster_k8s")
    config = yaml.safe_load(K8S_YAML.read_text())
    # No cluster here: read a kubeconfig file instead of the in-cluster service account.
    # Nothing is contacted until a run is launched.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    config["run_launcher"]["config"] |= {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "warehouse")
    monkeypatch.setenv("WAREHOUSE_IMAGE", "registry.example/companion-warehouse:test")
    home = _home(tmp_path, yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, dagster_k8s.K8sRunLauncher)
        assert (launcher.job_namespace, launcher.job_image) == ("warehouse", "registry.example/companion-warehouse:test")
        assert launcher.env_secrets == ["warehouse-secrets"]
        assert [v["name"] for v in launcher.volumes] == ["warehouse"]
        assert isinstance(instance.run_storage, PostgresRunStorage)
        # The pool's one-run-at-a-time is enforced by the queue, so runs must go through it.
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
