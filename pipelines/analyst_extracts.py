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
        .fingerprints.json      what each table held, for the next publish to compare with
      latest -> 20261122T003012Z
      latest.duckdb -> latest/warehouse.duckdb

The folder is built under a hidden name, renamed into place, and then
``latest`` is switched by renaming a new symlink over it: a reader sees the old
snapshot or the new one, never half of one. Published files are never
written again, so any number of readers can hold them open while the next
run writes the working file. Only tables the privacy policy has already
filtered are copied (the raw layer and the marts); the pipeline's own
bookkeeping and staging are not.

A publish starts from a file copy of the previous snapshot and replaces in it
only the tables, or the days of a table, whose content changed since (told by
fingerprints: row counts and sums of row hashes); the result holds exactly
what a full copy would. Without a usable previous snapshot it copies
everything, as the first publish does.

:func:`custom_extract` cuts a smaller file (some tables, rows since a date)
from the latest snapshot, never from the working file.

Every table written, in any format, is sorted by its grain (the key in
:mod:`pipelines.dictionary`), so two extracts of the same data are the same
bytes and a CSV reads in key order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
# Beside each snapshot: the fingerprint of every table it holds, for the next publish to compare with.
STATE_FILE = ".fingerprints.json"
# In the extracts folder: the names of the snapshots withdrawn (a privacy rule tightened), one a line. A new snapshot
# never takes one: whoever noted the path of a withdrawn snapshot must not find other data under it.
WITHDRAWN_FILE = ".withdrawn"
# Bump when what a snapshot holds or how a table is written changes: a publish never starts from a snapshot of
# another layout (nor of another DuckDB, whose hash() and storage may differ); it copies everything instead.
LAYOUT = 1
# A table sliced by day has its changed days replaced in place unless they hold more than this share of its rows:
# then writing it whole costs about as much and leaves no deleted rows behind in the file.
PATCH_AT_MOST = 0.5
# Replaced days leave deleted rows, part-filled row groups and freed blocks behind (DuckDB reuses freed blocks but
# never shrinks a file): start afresh with a full copy, compact, when the previous file is this many times the size
# a full copy of its rows would be (by the bytes per row of the last full copy), and at least every so many publishes.
MAX_GROWTH = 1.25
FULL_COPY_EVERY = 50
# The types a table's day is read from (duckdb_columns() spelling).
DAY_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
MICROSECONDS_A_DAY = 86_400_000_000
EPOCH = dt.date(1970, 1, 1)


class ExtractError(ValueError):
    """A custom extract cannot be made as asked; the message says what to change."""


@dataclass
class Published:
    """What :func:`publish` wrote, and how: which tables it wrote whole, patched by day, or kept."""

    folder: Path
    rows: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows
    seconds: float = 0.0
    removed: list[Path] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)  # written whole from the working file
    patched: dict[str, int] = field(default_factory=dict)  # "schema.table" -> days replaced in place
    reused: list[str] = field(default_factory=list)  # kept as the previous snapshot held them
    dropped: list[str] = field(default_factory=list)  # in the previous snapshot, gone from the warehouse
    parquet_reused: list[str] = field(default_factory=list)  # marts whose Parquet file is the previous one's
    started_from: Path | None = None  # the snapshot this one started from; None: a full copy
    full_copy_reason: str | None = None  # why it is a full copy

    @property
    def database(self) -> Path:
        return self.folder / SNAPSHOT_FILE

    def how(self) -> str:
        """One line: a full copy and why, or what changed since the snapshot it started from."""
        if self.started_from is None:
            return f"full copy ({self.full_copy_reason})"
        return (f"from {self.started_from.name}: {len(self.copied)} tables written whole, {len(self.patched)} "
                f"patched ({sum(self.patched.values())} days replaced), {len(self.reused)} reused, "
                f"{len(self.dropped)} dropped; {len(self.parquet_reused)} Parquet marts reused")

    def metadata(self) -> dict[str, str | int]:
        """How the snapshot was made, as plain values for the asset's materialization metadata."""
        return {"snapshot_mode": "full copy" if self.started_from is None else "incremental",
                "started_from": self.started_from.name if self.started_from else "",
                "full_copy_reason": self.full_copy_reason or "",
                "tables_copied": len(self.copied), "tables_patched": len(self.patched),
                "days_replaced": sum(self.patched.values()), "tables_reused": len(self.reused),
                "tables_dropped": len(self.dropped), "parquet_marts_reused": len(self.parquet_reused)}


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


def _withheld(qualified: str, column: str) -> bool:
    """Whether the privacy policy now keeps a raw table's column out (dropped, or not classified): never
    published, even if an older load kept it."""
    schema, table = qualified.split(".", 1)
    database = next((db for db, s in RAW_SCHEMAS.items() if s == schema), None)
    return database is not None and not privacy.is_read(privacy.rule(database, table, column))


def _entry(qualified: str, entries: dict[str, TableEntry]) -> TableEntry:
    schema, table = qualified.split(".", 1)
    return entries.get(qualified) or TableEntry(schema, table, "Not described in the contract.")


def _sorted(qualified: str, columns: list[str], entries: dict[str, TableEntry]) -> str:
    """``ORDER BY`` the table's grain (a mart's key, a raw table's primary key), then its other columns:
    the same data always comes out in one order, even where a check found the grain broken."""
    return "ORDER BY " + ", ".join(quote(c) for c in _order_columns(qualified, columns, entries))


def _order_columns(qualified: str, columns: list[str], entries: dict[str, TableEntry]) -> list[str]:
    """The columns ``_sorted`` orders ``qualified`` by: its grain, then the others."""
    key = [c for c in _entry(qualified, entries).key if c in columns]
    return key + [c for c in columns if c not in key]


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
    # A table kept from the previous snapshot already carries its comments: setting the same again is skipped.
    carried = {(schema, table, column): comment for schema, table, column, comment in con.execute(
        "SELECT schema_name, table_name, NULL, comment FROM duckdb_tables() WHERE database_name = ? UNION ALL "
        "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() WHERE database_name = ?",
        [alias, alias]).fetchall()}
    rows = []
    for qualified, columns in described.items():
        entry = _entry(qualified, entries)
        schema, table = qualified.split(".", 1)
        if carried.get((schema, table, None)) != entry.description:
            con.execute(f"COMMENT ON TABLE {_name(qualified, alias)} IS {warehouse.literal(entry.description)}")
        rows.append((entry.schema, entry.table, None, None, entry.description))
        for column, type_ in columns:
            text = dictionary.column_description(entry, column)
            if carried.get((schema, table, column)) != text:
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
    """A new snapshot's folder name: ``moment`` to the second, with ``-2``, ``-3``... for a second publish in the
    same second, or one whose name a withdrawn snapshot had (:func:`withdraw`)."""
    base = moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    withdrawn = set((root / WITHDRAWN_FILE).read_text().split()) if (root / WITHDRAWN_FILE).is_file() else set()
    name, n = base, 1
    while (root / name).exists() or name in withdrawn:
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


def withdraw(root: Path) -> list[Path]:
    """Remove every published snapshot, and the links to the latest: they hold values a privacy rule no longer
    allows (it was tightened). The next publish writes a whole new one, under a name none of these had
    (``WITHDRAWN_FILE``). Returns the folders removed; one that cannot be removed is an error (unlike
    :func:`_prune`): it would keep publishing what the policy withdrew."""
    if not root.is_dir():
        return []
    for link in (root / LATEST, root / LATEST_DUCKDB):
        if link.is_symlink():
            link.unlink()
    published = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name[:1].isdigit())
    if published:
        with (root / WITHDRAWN_FILE).open("a") as names:
            names.writelines(f"{p.name}\n" for p in published)
    for path in published:
        _remove(path)
    return published


# -- publishing: a new snapshot, started from the previous one where it can be -------------------------------------
#
# Copying every table each run costs as much as the warehouse is large, yet a one-day run changes few rows: the
# daily tables' and the marts' last day or two, a few small tables. So a publish starts from a plain copy of the
# latest snapshot file (sequential I/O, and the published file itself is never opened for writing) and replaces in
# that copy only what changed since: a table whose days are known (a raw daily table's event time, a mart's date)
# has its changed days deleted and inserted again; any other changed table is written whole; tables the warehouse no
# longer has are dropped; the rest stay as they are. What changed is told by fingerprints: per table, and per day
# where a table has days, the row count and the sum of the rows' hashes, computed on the working file (a scan costs
# far less than writing the rows) and kept beside the snapshot (STATE_FILE) for the next publish to compare with.


@dataclass
class _Fingerprint:
    """A published table's content, cheaply: how it is published (its shape), its rows and the sum of their hashes,
    as a whole and per day (``days``, only for a table sliced by day)."""

    shape: dict
    rows: int
    digest: int
    days: dict[int | None, tuple[int, int]] = field(default_factory=dict)  # day number -> (rows, digest)

    def to_json(self) -> dict:
        return {"shape": self.shape, "rows": self.rows, "digest": str(self.digest),
                "days": [[d, n, str(h)] for d, (n, h) in sorted(self.days.items(), key=lambda i: _day_order(i[0]))]}

    @classmethod
    def from_json(cls, data: dict) -> _Fingerprint:
        days = {None if d is None else int(d): (int(n), int(h)) for d, n, h in data["days"]}
        return cls(dict(data["shape"]), int(data["rows"]), int(data["digest"]), days)

    def same_content(self, other: _Fingerprint) -> bool:
        return (self.rows, self.digest, self.days) == (other.rows, other.digest, other.days)


@dataclass
class _Chain:
    """The snapshots since the last full copy: how many, and that copy's size and rows (what compact costs)."""

    since_full: int = 0
    full_bytes: int = 0
    full_rows: int = 0


@dataclass
class _Previous:
    """The snapshot a publish starts from: its folder and the fingerprints its tables were published with."""

    folder: Path
    tables: dict[str, _Fingerprint]
    chain: _Chain


@dataclass
class _Base:
    """What the attached new file already holds: verified fingerprints of the tables copied from ``previous``."""

    previous: _Previous | None
    tables: dict[str, _Fingerprint]  # tables of the copy that hold what their fingerprint says
    present: set[str]  # every published table the copy holds, checked or not
    why_full: str | None = None  # why the new file starts empty


@dataclass
class _Plan:
    """What the new file needs, per table, to equal a full copy of the working file."""

    reuse: list[str] = field(default_factory=list)  # kept as the copy holds them
    patch: dict[str, list[int | None]] = field(default_factory=dict)  # days deleted and inserted again
    copy: list[str] = field(default_factory=list)  # written whole from the working file
    drop: list[str] = field(default_factory=list)  # in the copy, and going: gone from the warehouse, or written whole


class _Unusable(Exception):
    """The previous snapshot cannot be started from; the message says why (a full copy is made instead)."""


def _day_order(day: int | None) -> tuple[bool, int]:
    """Days in ``ORDER BY`` order: DuckDB sorts NULL last."""
    return (day is None, day or 0)


def _shape(qualified: str, columns: list[tuple[str, str]], entries: dict[str, TableEntry]) -> dict:
    """How ``qualified`` is published: columns and types, the order it is stored in, the day it is sliced on.

    A table is sliced by day when its day columns (``_date_columns``) are dates or times. A mart (stored in key
    order) only when that day leads its order, so days inserted after the kept ones keep it in order. Two
    snapshots hold a table alike only when its shape is equal, so a new column, type, withheld column or sort
    order rewrites it whole.

    The day is a number, microseconds since 1970 (UTC, whatever the session's time zone) divided by a day's:
    integer arithmetic, four times cheaper than casting a time to a date. Before 1970 the division truncates
    towards zero (day 0 spans two days): any cut would do, as long as both files are cut alike and a later day
    never gets a smaller number, which holds.
    """
    names = [c for c, _ in columns]
    types = dict(columns)
    sorted_ = qualified.startswith("marts.")
    used = _date_columns(qualified, names)
    sliced = bool(used) and all(types[c] in DAY_TYPES for c in used)
    if sliced and sorted_:
        sliced = len(used) == 1 and _order_columns(qualified, names, entries)[0] == used[0]
    single = sliced and len(used) == 1
    return {"columns": [[c, t] for c, t in columns],
            "order": _sorted(qualified, names, entries) if sorted_ else "",
            "day": f"epoch_us({date_column(qualified, names)}) // {MICROSECONDS_A_DAY}" if sliced else None,
            # A day read from one column: DuckDB skips the row groups whose min/max of it are out of range.
            "day_column": used[0] if single else None,
            "day_type": types[used[0]] if single else None}


def _fingerprint(con: duckdb.DuckDBPyConnection, qualified: str, shape: dict) -> _Fingerprint:
    """Count and sum of row hashes of the working file's ``qualified`` over its published columns, per day if sliced.

    ``hash`` of every published column, summed as HUGEINT: order-free (a table's rows are a multiset, and a raw
    table is stored as it comes), a scan far cheaper than writing the rows, and any changed value or NULL changes
    it but for a 64-bit collision (about one chance in 2^64). A column added, retyped or now withheld by the
    privacy policy changes the shape instead, and new pseudonyms (a new key) change the values.
    """
    row_hash = f"hash({', '.join(quote(c) for c, _ in shape['columns'])})::HUGEINT"
    if not shape["day"]:
        rows, digest = con.execute(f"SELECT count(*), coalesce(sum({row_hash}), 0) FROM {_name(qualified)}").fetchone()
        return _Fingerprint(shape, rows, int(digest))
    found = con.execute(f"SELECT {shape['day']} AS day, count(*), sum({row_hash}) FROM {_name(qualified)} "
                        "GROUP BY ALL").fetchall()
    days = {day: (rows, int(digest)) for day, rows, digest in found}
    return _Fingerprint(shape, sum(n for n, _ in days.values()), sum(h for _, h in days.values()), days)


def _fingerprints(con: duckdb.DuckDBPyConnection, tables: dict[str, list[tuple[str, str]]],
                  entries: dict[str, TableEntry]) -> dict[str, _Fingerprint]:
    """The fingerprint of every table to publish, as the working file holds it now.

    In one transaction: every table as of one state of the warehouse, and on a lake the catalog read once, not
    once a table (79 tables of a 12-device lake: 0.72-0.86 s a statement each, 0.48-0.56 s together, measured)."""
    with _transaction(con):
        return {q: _fingerprint(con, q, _shape(q, columns, entries)) for q, columns in tables.items()}


def _state(tables: dict[str, _Fingerprint], chain: _Chain) -> str:
    """STATE_FILE's text: the layout, the DuckDB that hashed, the chain since the last full copy, every table's
    fingerprint."""
    return json.dumps({"layout": LAYOUT, "duckdb": duckdb.__version__, "chain": vars(chain),
                       "tables": {q: fp.to_json() for q, fp in tables.items()}}, indent=1, sort_keys=True) + "\n"


def _chain(previous: _Previous | None, database: Path, rows: dict[str, int]) -> _Chain:
    """The chain the new snapshot ends: one publish longer than its previous one's, or begun by this full copy."""
    if previous is None:
        return _Chain(0, database.stat().st_size, sum(rows.values()))
    return _Chain(previous.chain.since_full + 1, previous.chain.full_bytes, previous.chain.full_rows)


def _too_big(folder: Path, tables: dict[str, _Fingerprint], chain: _Chain) -> str | None:
    """Why the snapshot in ``folder`` should not be started from, having grown past a full copy's size; or None."""
    if chain.since_full + 1 >= FULL_COPY_EVERY:
        return f"{chain.since_full} publishes since the last full copy (one every {FULL_COPY_EVERY} at least)"
    if not chain.full_rows or not chain.full_bytes:
        return None
    size = (folder / SNAPSHOT_FILE).stat().st_size
    compact = chain.full_bytes * sum(fp.rows for fp in tables.values()) / chain.full_rows
    if size > MAX_GROWTH * compact:
        return (f"{folder.name}/{SNAPSHOT_FILE} has grown to {size / compact:.2f}x the size of a full copy "
                f"({size:,} bytes, a full copy about {compact:,.0f})")
    return None


def _previous(root: Path) -> _Previous:
    """The latest snapshot and the fingerprints it was published with; raises :class:`_Unusable` saying why not."""
    link = root / LATEST
    if not link.is_symlink():
        raise _Unusable("no previous snapshot")
    folder = root / os.readlink(link)
    if not (folder / SNAPSHOT_FILE).is_file():
        raise _Unusable(f"{LATEST} points at {folder.name}, which holds no {SNAPSHOT_FILE}")
    if not (folder / STATE_FILE).exists():
        raise _Unusable(f"{folder.name} has no {STATE_FILE} (published before snapshots were incremental)")
    unreadable = (OSError, ValueError, KeyError, TypeError, AttributeError)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        written_by = (state["layout"], state["duckdb"])
    except unreadable as error:
        raise _Unusable(f"{folder.name}/{STATE_FILE} is unreadable: {error!r}") from error
    if written_by != (LAYOUT, duckdb.__version__):
        # Another layout holds other things; another DuckDB may hash (and store) differently.
        raise _Unusable(f"{folder.name} is layout {written_by[0]} by DuckDB {written_by[1]}; this publish writes "
                        f"layout {LAYOUT} by DuckDB {duckdb.__version__}")
    try:
        chain = _Chain(**{k: int(v) for k, v in state["chain"].items()})
        tables = {q: _Fingerprint.from_json(fp) for q, fp in state["tables"].items()}
    except unreadable as error:
        raise _Unusable(f"{folder.name}/{STATE_FILE} is unreadable: {error!r}") from error
    if (why := _too_big(folder, tables, chain)) is not None:
        raise _Unusable(why)
    return _Previous(folder, tables, chain)


def _discard(path: Path) -> None:
    """Remove a database file and its write-ahead log, if there."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


def _verified(con: duckdb.DuckDBPyConnection, previous: _Previous) -> _Base:
    """The attached copy's tables that hold what ``previous`` recorded (same columns, same row count)."""
    present = _tables(con, SNAPSHOT_ALIAS)
    tables = {}
    for qualified, fp in previous.tables.items():
        columns = [(c, t) for c, t in fp.shape["columns"]]
        if present.get(qualified) == columns and con.execute(
                f"SELECT count(*) FROM {_name(qualified, SNAPSHOT_ALIAS)}").fetchone()[0] == fp.rows:
            tables[qualified] = fp
    return _Base(previous, tables, set(present))


def _start(con: duckdb.DuckDBPyConnection, root: Path, target: Path) -> _Base:
    """Attach ``target`` as SNAPSHOT_ALIAS: a copy of the latest snapshot when it can be started from,
    else a new empty file (what every publish wrote before, and the fallback for anything unexpected)."""
    try:
        previous = _previous(root)
    except _Unusable as why:
        reason = str(why)
    else:
        try:
            # A plain copy: the published file is never opened for writing (readers may hold it open).
            shutil.copyfile(previous.folder / SNAPSHOT_FILE, target)
            con.execute(f"ATTACH {warehouse.literal(str(target))} AS {SNAPSHOT_ALIAS}")
        except (OSError, duckdb.Error) as error:
            reason = f"{previous.folder.name}/{SNAPSHOT_FILE} cannot be copied or opened: {error}"
        else:
            try:
                return _verified(con, previous)
            except duckdb.Error as error:
                reason = str(error)
                con.execute(f"DETACH {SNAPSHOT_ALIAS}")
        _discard(target)
    con.execute(f"ATTACH {warehouse.literal(str(target))} AS {SNAPSHOT_ALIAS}")
    return _Base(None, {}, set(), reason)


def _changed_days(before: _Fingerprint, now: _Fingerprint) -> list[int | None] | None:
    """The days to delete and insert again to turn ``before`` into ``now``; None to write the table whole."""
    if not now.shape["day"]:
        return None
    changed = sorted((d for d in before.days.keys() | now.days.keys() if before.days.get(d) != now.days.get(d)),
                     key=_day_order)
    moved = sum(before.days.get(d, (0, 0))[0] + now.days.get(d, (0, 0))[0] for d in changed)
    if moved > PATCH_AT_MOST * max(now.rows, 1):
        return None  # most of it: writing it whole costs as much and leaves no deleted rows behind
    if now.shape["order"]:
        # Stored in key order, led by the day: rows inserted at the end keep it in order only if their days
        # come after every day kept.
        kept = [d for d in now.days if d not in changed]
        inserted = [d for d in changed if d in now.days]
        if kept and inserted and _day_order(min(inserted, key=_day_order)) <= _day_order(max(kept, key=_day_order)):
            return None
    return changed


def _plan(now: dict[str, _Fingerprint], base: _Base) -> _Plan:
    """Per table: reuse what the copy holds, replace its changed days, or write it whole."""
    plan = _Plan()
    for qualified, fp in now.items():
        before = base.tables.get(qualified)
        if before is None or before.shape != fp.shape:
            plan.copy.append(qualified)
        elif before.same_content(fp):
            plan.reuse.append(qualified)
        elif (days := _changed_days(before, fp)) is not None:
            plan.patch[qualified] = days
        else:
            plan.copy.append(qualified)
    plan.drop = _order(base.present - set(plan.reuse) - set(plan.patch))
    return plan


def _where_days(shape: dict, days: list[int | None]) -> tuple[str, list]:
    """``WHERE`` clause and parameters picking the rows of ``days`` (None: rows without a day).

    A day read from one column also bounds that column, a day wider on each side than the days asked (the
    bounds need only hold every row of them), which lets DuckDB skip the row groups outside by their min/max:
    most of a table, as the days that change are usually its last.
    """
    numbers = sorted(d for d in days if d is not None)
    clauses, parameters = [], []
    if numbers:
        clause = f"{shape['day']} IN (SELECT unnest(?::BIGINT[]))"
        parameters.append(numbers)
        if shape["day_column"]:
            column, type_ = quote(shape["day_column"]), shape["day_type"]  # type_: one of DAY_TYPES
            clause = f"{column} >= ?::{type_} AND {column} < ?::{type_} AND {clause}"
            parameters[:0] = [_midnight(numbers[0] - 1, type_), _midnight(numbers[-1] + 2, type_)]
        clauses.append(clause)
    if None in days:
        clauses.append(f"{shape['day']} IS NULL")
    return "WHERE " + " OR ".join(f"({clause})" for clause in clauses), parameters


def _midnight(day: int, type_: str) -> dt.date | dt.datetime:
    """The start of day number ``day`` (UTC) as a value of ``type_``."""
    date = EPOCH + dt.timedelta(days=day)
    if type_ == "DATE":
        return date
    moment = dt.datetime.combine(date, dt.time(0))
    return moment.replace(tzinfo=dt.UTC) if type_ == "TIMESTAMP WITH TIME ZONE" else moment


def _copy_whole(con: duckdb.DuckDBPyConnection, qualified: str, fp: _Fingerprint) -> None:
    """Write ``qualified`` whole into the snapshot, as the working file holds it (a mart in key order)."""
    names = ", ".join(quote(c) for c, _ in fp.shape["columns"])
    con.execute(f"CREATE TABLE {_name(qualified, SNAPSHOT_ALIAS)} AS SELECT {names} FROM {_name(qualified)} "
                f"{fp.shape['order']}")


def _insert_days(con: duckdb.DuckDBPyConnection, qualified: str, fp: _Fingerprint, days: list[int | None]) -> None:
    """Insert the working file's rows of ``days`` into the snapshot's ``qualified`` (its old rows of them deleted)."""
    names = ", ".join(quote(c) for c, _ in fp.shape["columns"])
    where, parameters = _where_days(fp.shape, days)
    con.execute(f"INSERT INTO {_name(qualified, SNAPSHOT_ALIAS)} SELECT {names} FROM {_name(qualified)} {where} "
                f"{fp.shape['order']}", parameters)


def _checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Free the blocks of what was dropped or deleted now, so what is written next reuses them (the file
    stays the size of its data instead of growing by what each publish rewrites)."""
    try:
        con.execute(f"CHECKPOINT {SNAPSHOT_ALIAS}")
    except duckdb.Error as error:  # another transaction open on this connection's database: the file grows a little
        log.warning("could not checkpoint the snapshot before writing it: %s", error)


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction for many statements: each commit of an attached file syncs its write-ahead log to disk,
    which a statement per table and a COMMENT per column would pay hundreds of times."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        warehouse.rollback(con)
        raise
    con.execute("COMMIT")


def _clear(con: duckdb.DuckDBPyConnection, plan: _Plan, now: dict[str, _Fingerprint]) -> None:
    """Remove from the attached file what is to be written again: tables gone or written whole, the changed days
    of patched tables, and the snapshot's own tables in ``main`` (made again each publish)."""
    with _transaction(con):
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {SNAPSHOT_ALIAS}.{quote(schema)}")
        for qualified in plan.drop + _own_tables(con):
            con.execute(f"DROP TABLE {_name(qualified, SNAPSHOT_ALIAS)}")
        for qualified, days in plan.patch.items():
            where, parameters = _where_days(now[qualified].shape, days)
            con.execute(f"DELETE FROM {_name(qualified, SNAPSHOT_ALIAS)} {where}", parameters)
    if plan.drop or plan.patch:
        _checkpoint(con)


def _write(con: duckdb.DuckDBPyConnection, plan: _Plan, now: dict[str, _Fingerprint]) -> None:
    """Write what ``_clear`` removed from the working file: whole tables, and the changed days of patched ones."""
    for qualified, fp in now.items():  # in publishing order
        if qualified in plan.copy:
            _copy_whole(con, qualified, fp)
        elif qualified in plan.patch:
            _insert_days(con, qualified, fp, plan.patch[qualified])


def _counted(con: duckdb.DuckDBPyConnection, plan: _Plan, now: dict[str, _Fingerprint]) -> dict[str, int]:
    """Rows of every published table of the new file, each checked against the working file's count.

    A kept or patched table that does not hold as many rows as the working file (its previous copy was not what
    its fingerprint said) is written whole instead; a snapshot that still differs is never published.
    """
    def count(qualified: str) -> int:
        return con.execute(f"SELECT count(*) FROM {_name(qualified, SNAPSHOT_ALIAS)}").fetchone()[0]

    rows = {q: count(q) for q in now}
    for qualified in [q for q in plan.reuse + list(plan.patch) if rows[q] != now[q].rows]:
        log.warning("%s: the snapshot started from held %s rows where %s were expected; writing it whole",
                    qualified, rows[qualified], now[qualified].rows)
        con.execute(f"DROP TABLE {_name(qualified, SNAPSHOT_ALIAS)}")
        _copy_whole(con, qualified, now[qualified])
        plan.reuse = [q for q in plan.reuse if q != qualified]
        plan.patch.pop(qualified, None)
        plan.copy.append(qualified)
        rows[qualified] = count(qualified)
    wrong = {q: (rows[q], fp.rows) for q, fp in now.items() if rows[q] != fp.rows}
    if wrong:  # the partial folder is left for the next publish to prune
        raise RuntimeError(f"snapshot rows differ from the warehouse's (snapshot, warehouse): {wrong}")
    return rows


def _own_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The attached file's own tables in ``main`` (snapshot_info, data_dictionary), made again each publish."""
    return list(_tables(con, SNAPSHOT_ALIAS, schemas=("main",)))


def _parquet_marts(con: duckdb.DuckDBPyConnection, folder: Path, now: dict[str, _Fingerprint], reused: set[str],
                   previous: _Previous | None) -> list[str]:
    """One Parquet file per mart, in key order; a mart the snapshot reuses keeps the previous snapshot's file
    (a hard link: the same bytes, as both are immutable). Returns the marts whose file was reused."""
    kept = []
    for mart in (m.name for m in MARTS):
        qualified = f"marts.{mart}"
        if qualified not in now:
            continue
        target = folder / "marts" / f"{mart}.parquet"
        source = previous.folder / "marts" / target.name if previous else None
        if qualified in reused and source is not None and source.is_file():
            try:
                os.link(source, target)
            except OSError:  # another file system, or links not allowed: a copy is as good
                shutil.copyfile(source, target)
            kept.append(qualified)
            continue
        names = ", ".join(quote(c) for c, _ in now[qualified].shape["columns"])
        con.execute(f"COPY (SELECT {names} FROM {_name(qualified)} {now[qualified].shape['order']}) "
                    "TO ? (FORMAT parquet, COMPRESSION zstd)", [str(target)])
    return kept


def publish(con: duckdb.DuckDBPyConnection, root: Path, *, published_at: dt.datetime, keep: int = 7,
            run_id: str | None = None, progress=lambda line: None) -> Published:
    """Publish the warehouse behind ``con`` as a new snapshot under ``root`` and make it ``latest``.

    The new file starts as a copy of the latest snapshot where it can (the tables and days that changed since are
    replaced, the rest kept), else empty (every table copied); either way it holds the same as a full copy.
    """
    began = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(published_at, root)
    partial = root / f".{stamp}.partial"
    if partial.exists():
        _remove(partial)
    (partial / "marts").mkdir(parents=True)
    found = _tables(con)
    # A column the policy drops today never leaves, whatever an older load put in the working file.
    tables = {q: [(c, t) for c, t in found[q] if not _withheld(q, c)] for q in _order(found)}
    tables = {q: columns for q, columns in tables.items() if columns}  # nothing classified: nothing to publish
    entries = dictionary.lookup()
    now = _fingerprints(con, tables, entries)
    base = _start(con, root, partial / SNAPSHOT_FILE)
    try:
        plan = _plan(now, base)
        _clear(con, plan, now)
        with _transaction(con):
            _write(con, plan, now)
            rows = _counted(con, plan, now)
            latest_day = (con.execute("SELECT max(day) FROM marts.fleet_daily").fetchone()[0]
                          if "marts.fleet_daily" in tables else None)
            con.execute(f"CREATE TABLE {SNAPSHOT_ALIAS}.main.snapshot_info AS SELECT ?::TIMESTAMPTZ AS published_at, "
                        "?::VARCHAR AS run_id, ?::DATE AS fleet_daily_through, ?::INTEGER AS tables, "
                        "?::BIGINT AS lake_version",
                        [published_at, run_id, latest_day, len(tables), warehouse.lake_version(con)])
            described = _describe(con, SNAPSHOT_ALIAS, tables)
            own_rows = {q: con.execute(f"SELECT count(*) FROM {_name(q, SNAPSHOT_ALIAS)}").fetchone()[0]
                        for q in described if q not in rows}
    finally:
        con.execute(f"DETACH {SNAPSHOT_ALIAS}")
    previous = base.previous
    result = Published(folder=root / stamp, rows=rows, copied=list(plan.copy),
                       patched={q: len(days) for q, days in plan.patch.items()}, reused=list(plan.reuse),
                       dropped=_order(base.present - set(now)), started_from=previous.folder if previous else None,
                       full_copy_reason=base.why_full)
    result.parquet_reused = _parquet_marts(con, partial, now, set(plan.reuse), previous)
    (partial / STATE_FILE).write_text(_state(now, _chain(previous, partial / SNAPSHOT_FILE, rows)))
    title = f"Data dictionary: warehouse snapshot {stamp}"
    (partial / DICTIONARY_FILE).write_text(markdown(described, rows | own_rows, title=title))
    _freeze(partial)
    os.rename(partial, result.folder)
    _swap_symlink(root / LATEST, stamp)
    if not (root / LATEST_DUCKDB).is_symlink():
        _swap_symlink(root / LATEST_DUCKDB, f"{LATEST}/{SNAPSHOT_FILE}")
    result.removed = _prune(root, keep, stamp)
    result.seconds = time.perf_counter() - began
    progress(f"published {len(tables)} tables, {sum(result.rows.values()):,} rows to {result.folder} "
             f"in {result.seconds:.1f}s; {result.how()}")
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


def _date_columns(qualified: str, columns: list[str]) -> list[str]:
    """The columns ``qualified``'s day is read from: a mart's date column, or a raw daily table's event times
    (the first non-null); none for a table without days."""
    schema, table = qualified.split(".", 1)
    if schema == "marts":
        return next(([c] for c in MART_DATE_COLUMNS if c in columns), [])
    database = next((db for db, s in RAW_SCHEMAS.items() if s == schema), None)
    for source in source_tables():
        if (source.database, source.name) == (database, table) and source.partitioned:
            return [c for c in source.event_time if c in columns]
    return []


def date_column(qualified: str, columns: list[str]) -> str | None:
    """The SQL ``--since`` cuts ``qualified`` on (a column, or the first non-null of a raw table's event
    times); None for a table with no date (copied whole)."""
    present = [quote(c) for c in _date_columns(qualified, columns)]
    if not present:
        return None
    return present[0] if len(present) == 1 else f"coalesce({', '.join(present)})"


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

