"""Analyst extracts: read-only copies of the warehouse that analysts open instead of the working file.

DuckDB lets one process write a file, and while it does no other process may
open it, not even to read. So analysts never open ``warehouse.duckdb``.
After each successful run :func:`publish` copies the marts and the raw layer
into a new dated folder::

    extracts/
      20261122T003012Z/
        warehouse.duckdb        every table, COMMENT ON every table and column
        marts/<mart>.parquet    one Parquet file per mart
        data_dictionary.md      the same descriptions, as markdown
      latest -> 20261122T003012Z
      latest.duckdb -> latest/warehouse.duckdb

The folder is built under a hidden name, renamed into place, and then
``latest`` is switched by renaming a new symlink over it: a reader sees the old
snapshot or the new one, never half of one. Published files are never
written again, so any number of readers can hold them open while the next
run writes the working file. Only tables the privacy policy has already
filtered are copied (the raw layer and the marts); the pipeline's own
bookkeeping and staging are not.

:func:`custom_extract` cuts a smaller file (some tables, rows since a date)
from the latest snapshot, never from the working file.

Every table written, in any format, is sorted by its grain (the key in
:mod:`pipelines.dictionary`), so two extracts of the same data are the same
bytes and a CSV reads in key order.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from pipelines import dictionary, privacy, warehouse
from pipelines.dictionary import TableEntry
from pipelines.marts import MARTS
from pipelines.privacy import quote
from pipelines.source_tables import source_tables
from pipelines.warehouse import RAW_SCHEMAS

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "warehouse.duckdb"
DICTIONARY_FILE = "data_dictionary.md"
LATEST = "latest"
DICTIONARY_COLUMNS = ("table_schema", "table_name", "column_name", "data_type", "description")
LATEST_DUCKDB = "latest.duckdb"
PUBLISHED_SCHEMAS = ("marts", *RAW_SCHEMAS.values())
SNAPSHOT_ALIAS = "analyst_snapshot"
# The column a mart is cut on by --since: its day, local date or as-of date.
MART_DATE_COLUMNS = ("activity_date", "as_of_date", "local_date", "usage_date", "day", "month")
READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
READ_ONLY_DIR = READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class ExtractError(ValueError):
    """A custom extract cannot be made as asked; the message says what to change."""


@dataclass
class Published:
    """What :func:`publish` wrote."""

    folder: Path
    rows: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows
    seconds: float = 0.0
    removed: list[Path] = field(default_factory=list)

    @property
    def database(self) -> Path:
        return self.folder / SNAPSHOT_FILE


def latest_snapshot(root: Path) -> Path | None:
    """The latest published DuckDB snapshot under ``root``, or None if nothing is published yet."""
    path = root / LATEST_DUCKDB
    return path if path.exists() else None


def _tables(con: duckdb.DuckDBPyConnection, database: str | None = None,
            schemas: tuple[str, ...] = PUBLISHED_SCHEMAS) -> dict[str, list[tuple[str, str]]]:
    """``{"schema.table": [(column, type), ...]}`` of ``schemas`` (default: the published ones) in a database."""
    rows = con.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = coalesce(?, current_database()) AND schema_name IN (SELECT unnest(?)) "
        "ORDER BY schema_name, table_name, column_index",
        [database, list(schemas)]).fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, type_ in rows:
        tables.setdefault(f"{schema}.{table}", []).append((column, type_))
    return tables


def _order(names: Iterable[str]) -> list[str]:
    """Marts first, then Cheeko's raw tables, then Cognova's, each alphabetically."""
    return sorted(names, key=lambda q: (PUBLISHED_SCHEMAS.index(q.split(".")[0]), q))


def _name(qualified: str, alias: str | None = None) -> str:
    """``schema.table`` (and a database alias) as quoted identifiers: names come from catalogues, not code."""
    parts = ([alias] if alias else []) + qualified.split(".", 1)
    return ".".join(quote(part) for part in parts)


def _withheld(qualified: str) -> set[str]:
    """Columns of a raw table the privacy policy now drops: never published, even if an older load kept them."""
    schema, table = qualified.split(".", 1)
    database = next((db for db, s in RAW_SCHEMAS.items() if s == schema), None)
    rules = privacy.policy().get((database, table), {}) if database else {}
    return {column for column, rule in rules.items() if rule == "drop"}


def _entry(qualified: str, entries: dict[str, TableEntry]) -> TableEntry:
    schema, table = qualified.split(".", 1)
    return entries.get(qualified) or TableEntry(schema, table, "Not described in the contract.")


def _sorted(qualified: str, columns: list[str], entries: dict[str, TableEntry]) -> str:
    """``ORDER BY`` the table's grain (a mart's key, a raw table's primary key), then its other columns:
    the same data always comes out in one order, even where a check found the grain broken."""
    key = [c for c in _entry(qualified, entries).key if c in columns]
    return "ORDER BY " + ", ".join(quote(c) for c in key + [c for c in columns if c not in key])


def _describe(con: duckdb.DuckDBPyConnection, alias: str,
              tables: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """COMMENT ON every table and column of the copy, and the dictionary as a table of its own.

    The file's own tables in ``main`` (this dictionary, and ``snapshot_info`` when it was made first)
    are described too, last. Returns every table described, with its columns.
    """
    entries = dictionary.lookup()
    con.execute(f"CREATE TABLE {alias}.main.data_dictionary ("
                + ", ".join(f"{name} VARCHAR" for name in DICTIONARY_COLUMNS) + ")")
    described = tables | _tables(con, alias, schemas=("main",))
    rows = []
    for qualified, columns in described.items():
        entry = _entry(qualified, entries)
        con.execute(f"COMMENT ON TABLE {_name(qualified, alias)} IS {warehouse.literal(entry.description)}")
        rows.append((entry.schema, entry.table, None, None, entry.description))
        for column, type_ in columns:
            text = dictionary.column_description(entry, column)
            con.execute(f"COMMENT ON COLUMN {_name(qualified, alias)}.{quote(column)} IS {warehouse.literal(text)}")
            rows.append((entry.schema, entry.table, column, type_, text))
    # One statement for every row, from a registered frame: executemany inserts row by row (seconds for a thousand
    # rows in an attached file), and lists bound as parameters are converted value by value (0.65 s per thousand).
    frame = pl.DataFrame(rows, schema={name: pl.String for name in DICTIONARY_COLUMNS}, orient="row")
    con.register("__data_dictionary", frame)
    try:
        con.execute(f"INSERT INTO {alias}.main.data_dictionary SELECT * FROM __data_dictionary")
    finally:
        con.unregister("__data_dictionary")
    return described


def markdown(tables: dict[str, list[tuple[str, str]]], rows: dict[str, int], *, title: str) -> str:
    """The data dictionary as markdown: a section per table, a row per column."""
    entries = dictionary.lookup()
    lines = [f"# {title}", "",
             "Every table in this extract, what it holds and where it comes from. The same descriptions are "
             "embedded in the DuckDB file (`COMMENT ON`; query `main.data_dictionary` or `duckdb_columns()`) "
             "and shown in the Dagster UI.", "",
             "| table | rows | description |", "|---|---:|---|"]
    for qualified in tables:
        lines.append(f"| [`{qualified}`](#{qualified.replace('.', '')}) | {rows.get(qualified, 0):,} | "
                     f"{_cell(_entry(qualified, entries).description)} |")
    for qualified, columns in tables.items():
        entry = _entry(qualified, entries)
        lines += ["", f"## {qualified}", "", entry.description, "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c}` | {t} | {_cell(dictionary.column_description(entry, c))} |" for c, t in columns]
        if entry.dropped:
            lines += ["", "Not in the warehouse (privacy policy): " + ", ".join(f"`{c}`" for c in entry.dropped) + "."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _stamp(moment: dt.datetime, root: Path) -> str:
    base = moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (root / name).exists():  # two publishes in one second
        n += 1
        name = f"{base}-{n}"
    return name


def _swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (rename a new link over the old one)."""
    fresh = link.with_name(f".{link.name}.{os.getpid()}.new")
    if fresh.is_symlink() or fresh.exists():
        fresh.unlink()
    fresh.symlink_to(target)
    os.replace(fresh, link)


def _freeze(folder: Path) -> None:
    """Read-only permissions, so nobody (but root) writes a published file by mistake."""
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(READ_ONLY_DIR if path.is_dir() else READ_ONLY_FILE)
    folder.chmod(READ_ONLY_DIR)


def _remove(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _prune(root: Path, keep: int, current: str) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots (never the current one), partial folders of
    publishes that died, and stray symlinks of an interrupted switch.

    Never fatal: the new snapshot is already published when this runs, so a folder that cannot
    be removed (someone else's permissions, a network file system) is logged and left.
    """
    removed = []
    leftovers = [p for p in root.glob(".*.partial") if p.is_dir() and p.name[1:2].isdigit()]
    leftovers += [p for p in root.glob(".*.new") if p.is_symlink()]
    published = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name[:1].isdigit()),
                       key=lambda p: p.name, reverse=True)
    old = [p for p in published[keep:] if p.name != current]
    for path in leftovers + old:
        try:
            # A reader holding an old snapshot open keeps reading it: the file lives on until closed.
            path.unlink() if path.is_symlink() else _remove(path)
        except OSError as error:
            log.warning("could not remove %s: %s", path, error)
            continue
        if path in old:
            removed.append(path)
    return removed


def publish(con: duckdb.DuckDBPyConnection, root: Path, *, published_at: dt.datetime, keep: int = 7,
            run_id: str | None = None, progress=lambda line: None) -> Published:
    """Copy the warehouse behind ``con`` into a new snapshot under ``root`` and make it ``latest``."""
    began = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(published_at, root)
    partial = root / f".{stamp}.partial"
    if partial.exists():
        _remove(partial)
    (partial / "marts").mkdir(parents=True)
    found = _tables(con)
    # A column the policy drops today never leaves, whatever an older load put in the working file.
    tables = {q: [(c, t) for c, t in found[q] if c not in _withheld(q)] for q in _order(found)}
    result = Published(folder=root / stamp)
    entries = dictionary.lookup()
    con.execute(f"ATTACH {warehouse.literal(str(partial / SNAPSHOT_FILE))} AS {SNAPSHOT_ALIAS}")
    try:
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA {SNAPSHOT_ALIAS}.{quote(schema)}")
        for qualified, columns in tables.items():
            names = [c for c, _ in columns]
            # The marts are stored in key order; the raw tables, copied every run and far larger, as they are
            # (every extract cut from them is sorted: custom_extract).
            order = _sorted(qualified, names, entries) if qualified.startswith("marts.") else ""
            con.execute(f"CREATE TABLE {_name(qualified, SNAPSHOT_ALIAS)} AS SELECT {', '.join(map(quote, names))} "
                        f"FROM {_name(qualified)} {order}")
            result.rows[qualified] = con.execute(f"SELECT count(*) FROM {_name(qualified, SNAPSHOT_ALIAS)}").fetchone()[0]
        latest_day = (con.execute("SELECT max(day) FROM marts.fleet_daily").fetchone()[0]
                      if "marts.fleet_daily" in tables else None)
        con.execute(f"CREATE TABLE {SNAPSHOT_ALIAS}.main.snapshot_info AS SELECT ?::TIMESTAMPTZ AS published_at, "
                    "?::VARCHAR AS run_id, ?::DATE AS fleet_daily_through, ?::INTEGER AS tables",
                    [published_at, run_id, latest_day, len(tables)])
        described = _describe(con, SNAPSHOT_ALIAS, tables)
        rows = result.rows | {q: con.execute(f"SELECT count(*) FROM {_name(q, SNAPSHOT_ALIAS)}").fetchone()[0]
                              for q in described if q not in tables}
    finally:
        con.execute(f"DETACH {SNAPSHOT_ALIAS}")
    for mart in (m.name for m in MARTS):
        if f"marts.{mart}" in tables:
            target = partial / "marts" / f"{mart}.parquet"
            names = [c for c, _ in tables[f"marts.{mart}"]]
            con.execute(f"COPY (SELECT * FROM {_name(f'marts.{mart}')} {_sorted(f'marts.{mart}', names, entries)}) "
                        "TO ? (FORMAT parquet, COMPRESSION zstd)", [str(target)])
    title = f"Data dictionary: warehouse snapshot {stamp}"
    (partial / DICTIONARY_FILE).write_text(markdown(described, rows, title=title))
    _freeze(partial)
    os.rename(partial, result.folder)
    _swap_symlink(root / LATEST, stamp)
    if not (root / LATEST_DUCKDB).is_symlink():
        _swap_symlink(root / LATEST_DUCKDB, f"{LATEST}/{SNAPSHOT_FILE}")
    result.removed = _prune(root, keep, stamp)
    result.seconds = time.perf_counter() - began
    progress(f"published {len(tables)} tables, {sum(result.rows.values()):,} rows to {result.folder} "
             f"in {result.seconds:.1f}s")
    return result


def resolve_tables(available: Iterable[str], asked: list[str] | None) -> list[str]:
    """The ``schema.table`` names ``asked`` means: a qualified name, a bare name that is unique, or ``schema.*``.

    Nothing asked means every mart. An unknown or ambiguous name raises :class:`ExtractError` naming it.
    """
    available = _order(available)
    if not asked:
        return [q for q in available if q.startswith("marts.")]
    chosen: list[str] = []
    for name in asked:
        name = name.strip()
        if name.endswith(".*") or name in PUBLISHED_SCHEMAS:
            schema = name.removesuffix(".*")
            matches = [q for q in available if q.split(".")[0] == schema]
        elif "." in name:
            matches = [name] if name in available else []
        else:
            matches = [q for q in available if q.split(".", 1)[1] == name]
        if not matches:
            raise ExtractError(f"no table {name!r} in the snapshot; choose from: {', '.join(available)}")
        if len(matches) > 1 and not (name.endswith(".*") or name in PUBLISHED_SCHEMAS):
            raise ExtractError(f"{name!r} is ambiguous: {', '.join(matches)}; write the schema too")
        chosen += [q for q in matches if q not in chosen]
    return chosen


def date_column(qualified: str, columns: list[str]) -> str | None:
    """The SQL ``--since`` cuts ``qualified`` on (a column, or the first non-null of a raw table's event
    times); None for a table with no date (copied whole)."""
    schema, table = qualified.split(".", 1)
    if schema == "marts":
        return next((quote(c) for c in MART_DATE_COLUMNS if c in columns), None)
    database = next((db for db, s in RAW_SCHEMAS.items() if s == schema), None)
    for source in source_tables():
        if (source.database, source.name) == (database, table) and source.partitioned:
            present = [quote(c) for c in source.event_time if c in columns]
            return (present[0] if len(present) == 1 else f"coalesce({', '.join(present)})") if present else None
    return None


@dataclass
class CustomExtract:
    """What :func:`custom_extract` wrote: rows per table, and which tables had no date to cut on."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    whole: list[str] = field(default_factory=list)


def _selects(tables: dict[str, list[tuple[str, str]]], chosen: list[str], since: dt.date | None):
    """``(qualified, SELECT ..., parameters, cut column)`` per chosen table, sorted by its grain."""
    entries = dictionary.lookup()
    for qualified in chosen:
        names = [c for c, _ in tables[qualified]]
        column = date_column(qualified, names) if since else None
        order = _sorted(qualified, names, entries)
        if column is None:
            yield qualified, f"SELECT * FROM {_name(qualified)} {order}", [], None
        elif column == quote("month"):
            yield (qualified, f"SELECT * FROM {_name(qualified)} WHERE month >= date_trunc('month', ?::DATE) {order}",
                   [since], column)
        else:
            yield qualified, f"SELECT * FROM {_name(qualified)} WHERE {column} >= ?::DATE {order}", [since], column


def custom_extract(snapshot: Path, out: Path, *, tables: list[str] | None = None,
                   since: dt.date | None = None) -> CustomExtract:
    """Write some tables of the snapshot (rows on or after ``since``) to ``out``.

    ``.duckdb``: the tables with their comments and ``main.data_dictionary``;
    ``.parquet`` or ``.csv``: exactly one table. Written beside ``out`` and
    renamed into place, so a failed extract leaves no half file.
    """
    kind = out.suffix.lower()
    if kind not in (".duckdb", ".parquet", ".csv"):
        raise ExtractError(f"--out {out}: the name must end in .duckdb, .parquet or .csv")
    out = out.resolve()
    wal = out.with_name(out.name + ".wal")
    if kind == ".duckdb" and wal.exists():
        # DuckDB would replay this log into the new file: someone has the old one open, or crashed in it.
        raise ExtractError(f"--out {out}: {wal.name} exists beside it (the file is open somewhere, or a session "
                           "crashed in it); close it or remove the .wal, or choose another name")
    partial = out.with_name(f".{out.name}.partial")
    result = CustomExtract(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in (partial, partial.with_name(partial.name + ".wal")):
            stale.unlink(missing_ok=True)
        with warehouse.connect(snapshot, read_only=True, wait=0) as con:
            _write_extract(con, kind, partial, result, tables, since)
        os.replace(partial, out)
    except (duckdb.Error, OSError) as error:
        raise ExtractError(f"--out {out}: {error}") from error
    finally:
        for stale in (partial, partial.with_name(partial.name + ".wal")):
            if stale.exists():
                stale.unlink()
    return result


def _write_extract(con: duckdb.DuckDBPyConnection, kind: str, partial: Path, result: CustomExtract,
                   tables: list[str] | None, since: dt.date | None) -> None:
    available = _tables(con)
    chosen = resolve_tables(available, tables)
    if kind != ".duckdb" and len(chosen) != 1:
        raise ExtractError(f"--out {result.path.name}: a {kind} file holds one table, and {len(chosen)} were chosen "
                           f"({', '.join(chosen)}); pick one with --tables, or write a .duckdb file")
    chosen_tables = {q: available[q] for q in chosen}
    if kind == ".duckdb":
        con.execute(f"ATTACH {warehouse.literal(str(partial))} AS custom_extract (READ_WRITE)")
        try:
            for schema in sorted({q.split('.')[0] for q in chosen}):
                con.execute(f"CREATE SCHEMA custom_extract.{quote(schema)}")
            for qualified, select, params, column in _selects(available, chosen, since):
                con.execute(f"CREATE TABLE {_name(qualified, 'custom_extract')} AS {select}", params)
                result.rows[qualified] = con.execute(f"SELECT count(*) FROM {_name(qualified, 'custom_extract')}").fetchone()[0]
                if since and column is None:
                    result.whole.append(qualified)
            _describe(con, "custom_extract", chosen_tables)
        finally:
            con.execute("DETACH custom_extract")
    else:
        qualified, select, params, column = next(_selects(available, chosen, since))
        fmt = "parquet" if kind == ".parquet" else "csv, HEADER true"
        con.execute(f"COPY ({select}) TO {warehouse.literal(str(partial))} (FORMAT {fmt})", params)
        result.rows[qualified] = con.execute(f"SELECT count(*) FROM ({select})", params).fetchone()[0]
        if since and column is None:
            result.whole.append(qualified)

