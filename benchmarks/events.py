"""Benchmark: what Dagster costs per stored event, by instance storage, with no work inside the step.

One multi-asset of ``--assets`` assets (default 60) with two checks each, the shape of a raw step, yields a
materialization and two passed checks per asset and does nothing else; it is materialized ``--repeat`` times
(default 3, medians) in this process on each instance storage:

1. SQLite files on disk: this repository's ``dagster.yaml`` in a temporary folder (baseline);
2. the same SQLite files in memory (``/dev/shm``, when there is one): how much of SQLite's cost is its sync to
   disk after every event;
3. PostgreSQL, as ``warehouse run`` uses it on the embedded defaults: ``deploy/dagster.postgres.yaml`` in a
   throwaway database ``events_dagster`` on the configured (or embedded) server, ``DAGSTER_EVENT_BATCH_SIZE``
   as ``pipelines/dagster_home.py`` sets it, the storage's connections held (``instance_storage.hold_storage_connections``);
4. the same with dagster-postgres's own event log in place of ``assets/instance_storage.py``'s (which remembers
   the tables it has and writes a run's planned events in one statement); 3 and 4 alternate, each run on a fresh
   database.

Printed per storage: seconds per run, events per run, milliseconds per event, and the ratio to the baseline.

    .venv/bin/python benchmarks/events.py [--assets 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
import dagster as dg
from common import instance_on_postgres

from pipelines import dagster_home, postgres
from pipelines.databases import database_url
from pipelines.settings import load

DATABASE = "events_dagster"
OURS = "PostgreSQL, as warehouse run uses it"
PLAIN = "PostgreSQL, dagster-postgres's own log"
# deploy/dagster.postgres.yaml's event log (assets/instance_storage.py) swapped for the one it extends.
PLAIN_EVENT_LOG = ("module: assets.instance_storage\n  class: SchemaCachingPostgresEventLogStorage",
                   "module: dagster_postgres.event_log\n  class: PostgresEventLogStorage")
MEMORY = Path("/dev/shm")
CHECKS = ("first", "second")


def job(assets: int) -> dg.JobDefinition:
    specs = [dg.AssetSpec(dg.AssetKey(["events", f"t{i}"])) for i in range(assets)]

    @dg.multi_asset(specs=specs, check_specs=[dg.AssetCheckSpec(n, asset=s.key) for s in specs for n in CHECKS],
                    name="events")
    def _events():
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"dagster/row_count": 1}, check_results=[
                dg.AssetCheckResult(asset_key=spec.key, check_name=n, passed=True) for n in CHECKS])

    return dg.Definitions(assets=[_events]).resolve_implicit_global_asset_job_def()


def measure(home: Path, the_job: dg.JobDefinition, repeat: int, hold: bool) -> tuple[float, int]:
    """Median seconds of ``repeat`` runs on the instance at ``home``, and the events one run stored."""
    from assets.instance_storage import hold_storage_connections
    from assets.runs import QUIET_LOGS

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        if hold:
            hold_storage_connections(instance)
        the_job.execute_in_process(instance=instance, run_config=QUIET_LOGS)  # tables made, caches warm
        seconds = []
        for _ in range(repeat):
            began = time.perf_counter()
            result = the_job.execute_in_process(instance=instance, run_config=QUIET_LOGS)
            seconds.append(time.perf_counter() - began)
        return statistics.median(seconds), len(instance.all_logs(result.run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    the_job = job(args.assets)
    admin = postgres.with_database(database_url(load(), "cheeko"), "postgres")
    figures: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
        on_disk = Path(folder) / "sqlite"
        on_disk.mkdir()
        shutil.copyfile(dagster_home.ON_SQLITE, on_disk / "dagster.yaml")
        figures["SQLite, on disk"] = measure(on_disk, the_job, args.repeat, hold=False)
        if MEMORY.is_dir():
            with tempfile.TemporaryDirectory(dir=MEMORY) as memory:
                shutil.copyfile(dagster_home.ON_SQLITE, Path(memory) / "dagster.yaml")
                figures["SQLite, in memory (/dev/shm)"] = measure(Path(memory), the_job, args.repeat, hold=False)
        # Ours and dagster-postgres's own event log, alternately (this machine's speed moves between minutes).
        runs: dict[str, list[tuple[float, int]]] = {OURS: [], PLAIN: []}
        try:
            for _ in range(args.repeat):
                for name in runs:
                    home = Path(folder) / f"postgres_{len(runs[name])}_{name == PLAIN}"
                    home.mkdir()
                    instance_on_postgres(home, admin, DATABASE)
                    if name == PLAIN:
                        config = (home / "dagster.yaml").read_text()
                        (home / "dagster.yaml").write_text(config.replace(*PLAIN_EVENT_LOG))
                    runs[name].append(measure(home, the_job, 1, hold=True))
        finally:
            postgres.drop_database(admin, DATABASE)
        for name, measured in runs.items():
            figures[name] = (statistics.median(seconds for seconds, _ in measured), measured[0][1])
    print(f"\nevents --assets {args.assets} --repeat {args.repeat}: one step, {args.assets} materializations "
          f"and {2 * args.assets} checks, no work inside (medians)")
    base = next(iter(figures.values()))[0]
    for name, (seconds, events) in figures.items():
        ratio = "baseline" if seconds is base else f"{seconds / base:.2f}x the baseline"
        print(f"   {name:<38} {seconds:6.2f} s a run   {events:,} events   {seconds / events * 1000:5.1f} ms an event   {ratio}")


if __name__ == "__main__":
    main()
