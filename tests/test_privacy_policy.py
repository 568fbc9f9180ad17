"""Privacy that fails closed (issue 14): every source column has a rule in ``privacy.toml``; a column without one
is withheld (not read) and listed; a changed rule applies to the rows already loaded. On a real PostgreSQL and a
real DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines import analyst_extracts, extract, generator, postgres, privacy, warehouse
from pipelines.postgres import Snapshot
from pipelines.settings import DATABASES, load
from pipelines.source_tables import source_table, source_tables

ROOT = Path(__file__).resolve().parents[1]
END = dt.date(2026, 3, 31)
ALL_DAYS = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
KEY = "test-pseudonym-key"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sql(url: str, *statements: str) -> None:
    with postgres.connect(url) as conn:
        for statement in statements:
            conn.execute(statement)


def _extract(path: Path, urls: dict[str, str], tables, window=ALL_DAYS) -> dict[str, extract.LoadResult]:
    tables = list(tables)
    return extract.extract_tables(path, urls, tables, pseudonym_key=KEY, windows={t.key: window for t in tables})


def _rows(path: Path, statement: str) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(statement).fetchall()


def _with_rules(monkeypatch, changes: dict[tuple[str, str, str], str]) -> None:
    """The policy with ``changes`` ({(database, table, column): rule}), as if someone had edited privacy.toml."""
    policy = {key: dict(rules) for key, rules in privacy.policy().items()}
    for (database, table, column), rule in changes.items():
        policy.setdefault((database, table), {})[column] = rule
    monkeypatch.setattr(privacy, "policy", lambda path=privacy.POLICY_FILE: policy)


@pytest.fixture
def fleet(make_databases, tmp_path):
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=12, days=5, seed=9, end=END), tmp_path / "gen",
                       progress=lambda _: None)
    return {"cheeko": pair.cheeko, "cognova": pair.cognova}, tmp_path / "warehouse.duckdb"


def test_every_column_of_every_source_table_has_a_rule(make_databases):
    """The policy is the complete inventory: a migration that adds a column fails here until it is classified."""
    pair = make_databases()
    missing, stale = [], []
    for database in DATABASES:
        with Snapshot(pair.url(database)) as snapshot:
            for table in (t for t in source_tables() if t.database == database):
                columns = {c.name for c in snapshot.columns(table.name)}
                named = set(privacy.policy().get((database, table.name), {}))
                missing += [f"{database}.{table.name}.{c}" for c in sorted(columns - named)]
                stale += [f"{database}.{table.name}.{c}" for c in sorted(named - columns)]
    assert missing == [], "classify these in pipelines/privacy.toml"
    assert stale == [], "privacy.toml names columns the migrated databases do not have"
    assert set(privacy.policy()) == {(t.database, t.name) for t in source_tables()}


def test_a_column_without_a_rule_is_withheld_listed_and_the_run_goes_on(fleet):
    urls, path = fleet
    _sql(urls["cheeko"], "ALTER TABLE kid_profile ADD COLUMN home_address text",
         "UPDATE kid_profile SET home_address = 'KNOWN-ADDRESS 12 Elm Street' WHERE ctid IN (SELECT ctid FROM kid_profile LIMIT 3)")
    results = _extract(path, urls, source_tables())
    kid = results["cheeko.kid_profile"]
    assert kid.withheld == [("home_address", "text")]
    assert all(not r.withheld for key, r in results.items() if key != "cheeko.kid_profile")
    columns = {c for (c,) in _rows(path, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'kid_profile'")}
    assert "home_address" not in columns and "grade" in columns  # the rest of the table loads
    assert kid.warehouse_rows == kid.source_rows > 0
    assert b"KNOWN-ADDRESS" not in path.read_bytes()
    # `warehouse privacy` lists it with its type and how many rows hold a value, never a value.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAREHOUSE_")}
    env |= {"CHEEKO_DATABASE_URL": urls["cheeko"], "COGNOVA_DATABASE_URL": urls["cognova"]}
    listed = subprocess.run([sys.executable, "-m", "pipelines.cli", "privacy"], cwd=ROOT, env=env, text=True,
                            capture_output=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "cheeko.kid_profile.home_address" in line)
    with postgres.connect(urls["cheeko"]) as conn:
        kids = conn.execute("SELECT count(*) FROM kid_profile").fetchone()[0]
    assert re.search(rf"\btext\b.*\b3 of {kids} rows hold a value", line), line
    assert "KNOWN-ADDRESS" not in listed.stdout
    assert listed.stdout.splitlines()[-1].startswith("1 column(s) wait for a rule in pipelines/privacy.toml")
    # Classified, it is read from then on, for every row.
    kid_table = source_table("cheeko", "kid_profile")
    with pytest.MonkeyPatch.context() as patch:
        _with_rules(patch, {("cheeko", "kid_profile", "home_address"): "length"})
        again = _extract(path, urls, [kid_table])["cheeko.kid_profile"]
    assert again.withheld == []
    assert _rows(path, "SELECT count(home_address) FROM raw_cheeko.kid_profile") == [(3,)]


def test_a_tightened_rule_rewrites_what_was_loaded_and_a_loosened_one_reloads_it(fleet, monkeypatch):
    urls, path = fleet
    _extract(path, urls, source_tables())
    clear_grades = {g for (g,) in _rows(path, "SELECT DISTINCT grade FROM raw_cheeko.kid_profile WHERE grade IS NOT NULL")}
    assert clear_grades and not any(HEX64.match(g) for g in clear_grades)
    answers = _rows(path, "SELECT count(*), count(DISTINCT CAST(coalesce(attempt_time, answered_at, created_at) AS DATE)) FROM raw_cheeko.analytics_game_attempts "
                          "WHERE question_text IS NOT NULL")[0]
    assert answers[1] > 1  # several days loaded: a one-day run below must still rewrite them all

    _with_rules(monkeypatch, {("cheeko", "kid_profile", "grade"): "hash", ("cheeko", "kid_profile", "interests"): "drop",
                              ("cheeko", "analytics_game_attempts", "question_text"): "length",
                              ("cheeko", "kid_profile", "school"): "copy"})
    tables = [source_table("cheeko", "kid_profile"), source_table("cheeko", "analytics_game_attempts")]
    one_day = (dt.datetime.combine(END, dt.time(0), dt.UTC), dt.datetime.combine(END + dt.timedelta(days=1), dt.time(0), dt.UTC))
    results = _extract(path, urls, tables, window=one_day)
    kid, attempts = results["cheeko.kid_profile"], results["cheeko.analytics_game_attempts"]
    assert sorted(kid.tightened) == ["grade", "interests"] and kid.loosened == ["school"]
    assert attempts.tightened == ["question_text"]
    # Tightened: every loaded row rewritten, not only the rows this load read.
    grades = {g for (g,) in _rows(path, "SELECT DISTINCT grade FROM raw_cheeko.kid_profile WHERE grade IS NOT NULL")}
    assert grades and all(HEX64.match(g) for g in grades) and not grades & clear_grades
    columns = {c for (c,) in _rows(path, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'kid_profile'")}
    assert "interests" not in columns
    assert _rows(path, "SELECT count(*), count(DISTINCT CAST(coalesce(attempt_time, answered_at, created_at) AS DATE)) FROM raw_cheeko.analytics_game_attempts "
                       "WHERE question_text IS NOT NULL") == [answers]
    assert _rows(path, "SELECT typeof(question_text) FROM raw_cheeko.analytics_game_attempts LIMIT 1") == [("BIGINT",)]
    # Loosened: reloaded from the source for every row.
    with postgres.connect(urls["cheeko"]) as conn:
        schools = {s for (s,) in conn.execute("SELECT DISTINCT school FROM kid_profile WHERE school IS NOT NULL")}
    assert {s for (s,) in _rows(path, "SELECT DISTINCT school FROM raw_cheeko.kid_profile WHERE school IS NOT NULL")} == schools
    # Applied once: the next load finds nothing to rewrite.
    assert not any(r.tightened or r.loosened for r in _extract(path, urls, tables, window=one_day).values())


def test_a_tightened_rule_withdraws_the_published_snapshots_and_the_ui_lists_withheld_columns(configured, monkeypatch):
    """Snapshots published before the change hold the old values: removed, and the run publishes a new one. A column
    without a rule fails the table's columns_classified check (WARN), which lists it with its counts."""
    from assets import runs
    from assets.raw import COLUMNS_CLASSIFIED

    env, home = configured
    settings = load()
    kid = dg.AssetKey(["raw_cheeko", "kid_profile"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = runs.materialize(settings, instance, selection="key:raw_cheeko/kid_profile", progress=lambda _: None)
        assert first.warnings == []
        before = sorted(p.name for p in settings.extracts.iterdir() if p.name[:1].isdigit())
        assert before
        _with_rules(monkeypatch, {("cheeko", "kid_profile", "grade"): "hash"})
        _sql(env["CHEEKO_DATABASE_URL"], "ALTER TABLE kid_profile ADD COLUMN home_address text",
             "UPDATE kid_profile SET home_address = 'KNOWN-ADDRESS' WHERE ctid IN (SELECT ctid FROM kid_profile LIMIT 2)")
        summary = runs.materialize(settings, instance, selection="key:raw_cheeko/kid_profile", progress=lambda _: None)
        event = instance.get_latest_materialization_event(kid)
        check = dg.AssetCheckKey(kid, COLUMNS_CLASSIFIED)
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check].evaluation
    assert summary.warnings == [f"raw_cheeko/kid_profile:{COLUMNS_CLASSIFIED}"]  # the run's work is done: exit 0
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    listed = evaluation.metadata["withheld_columns"].value
    assert re.search(r"\| home_address \| text \| 2 of \d+ \|", listed) and "KNOWN-ADDRESS" not in listed
    assert event.asset_materialization.metadata["withheld_columns"].value == ["home_address"]
    withdrawn = event.asset_materialization.metadata["withdrawn_snapshots"].value
    assert sorted(withdrawn.split(", ")) == before
    after = sorted(p.name for p in settings.extracts.iterdir() if p.name[:1].isdigit())
    assert after and not set(after) & set(before)  # only the snapshot published after the change
    latest = analyst_extracts.latest_snapshot(settings.extracts)
    with warehouse.connect(latest, read_only=True) as con:
        grades = [g for (g,) in con.execute("SELECT grade FROM raw_cheeko.kid_profile WHERE grade IS NOT NULL").fetchall()]
    assert grades and all(HEX64.match(g) for g in grades)
    assert summary.run_ids
