"""Shared fixtures: a real PostgreSQL server for the whole test session.

By default the tests start their own embedded server (in a temporary folder,
on a free loopback port) and stop it at the end. When ``CHEEKO_DATABASE_URL``
is set, they use that URL's server instead (its ``postgres`` database), or
``WAREHOUSE_TEST_ADMIN_URL`` when that is set. Either way each test works in
throwaway databases named ``test_*`` that it creates and drops; the
configured databases themselves are never touched.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines import migrate, postgres
from pipelines.embedded import EmbeddedServer
from pipelines.settings import CHEEKO, COGNOVA

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the ``postgres`` database on the session's server."""
    outside = os.environ.get("WAREHOUSE_TEST_ADMIN_URL")
    if not outside and os.environ.get("CHEEKO_DATABASE_URL"):
        outside = postgres.with_database(os.environ["CHEEKO_DATABASE_URL"], "postgres")
    if outside:
        yield outside
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("pg") / "pgdata", _free_port())
    server.start(databases=())
    try:
        yield server.url()
    finally:
        server.stop()


@dataclass(frozen=True)
class DatabasePair:
    """A fresh, migrated Cheeko and Cognova database for one test."""

    cheeko: str
    cognova: str

    def url(self, database: str) -> str:
        return self.cheeko if database == CHEEKO else self.cognova

    def environ(self) -> dict[str, str]:
        """Environment variables that point the configuration contract here."""
        return {"CHEEKO_DATABASE_URL": self.cheeko, "COGNOVA_DATABASE_URL": self.cognova}


_counter = itertools.count()


@pytest.fixture(scope="session")
def make_databases(pg_admin_url: str) -> Iterator[Callable[..., DatabasePair]]:
    """Factory: ``make_databases(migrated=True)`` creates a new pair of databases."""
    created: list[str] = []

    def make(migrated: bool = True) -> DatabasePair:
        n = next(_counter)
        urls = {}
        for name in (CHEEKO, COGNOVA):
            db = f"test_{name}_{os.getpid()}_{n}"
            postgres.drop_database(pg_admin_url, db)
            postgres.ensure_database(pg_admin_url, db)
            created.append(db)
            urls[name] = postgres.with_database(pg_admin_url, db)
            if migrated:
                migrate.upgrade(name, urls[name])
        return DatabasePair(cheeko=urls[CHEEKO], cognova=urls[COGNOVA])

    yield make
    for db in created:
        postgres.drop_database(pg_admin_url, db)


@pytest.fixture(scope="session")
def migrated(make_databases: Callable[..., DatabasePair]) -> DatabasePair:
    """One migrated pair shared by read-only tests."""
    return make_databases()


CONFIGURED_FLEET_END = dt.date(2026, 3, 31)


def _configured_fleet(make_databases, folder: Path) -> tuple[dict[str, str], Path]:
    """The fleet of ``configured`` generated under ``folder``: its environment, and a Dagster home with the
    repository's dagster.yaml."""
    from pipelines import generator

    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=12, days=5, seed=8, end=CONFIGURED_FLEET_END),
                       folder / "gen", progress=lambda _: None)
    env = pair.environ() | {"WAREHOUSE_PSEUDONYM_KEY": "test-key", "WAREHOUSE_HOME": str(folder / "home"),
                            "WAREHOUSE_DUCKDB_PATH": str(folder / "w.duckdb")}
    home = folder / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    return env, home


@pytest.fixture
def configured(make_databases, tmp_path, monkeypatch):
    """A small generated fleet (12 devices, 5 days to ``CONFIGURED_FLEET_END``), the configuration contract
    pointing at it, and a Dagster instance folder with the repository's dagster.yaml: ``(environ, home)``."""
    env, home = _configured_fleet(make_databases, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env, home


@dataclass(frozen=True)
class Materialized:
    """The ``configured`` fleet with the whole graph materialized once (``warehouse run``): its environment,
    Dagster home, and what the run reported. Shared by the session: read it, or work on a copy (``on_materialized``)."""

    environ: dict[str, str]
    home: Path
    summary: object  # assets.runs.RunSummary


@pytest.fixture(scope="session")
def materialized(make_databases, tmp_path_factory) -> Materialized:
    """The whole graph run once over the ``configured`` fleet, for every test that needs a built warehouse."""
    import dagster as dg

    from assets import runs
    from pipelines.settings import load

    env, home = _configured_fleet(make_databases, tmp_path_factory.mktemp("materialized"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            summary = runs.materialize(load(), instance, progress=lambda _: None)
    return Materialized(env, home, summary)


@pytest.fixture
def on_materialized(materialized, tmp_path, monkeypatch) -> tuple[dict[str, str], Path]:
    """A private copy of the materialized warehouse, its home (snapshots) and its Dagster instance, with the
    configuration pointing at the copy; the source databases are the shared ones. ``(environ, home)``."""
    import shutil

    env = dict(materialized.environ)
    for variable, name in (("WAREHOUSE_HOME", "home"), ("WAREHOUSE_DUCKDB_PATH", "w.duckdb")):
        source = Path(env[variable])
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, symlinks=True)
        else:
            shutil.copyfile(source, tmp_path / name)
        env[variable] = str(tmp_path / name)
    shutil.copytree(materialized.home, tmp_path / "dagster")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env, tmp_path / "dagster"


@contextmanager
def running_ui(env: dict[str, str], timeout: float = 180) -> Iterator[Callable[..., dict]]:
    """``warehouse ui`` (webserver and daemon) in a process group of its own, ready to answer GraphQL.

    Yields ``graphql(query, **variables) -> data``. On exit it is stopped with Ctrl-C, as a person
    would, and every process of the group must be gone within a minute (no orphaned daemon).
    """
    import json
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ui", "--port", str(port)],
                          cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)

    def graphql(query: str, **variables) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                         data=json.dumps({"query": query, "variables": variables}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # the server's own message, not only its status
            raise AssertionError(f"HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}") from None
        if body.get("errors"):
            raise AssertionError(body["errors"])
        return body["data"]

    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if graphql("{ assetNodes { id } }")["assetNodes"]:
                    break
            except (OSError, ValueError):
                pass
            assert ui.poll() is None, "warehouse ui exited"
            assert time.monotonic() < deadline, f"the UI did not answer within {timeout:.0f}s"
            time.sleep(2)
        yield graphql
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        ui.wait(timeout=90)
        deadline = time.monotonic() + 60
        while True:
            try:
                os.killpg(ui.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "processes of warehouse ui outlived it by a minute"
            time.sleep(1)


@pytest.fixture
def classify(monkeypatch):
    """``classify(database, table, *columns, rule="copy")``: give columns of a probe table a privacy rule, as a
    reviewer would in privacy.toml (the policy fails closed: a column it does not name is not read)."""
    from pipelines import privacy

    policy = {key: dict(rules) for key, rules in privacy.policy().items()}
    monkeypatch.setattr(privacy, "policy", lambda path=privacy.POLICY_FILE: policy)

    def classify_(database: str, table: str, *columns: str, rule: str = "copy") -> None:
        policy.setdefault((database, table), {}).update({column: rule for column in columns})

    return classify_
