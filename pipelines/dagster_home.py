"""The Dagster instance's configuration file for the embedded defaults (no ``DAGSTER_HOME`` set).

The instance lives where the embedded defaults live. When the embedded PostgreSQL server serves a database, Dagster's
run, event-log and schedule storage go into a database of their own on it (``DAGSTER_DATABASE``): the production
file, ``deploy/dagster.postgres.yaml``, with its ``DAGSTER_PG_*`` variables filled in for that server. Otherwise (both
operational databases configured elsewhere) it is this repository's ``dagster.yaml``: SQLite files under
``$WAREHOUSE_HOME/dagster``.

Why PostgreSQL even on one machine: Dagster stores every event of a run as it happens, and SQLite commits (and
syncs to disk) each one in a transaction of its own, with a new connection each time. A step that does no work,
60 assets with two checks each (549 events, benchmarks/events.py), took 20.4 ms an event on SQLite, 8.1 ms on
PostgreSQL as ``warehouse run`` uses it (23.5 against 6.8 ms once the event log remembered its own schema,
assets/instance_storage.py, on a slower night); a daily ``warehouse run`` at 2,000 devices x 90 days 32.6 s
against 21.3 s (benchmarks/orchestration.py; docs/scaling.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
ON_SQLITE = REPO_ROOT / "dagster.yaml"
ON_POSTGRES = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
DAGSTER_DATABASE = "dagster"  # the instance's database on the embedded server
# Dagster writes the events it has in hand in batches of this many (the planned events of a run, the per-partition
# materializations of a range); read from the environment at run time.
EVENT_BATCH_SIZE = ("DAGSTER_EVENT_BATCH_SIZE", "100")
HEADER = ("# Written by `warehouse` for the embedded defaults, from deploy/dagster.postgres.yaml with the\n"
          "# embedded server filled in (its comments about DAGSTER_PG_* variables do not apply here);\n"
          "# rewritten by every command that opens the instance: edit deploy/dagster.postgres.yaml\n"
          "# (or set DAGSTER_HOME to an instance of your own) instead. Needs the embedded server\n"
          "# running (`warehouse pg start`) and, by hand, DAGSTER_EVENT_BATCH_SIZE=100.\n\n")


def on_postgres(config_text: str) -> bool:
    """Whether an instance configuration keeps its runs in PostgreSQL, named either way Dagster reads it
    (``storage: postgres`` or a ``run_storage`` of dagster-postgres); else, or unreadable: SQLite files, Dagster's
    default when there is no storage section."""
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return False
    if not isinstance(config, dict):
        return False
    storage, runs = config.get("storage"), config.get("run_storage")
    return (isinstance(storage, dict) and "postgres" in storage) or \
        (isinstance(runs, dict) and str(runs.get("module", "")).startswith("dagster_postgres"))


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` only when it differs, and atomically: processes the daemon launches read the file at
    any moment, and a half-written one would give them Dagster's default storage (SQLite) instead."""
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def on_embedded_server(port: int, host: str = "127.0.0.1", user: str = "postgres") -> str:
    """``deploy/dagster.postgres.yaml`` filled in for the embedded server (it trusts local connections: no
    password) and its ``DAGSTER_DATABASE``, under a header saying who wrote it."""
    return HEADER + on_server(host, port, user, "", DAGSTER_DATABASE)


def on_server(host: str, port: int, user: str, password: str, database: str) -> str:
    """``deploy/dagster.postgres.yaml`` with each ``{env: DAGSTER_PG_*}`` replaced by these values. The rest of the
    file, comments included, is kept as it is."""
    values = {"DAGSTER_PG_HOST": host, "DAGSTER_PG_PORT": port, "DAGSTER_PG_USER": user,
              "DAGSTER_PG_PASSWORD": password, "DAGSTER_PG_DB": database}
    text = ON_POSTGRES.read_text()
    for name, value in values.items():
        text = text.replace(f"{{env: {name}}}", json.dumps(value))  # a JSON scalar is a YAML scalar
    left = _variables(yaml.safe_load(text))
    if left:  # a variable the file gained since (or spelt otherwise): it would be read from an environment nobody set
        raise ValueError(f"{ON_POSTGRES} reads variables this project does not fill in: {', '.join(left)}")
    return text


def _variables(node) -> list[str]:
    """The environment variables a Dagster configuration reads (``{env: NAME}``), anywhere in it."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return [str(node["env"])]
        return [name for value in node.values() for name in _variables(value)]
    if isinstance(node, list):
        return [name for value in node for name in _variables(value)]
    return []
