"""What ``warehouse run`` tells a scheduler: exit 0 when the work is done (failed WARN checks printed), 1 when it
is not (a failed asset or ERROR check, a source lost mid-run: one line naming it), 2 for a configuration error
found before any run starts (one line). On a real PostgreSQL, DuckDB file and Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from assets import raw, runs
from pipelines import cli
from pipelines.settings import load

ROOT = Path(__file__).resolve().parents[1]


def _warehouse_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", *args], cwd=ROOT,
                          env={**os.environ, **env}, text=True, capture_output=True, timeout=600)


def test_failed_warn_checks_are_printed_and_the_run_exits_0(on_materialized):
    env, home = on_materialized
    result = _warehouse_run({**env, "DAGSTER_HOME": str(home)}, "--select", "key:marts/app_counter_drift")
    assert result.returncode == 0, result.stderr
    assert "warning: check failed: marts/app_counter_drift:app_counter_drift" in result.stdout
    assert "1 warning(s)" in result.stdout.splitlines()[-1]


def test_a_configured_database_without_a_pseudonym_key_is_one_line_and_exit_2_before_any_run(on_materialized):
    env, home = on_materialized
    env = {k: v for k, v in env.items() if k != "WAREHOUSE_PSEUDONYM_KEY"} | {"DAGSTER_HOME": str(home)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = len(instance.get_runs())
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=ROOT, text=True, capture_output=True,
                            timeout=300, env={k: v for k, v in {**os.environ, **env}.items() if k != "WAREHOUSE_PSEUDONYM_KEY"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "WAREHOUSE_PSEUDONYM_KEY must be set" in result.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == before


def test_a_table_that_no_longer_loads_fails_alone_and_the_rest_runs(configured):
    env, home = configured
    with psycopg.connect(env["COGNOVA_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("ALTER TABLE reminders RENAME TO reminders_retired")  # the app dropped it
    lines: list[str] = []
    selection = "group:cognova_raw or key:marts/cognova_activity_daily or key:marts/cognova_cost_daily"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with pytest.raises(runs.RunFailed, match=r"raw_cognova/reminders:matches_source failed: "
                                                 r"cognova.reminders"):
            runs.materialize(load(), instance, selection=selection, progress=lines.append)
    done = {line.split()[0] for line in lines if line.startswith("  ") and " rows" in line}
    assert {"raw_cognova/token_usage", "marts/cognova_cost_daily", "raw_cognova/tasks"} <= done
    assert "raw_cognova/reminders" not in done and "marts/cognova_activity_daily" not in done
    assert any("cognova_activity_daily" in line and "not run" in line for line in lines)
    assert any(line.startswith("  failed: raw_cognova/reminders:matches_source") for line in lines)


def test_a_source_lost_mid_run_is_one_line_exit_1_and_the_rerun_recovers(on_materialized, monkeypatch, capsys):
    env, home = on_materialized
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("WAREHOUSE_PARTITIONS_START", load().partitions_start.isoformat())
    real = raw.extract.extract_table
    seen: list[str] = []

    def extract_then_lose_the_source(con, table, *args, **kwargs):
        seen.append(table.name)
        if len(seen) == 3:  # the server restarts under the third table: every connection to it is cut
            with psycopg.connect(env["CHEEKO_DATABASE_URL"], autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return real(con, table, *args, **kwargs)

    monkeypatch.setattr(raw.extract, "extract_table", extract_then_lose_the_source)
    assert cli.main(["run", "--select", "group:cheeko_raw"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"cheeko.{seen[2]}: extraction stopped" in error[0]
    monkeypatch.setattr(raw.extract, "extract_table", real)
    assert cli.main(["run", "--select", "group:cheeko_raw"]) == 0
    assert "check failed" not in capsys.readouterr().out


def test_a_submitted_run_is_followed_into_the_retry_the_deployment_announced():
    """Through a webserver a failed run may be retried by its daemon as a new run: the command follows that
    one (``dagster/will_retry`` on the failed run, ``dagster/parent_run_id`` on its retry)."""

    @dg.op
    def noop():
        return None

    @dg.job
    def attempts():
        noop()

    with dg.DagsterInstance.ephemeral() as instance:
        announced = attempts.execute_in_process(instance=instance, tags={"dagster/will_retry": "true"}).run_id
        retry = attempts.execute_in_process(instance=instance, tags={"dagster/parent_run_id": announced}).run_id
        final = attempts.execute_in_process(instance=instance).run_id
        assert runs._retry_of(instance, instance.get_run_by_id(announced)) == retry
        assert runs._retry_of(instance, instance.get_run_by_id(final)) is None  # no retry announced: none awaited
