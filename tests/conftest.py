"""Shared fixtures: a real PostgreSQL server for the whole test session.

By default the tests start their own embedded server (in a temporary folder,
on a free loopback port) and stop it at the end. When ``CHEEKO_DATABASE_URL``
is set, they use that URL's server instead (its ``postgres`` database), or
``WAREHOUSE_TEST_ADMIN_URL`` when that is set. Either way each test works in
throwaway databases named ``test_*`` that it creates and drops; the
configured databases themselves are never touched.

The warehouse backend is chosen with ``--warehouse-backend``: ``file`` (the default, one DuckDB file) or
``ducklake`` (a DuckLake whose catalog is a throwaway ``test_lake_*`` database on the same server, its Parquet
files under the test's temporary folder). On ``ducklake`` only the modules marked ``both_backends`` run; a test
of such a module that is about the file itself is marked ``file_only("why")`` and skipped there with its reason.
Tests reach the backend through the ``backend`` fixture (``backend.new(folder)``, ``backend.copy(...)``,
``backend.environ(where)``, ``backend.location(environ)``) or ``warehouse_at`` (a fresh, empty warehouse).
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from psycopg import sql as psql

from pipelines import dagster_home, migrate, postgres, warehouse
from pipelines.embedded import EmbeddedServer
from pipelines.settings import CHEEKO, COGNOVA
from pipelines.warehouse import Lake, Location

BACKENDS = ("file", "ducklake")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--warehouse-backend", choices=BACKENDS, default="file",
                     help="the warehouse the tests build: one DuckDB file (default) or a DuckLake whose catalog is a "
                          "throwaway database on the test server; with ducklake only modules marked both_backends run")
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each module's seconds in this pass (its tests' setup, call and teardown) to "
                          f"tests/{DURATIONS.name}, under the pass's backend: they order the modules for the workers")


DURATIONS = Path(__file__).with_name("durations.json")
"""Seconds per test module in one pass of each backend, as ``--record-durations`` last measured them. The modules
run longest first: pytest-xdist (``--dist loadfile``, with ``--no-loadscope-reorder``) hands a worker its next module
as it nears the end of one, so a long module taken last would run alone while the other worker idles (measured: the
DuckLake pass's workers ended 70 s apart, its 112 s module handed out after shorter ones). A module with no figure
yet goes first. Stale figures only cost time, never a test."""


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _recorded_durations() -> dict[str, dict[str, float]]:
    import json

    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


class _DurationRecorder:
    """``--record-durations``: adds up each module's seconds as reports arrive (on the xdist controller, from every
    worker) and stores them when the session ends, replacing this backend's figures for the modules that ran."""

    def __init__(self, backend: str):
        self.backend, self.seconds = backend, collections.Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[_module(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        import json

        recorded = _recorded_durations()
        mine = recorded.setdefault(self.backend, {})
        mine.update({module: round(seconds, 1) for module, seconds in self.seconds.items()})
        root = DURATIONS.parent.parent
        recorded[self.backend] = dict(sorted((m, s) for m, s in mine.items() if (root / m).exists()))
        DURATIONS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--record-durations") and not hasattr(config, "workerinput"):  # not on an xdist worker
        config.pluginmanager.register(_DurationRecorder(config.getoption("--warehouse-backend")), "record_durations")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = config.getoption("--warehouse-backend")
    seconds = _recorded_durations().get(backend, {})
    # Stable: each module's tests stay together and in their order.
    items.sort(key=lambda item: -seconds.get(_module(item.nodeid), math.inf))
    if backend != "ducklake":
        return
    kept, deselected = [], []
    for item in items:
        (kept if item.get_closest_marker("both_backends") else deselected).append(item)
        only = item.get_closest_marker("file_only")
        if only:
            reason = only.args[0] if only.args else only.kwargs["reason"]
            item.add_marker(pytest.mark.skip(reason=f"file backend only: {reason}"))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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


def clone_database(admin_url: str, source_db: str, target_db: str) -> None:
    """``CREATE DATABASE target_db TEMPLATE source_db``, waiting while a connection that has just closed lingers on
    the server (PostgreSQL copies only a database nobody is connected to)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with postgres.connect(admin_url, autocommit=True) as conn:
                conn.execute(psql.SQL("CREATE DATABASE {} TEMPLATE {}").format(psql.Identifier(target_db),
                                                                              psql.Identifier(source_db)))
            return
        except psycopg.errors.ObjectInUse:
            assert time.monotonic() < deadline, f"{source_db} stayed in use: is a connection to it still open?"
            time.sleep(0.2)


@dataclass
class Backend:
    """The warehouse backend of this test session (``--warehouse-backend``), and how tests make, copy and
    configure a warehouse on it."""

    name: str
    admin_url: str
    created: list[str]

    @property
    def lake(self) -> bool:
        return self.name == "ducklake"

    def new(self, folder: Path, name: str = "w") -> Location:
        """A warehouse nothing has written yet: ``folder/<name>.duckdb``, or a lake with a new, empty catalog
        database and its data under ``folder/<name>-lake``."""
        if not self.lake:
            return folder / f"{name}.duckdb"
        return Lake(catalog_url=self._new_database(), data_path=str(folder / f"{name}-lake"))

    def copy(self, where: Location, folder: Path, name: str = "copy") -> Location:
        """A private copy of the warehouse ``where`` (no connection may be open to it): the file, or the lake's
        catalog database (``CREATE DATABASE ... TEMPLATE``) and data folder, the copied catalog pointed at the
        copied folder (DuckLake records its data path and refuses to attach the copy under another)."""
        target = self.new(folder, name)
        if isinstance(where, Path):
            shutil.copyfile(where, target)
            return target
        warehouse.release(where)  # this process's connections to its catalog, kept between connections
        source_db = urlsplit(where.catalog_url).path.lstrip("/")
        target_db = urlsplit(target.catalog_url).path.lstrip("/")
        postgres.drop_database(self.admin_url, target_db)
        clone_database(self.admin_url, source_db, target_db)
        if Path(where.data_path).exists():
            shutil.copytree(where.data_path, target.data_path, symlinks=True)
        with postgres.connect(target.catalog_url, autocommit=True) as conn:
            moved = conn.execute("UPDATE ducklake_metadata SET value = %s WHERE key = 'data_path' AND scope IS NULL",
                                 (target.data_path.rstrip("/") + "/",)).rowcount
        assert moved == 1, "the copied catalog records no data_path"
        return target

    def environ(self, where: Location) -> dict[str, str]:
        """The configuration variables that point the warehouse at ``where``."""
        if isinstance(where, Path):
            return {"WAREHOUSE_DUCKDB_PATH": str(where)}
        return {"WAREHOUSE_CATALOG": f"ducklake:{where.catalog_url}", "WAREHOUSE_LAKE_DATA": where.data_path}

    @staticmethod
    def location(environ: dict[str, str]) -> Location:
        """The warehouse a configuration (``environ``) points at."""
        from pipelines import databases, settings

        return databases.warehouse_location(settings.load(environ), start_embedded=False)

    @staticmethod
    def stored_bytes(where: Location) -> bytes:
        """Every byte the warehouse keeps: the file; or the lake's Parquet files and every table of its catalog
        database as text (DuckLake keeps small inserts inlined in the catalog)."""
        if isinstance(where, Path):
            return where.read_bytes()
        stored = [p.read_bytes() for p in sorted(Path(where.data_path).rglob("*")) if p.is_file()]
        with postgres.connect(where.catalog_url) as conn:
            tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
                                  "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
            for schema, table in tables:
                with conn.cursor().copy(psql.SQL("COPY {}.{} TO STDOUT").format(psql.Identifier(schema),
                                                                                 psql.Identifier(table))) as copy:
                    stored.extend(bytes(block) for block in copy)
        return b"".join(stored)

    def _new_database(self) -> str:
        db = f"test_lake_{os.getpid()}_{next(_counter)}"
        postgres.drop_database(self.admin_url, db)
        postgres.ensure_database(self.admin_url, db)
        self.created.append(db)
        return postgres.with_database(self.admin_url, db)


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config, pg_admin_url: str) -> Iterator[Backend]:
    """The session's warehouse backend (``--warehouse-backend``)."""
    chosen = Backend(pytestconfig.getoption("--warehouse-backend"), pg_admin_url, [])
    yield chosen
    for db in chosen.created:
        postgres.drop_database(pg_admin_url, db)


@pytest.fixture
def warehouse_at(backend: Backend, tmp_path: Path) -> Location:
    """A fresh warehouse nothing has written yet, on the session's backend: ``tmp_path/w.duckdb`` or a new lake."""
    return backend.new(tmp_path)


@dataclass
class DagsterInstances:
    """Where tests keep the Dagster instances they run the graph on: as ``warehouse run`` keeps its own on the
    embedded defaults (``deploy/dagster.postgres.yaml``), each in a database of its own on the session's server,
    with Dagster's events written in batches (``DAGSTER_EVENT_BATCH_SIZE``, in :attr:`environ`). Dagster's tables
    are made once, in a template that every new instance's database copies. On SQLite files, the repository's
    ``dagster.yaml``, a 15-device test of five runs took 63 s against 43 s."""

    admin_url: str
    template: str
    created: list[str]
    environ = {dagster_home.EVENT_BATCH_SIZE[0]: dagster_home.EVENT_BATCH_SIZE[1]}

    def new(self, home: Path, *, copy_of: Path | None = None) -> Path:
        """Write ``home/dagster.yaml`` for an empty instance, or for a copy of the instance at ``copy_of`` (its runs
        over: the connections still open to it are closed); returns ``home``."""
        db = f"test_dagster_{os.getpid()}_{next(_counter)}"
        source = self.template
        if copy_of is not None:
            source = self.database(copy_of)
            # An instance that held its connections (instance_storage.hold_storage_connections) keeps one open
            # after it is disposed and collected (Dagster's PostgreSQL storage does not close its pool).
            with postgres.connect(self.admin_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                             "AND pid <> pg_backend_pid()", (source,))
        clone_database(self.admin_url, source, db)
        self.created.append(db)
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(_instance_yaml(self.admin_url, db))
        return home

    @staticmethod
    def database(home: Path) -> str:
        """The database the instance at ``home`` keeps its runs in."""
        import yaml

        return yaml.safe_load((home / "dagster.yaml").read_text())["run_storage"]["config"]["postgres_db"]["db_name"]


def _instance_yaml(admin_url: str, database: str) -> str:
    """``deploy/dagster.postgres.yaml`` filled in for ``database`` on ``admin_url``'s server."""
    server = urlsplit(admin_url)
    return dagster_home.on_server(server.hostname or "127.0.0.1", server.port or 5432,
                                  unquote(server.username or "postgres"), unquote(server.password or ""), database)


@pytest.fixture(scope="session")
def dagster_instances(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstances]:
    """The session's :class:`DagsterInstances`: ``dagster_instances.new(folder)`` is a Dagster home."""
    import dagster as dg

    template = f"test_dagster_template_{os.getpid()}"
    postgres.drop_database(pg_admin_url, template)
    postgres.ensure_database(pg_admin_url, template)
    home = tmp_path_factory.mktemp("dagster_template")
    (home / "dagster.yaml").write_text(_instance_yaml(pg_admin_url, template))
    with dg.DagsterInstance.from_config(str(home)):
        pass  # opening it makes Dagster's tables
    instances = DagsterInstances(pg_admin_url, template, [template])
    yield instances
    for db in instances.created:
        postgres.drop_database(pg_admin_url, db)


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


def _configured_fleet(make_databases, backend: Backend, instances: DagsterInstances,
                      folder: Path) -> tuple[dict[str, str], Path]:
    """The fleet of ``configured`` generated under ``folder``: its environment (the warehouse a new one on the
    session's backend), and a Dagster home (:class:`DagsterInstances`)."""
    from pipelines import generator

    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=12, days=5, seed=8, end=CONFIGURED_FLEET_END),
                       folder / "gen", progress=lambda _: None)
    env = (pair.environ() | {"WAREHOUSE_PSEUDONYM_KEY": "test-key", "WAREHOUSE_HOME": str(folder / "home")}
           | backend.environ(backend.new(folder)) | instances.environ)
    return env, instances.new(folder / "dagster")


@pytest.fixture
def configured(make_databases, backend, dagster_instances, tmp_path, monkeypatch):
    """A small generated fleet (12 devices, 5 days to ``CONFIGURED_FLEET_END``), the configuration contract
    pointing at it, and a Dagster instance folder (:class:`DagsterInstances`): ``(environ, home)``."""
    env, home = _configured_fleet(make_databases, backend, dagster_instances, tmp_path)
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
def materialized(make_databases, backend, dagster_instances, tmp_path_factory) -> Materialized:
    """The whole graph run once over the ``configured`` fleet, for every test that needs a built warehouse."""
    import dagster as dg

    from assets import runs
    from pipelines.settings import load

    env, home = _configured_fleet(make_databases, backend, dagster_instances, tmp_path_factory.mktemp("materialized"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            summary = runs.materialize(load(), instance, progress=lambda _: None)
    return Materialized(env, home, summary)


@pytest.fixture
def on_materialized(materialized, backend, dagster_instances, tmp_path, monkeypatch) -> tuple[dict[str, str], Path]:
    """A private copy of the materialized warehouse, its home (snapshots) and its Dagster instance, with the
    configuration pointing at the copy; the source databases are the shared ones. ``(environ, home)``."""
    env = dict(materialized.environ)
    shutil.copytree(env["WAREHOUSE_HOME"], tmp_path / "home", symlinks=True)
    env["WAREHOUSE_HOME"] = str(tmp_path / "home")
    env |= backend.environ(backend.copy(backend.location(materialized.environ), tmp_path, "w"))
    shutil.copytree(materialized.home, tmp_path / "dagster")  # its compute logs and artifacts
    dagster_instances.new(tmp_path / "dagster", copy_of=materialized.home)  # its runs and events
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env, tmp_path / "dagster"


def _default_ctrl_c() -> None:
    """In the child, before ``exec``: SIGINT and SIGTERM handled by default (an ignored signal survives ``exec``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def running_ui(env: dict[str, str], timeout: float = 180) -> Iterator[Callable[..., dict]]:
    """``warehouse ui`` (webserver and daemon) in a process group of its own, ready to answer GraphQL.

    Yields ``graphql(query, **variables) -> data``. On exit it is stopped with Ctrl-C, as a person
    would, and every process of the group must be gone within a minute (no orphaned daemon). Its output goes to
    ``ui.log`` under ``WAREHOUSE_HOME``; a stop that takes too long shows its end (which process Dagster had to
    kill, and why).
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
    env = env | {"PYTHONUNBUFFERED": "1"}  # its log lines reach ui.log as they are written, even if it is killed
    log = Path(env["WAREHOUSE_HOME"]) / "ui.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        # Ctrl-C's signal at its default, as a terminal gives it to the command in front. A process inherits an
        # ignored signal: pytest started in the background of a script (`cmd &` ignores SIGINT) passed that on to
        # `warehouse ui`, whose Python then set no Ctrl-C handler, and the stop below hung until killed (seen in a
        # CI run; reproduced every time with `pytest -n 0` started so).
        ui = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ui", "--port", str(port)],
                              cwd=Path(__file__).resolve().parents[1], env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_ctrl_c)

    def said() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-40:])

    def group() -> set[int]:
        """The processes of the UI's process group (the UI's services, and the runs they launched)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == ui.pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
        return found

    def runs(pids: set[int]) -> set[int]:
        """Of ``pids``, those that are not multiprocessing's resource tracker."""
        def tracker(pid: int) -> bool:
            try:
                return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return True  # gone meanwhile
        return {pid for pid in pids if not tracker(pid)}

    def stuck() -> str:
        """Each process left in the group: its command, state, and signals pending, blocked, ignored and caught
        (a Ctrl-C that nothing acted on shows there), and what each of its threads waits in."""
        lines = []
        for pid in sorted(group()):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if ":\t" in line)
                waits = sorted(Path(f"/proc/{pid}/task/{task}/wchan").read_text() or "-"
                               for task in os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue  # gone meanwhile
            signals = " ".join(f"{name} {status.get(name, '?')}" for name in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))
            lines.append(f"  {pid} [{status.get('State', '?')}] {command[:160]}\n    {signals}; threads wait in: "
                         f"{', '.join(sorted(set(waits)))}")
        return "\n".join(lines) or "  (no process)"

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

    services = None
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
        services = group()
        yield graphql
    finally:
        # Ctrl-C once the runs it launched have ended, as a person who watched them finish would (a run's process
        # outlives its RUN_SUCCESS by a moment). The code server starts its runs with multiprocessing's spawn, whose
        # first use starts a resource tracker that lives as long as the code server: not a run, so not waited for
        # (it held every stop here for the whole 30 s).
        deadline = time.monotonic() + 30
        while services is not None and runs(group() - services) and time.monotonic() < deadline:
            time.sleep(0.5)
        os.killpg(ui.pid, signal.SIGINT)
        try:
            # `dagster dev` gives its webserver and its daemon 60 s each to stop before it kills them.
            ui.wait(timeout=150)
        except subprocess.TimeoutExpired:
            left = stuck()
            os.killpg(ui.pid, signal.SIGKILL)
            raise AssertionError(f"warehouse ui did not stop within 150 s of Ctrl-C; what was left of it:\n{left}\n"
                                 f"the end of its output:\n{said()}") from None
        deadline = time.monotonic() + 60
        while True:
            try:
                os.killpg(ui.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"processes of warehouse ui outlived it by a minute:\n{said()}"
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
