"""Fleet generator: fills the Cheeko and Cognova databases with realistic,
internally consistent data, deterministically for a given seed.

``generate`` makes a fresh dataset of ``days`` days ending on ``end``;
``append`` continues it by K days (new events, a few new signups, and a few
updated and deleted rows, so incremental extraction has real work). What a
run planted (facts in memory files, injected faults) is written to
``$WAREHOUSE_HOME/generated/``. The parameters of the dataset are kept in
Cheeko's own ``sys_params`` table (``warehouse.generator``), so an append
needs nothing but the database.

Everything is loaded with ``COPY`` through :mod:`pipelines.writes`, one
transaction per database (an append's updates and deletes run before its new
rows; the app's own upserts of its analytics tables, :mod:`.app_tables`, after
them). Every run records ``app_counter_drift``, the devices whose counters the
app drifted, among its faults. Cognova is loaded first and skips rows it already
has (its ids are deterministic); Cheeko, which holds the dataset's parameters,
commits last. So a run that fails between the two can simply be run again.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import postgres, writes
from pipelines.generator.assemble import (
    CHEEKO_LOAD_ORDER,
    COGNOVA_LOAD_ORDER,
    HORIZON_HOURS_AFTER_END,
    META_PARAM,
    Dataset,
    build_append,
    build_initial,
)
from pipelines.generator.memories import PlantedFact


class GeneratorError(RuntimeError):
    """The generator cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Options:
    """What to generate. ``end`` is the last day with data (default: yesterday, UTC)."""

    devices: int = 200
    days: int = 30
    seed: int = 7
    messy: bool = False
    end: dt.date | None = None

    def resolved_end(self) -> dt.date:
        """``end``, or the latest day whose local evenings have ended in every zone (UTC-12 included)."""
        return self.end or (dt.datetime.now(dt.UTC) - dt.timedelta(hours=HORIZON_HOURS_AFTER_END)).date()


@dataclass
class Result:
    """What a run wrote: rows per (database, table), planted facts and faults."""

    start: dt.date
    end: dt.date
    rows: dict[tuple[str, str], int]
    facts: list[PlantedFact]
    faults: dict[str, int]
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _has_rows(url: str, table: str) -> bool:
    try:
        with postgres.read_only(url) as conn:
            return conn.execute(f"SELECT EXISTS (SELECT 1 FROM {writes.quote_identifier(table)})").fetchone()[0]
    except postgres.UndefinedTable:
        raise GeneratorError(f"{postgres.redact(url)} has no table {table!r}: run `warehouse db upgrade` first") from None


def _read_meta(cheeko_url: str) -> dict | None:
    _has_rows(cheeko_url, "sys_params")  # a clear error on an unmigrated database
    with postgres.read_only(cheeko_url) as conn:
        row = conn.execute("SELECT param_value FROM sys_params WHERE param_code = %s", (META_PARAM,)).fetchone()
    return json.loads(row[0]) if row else None


def _run(conn, statements: list[tuple[str, object]]) -> None:
    for statement, params in statements:
        if isinstance(params, list):  # one statement, many rows, in order
            if params:
                conn.cursor().executemany(statement, params)
        else:
            conn.execute(statement, params)


def _load(url: str, order: list[str], data: Dataset, database: str, rows: dict, progress=print) -> None:
    """One transaction: deletes and updates, COPY of new rows in FK order, then the
    statements that follow them (the app's own upserts in an append)."""
    def work() -> None:
        with writes.transaction(url) as conn:
            _run(conn, data.statements.get(database, []))
            for table in order:
                frame = data.tables.get((database, table))
                if frame is not None:
                    if frame.height >= 50_000:
                        progress(f"  {database}.{table}: {frame.height:,} rows")
                    rows[(database, table)] = writes.copy_frame(conn, table, frame, skip_existing=database == "cognova")
                    if "id" in frame.columns and frame.schema["id"].is_integer():
                        writes.sync_identity(conn, table)
            _run(conn, data.after.get(database, []))
    writes.with_retries(work)


def _write_outputs(out_dir: Path, result: Result, meta: dict, append: bool) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    facts_path = out_dir / "planted_facts.jsonl"
    with facts_path.open("a" if append else "w") as fh:
        for fact in result.facts:
            fh.write(json.dumps(fact.to_dict()) + "\n")
    manifest_path = out_dir / "manifest.json"
    manifest = {"dataset": meta, "runs": []}
    if append and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        manifest["dataset"] = meta
    manifest["runs"].append({
        "kind": "append" if append else "generate",
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "rows": {f"{db}.{t}": n for (db, t), n in sorted(result.rows.items())},
        "faults": result.faults,
        "seconds": round(result.seconds, 2),
    })
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return [facts_path, manifest_path]


def _pipeline_state_tables(url: str) -> list[str]:
    """The pipeline's own tables (schema ``warehouse``) that exist: they describe the rows being replaced."""
    with postgres.connect(url) as conn:
        return [name for name in ("warehouse.memory_files", "warehouse.email_deliveries")
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]]


def generate(cheeko_url: str, cognova_url: str, options: Options, out_dir: Path, *, reset: bool = False,
             progress=print) -> Result:
    """Generate a fresh dataset into two migrated, empty databases.

    With ``reset`` the existing rows of every table are removed first (in the
    same transaction as the new rows); without it a non-empty database is an
    error, so a typo never doubles a dataset.
    """
    began = time.perf_counter()
    if options.devices < 1 or options.days < 1:
        raise GeneratorError(f"--devices and --days must be at least 1 (got {options.devices}, {options.days})")
    if not reset and (_has_rows(cheeko_url, "ai_device") or _has_rows(cognova_url, "user")):
        raise GeneratorError("the databases already hold data: pass --reset to replace it, or --append-days K to continue it")
    end = options.resolved_end()
    progress(f"generating {options.devices} devices x {options.days} days ending {end} (seed {options.seed}"
             f"{', messy' if options.messy else ''})")
    data = build_initial(options.seed, options.devices, options.days, end, options.messy, progress=progress)
    if reset:
        data.statements["cheeko"] = [(f"TRUNCATE {', '.join(writes.quote_identifier(t) for t in CHEEKO_LOAD_ORDER)} RESTART IDENTITY CASCADE", None)]
        # The memory sync's record (cheeko_0002) and the email claims (cheeko_0003) describe the old rows.
        for table in _pipeline_state_tables(cheeko_url):
            data.statements["cheeko"].append((f"TRUNCATE {table} CASCADE", None))
        data.statements["cognova"] = [(f"TRUNCATE {', '.join(writes.quote_identifier(t) for t in COGNOVA_LOAD_ORDER)} CASCADE", None)]
    rows: dict[tuple[str, str], int] = {}
    progress("loading cognova")
    _load(cognova_url, COGNOVA_LOAD_ORDER, data, "cognova", rows, progress)
    progress("loading cheeko")
    _load(cheeko_url, CHEEKO_LOAD_ORDER, data, "cheeko", rows, progress)
    result = Result(data.start, data.end, rows, data.facts, data.faults, time.perf_counter() - began)
    result.files = _write_outputs(out_dir, result, data.meta, append=False)
    return result


def append(cheeko_url: str, cognova_url: str, days: int, out_dir: Path, *, progress=print) -> Result:
    """Continue the dataset in the databases by ``days`` days."""
    began = time.perf_counter()
    if days < 1:
        raise GeneratorError(f"--append-days must be at least 1 (got {days})")
    meta = _read_meta(cheeko_url)
    if meta is None:
        raise GeneratorError(f"no generated dataset to continue (sys_params has no {META_PARAM!r}): run generate first")
    progress(f"appending {days} day(s) after {meta['end']}")
    data = build_append(meta, days, progress=progress)
    rows: dict[tuple[str, str], int] = {}
    _load(cognova_url, COGNOVA_LOAD_ORDER, data, "cognova", rows, progress)
    _load(cheeko_url, CHEEKO_LOAD_ORDER, data, "cheeko", rows, progress)
    result = Result(data.start, data.end, rows, data.facts, data.faults, time.perf_counter() - began)
    result.files = _write_outputs(out_dir, result, data.meta, append=True)
    return result
