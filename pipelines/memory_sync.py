"""Keep ``memory_chunks`` in step with ``device_memories``: incremental per file and per chunk.

A run compares ``device_memories`` with the sync's own record of what it
last synced (``warehouse.memory_files``, see the ``cheeko_warehouse``
migrations). Only files whose content changed are read and re-chunked; only
chunk texts the device does not already have are embedded (and each
distinct text once, however many devices share it). A chunk row is deleted
when no file of its device holds its text any more: which files hold which
texts is recorded in ``warehouse.memory_chunk_sources``, because one
``(mac_id, content_hash)`` row stands for every occurrence of that text.

What changed is decided by content, never by ``updated_at`` (an app may
edit a file without moving it, or move it backwards). Each synced file
records the row version it read (``xmin``: any write to the row gives it a
new one) and an md5 of what it chunked (:data:`FILE_MD5`: MAC, file type,
date and content, computed in PostgreSQL so the content travels only when
it changed). A row whose ``xmin`` is the recorded one is not looked at; one
written since is compared by md5, and re-chunked only when that differs.
So a run costs an md5 per row written since the last sync, not per row,
and no watermark is kept: a transaction that commits after a sync, with
any timestamps, is seen by the next. Files synced before the md5 was
recorded (``cheeko_warehouse_0004``) are re-chunked once; their chunk texts
are unchanged, so nothing is embedded again.

Work goes in batches of files; each batch is one transaction (through
:mod:`pipelines.writes`), so a crash leaves every file either as it was or
fully synced, and a re-run carries on from there. Files that cannot be
chunked (a MAC that is not one) or embedded are counted, never fatal. One
sync runs at a time per database (an advisory lock).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines import chunker, postgres, writes

# The app's tables the sync reads and writes directly, and the columns it uses (also what adopting a
# database checks, pipelines.adoption). device_memories' are read in this order (FileVersion).
APP_COLUMNS = {
    "device_memories": ("id", "mac_id", "file_type", "file_date", "content", "updated_at"),
    "memory_chunks": ("mac_id", "text", "file_path", "start_line", "end_line", "embedding", "category", "content_hash"),
}
FILE_COLUMNS = ["memory_id", "mac_id", "source_updated_at", "source_xmin", "source_md5", "chunker", "chunks", "error"]
LOCK_KEY = 0x6D656D6F7279  # pg_advisory_lock key of the memory sync ("memory")
BATCH_FILES = 500  # files per transaction
BATCH_BYTES = 8_000_000  # ... or fewer, when they are large
LARGE_FILE_BYTES = 1_000_000
LONG_LINE_CHARS = 100_000
FAILURE_SAMPLES = 10
MAX_EMBED_FAILURES = 20  # single texts the model refused, with none embedded: the model is broken, stop


class SyncBusy(RuntimeError):
    """Another memory sync holds the lock on this database."""


class SyncError(RuntimeError):
    """The database does not hold what the sync reads or writes; the message names table and column."""


@dataclass
class SyncResult:
    """What one sync did; every field becomes asset metadata."""

    files_seen: int = 0
    files_changed: int = 0
    files_rewritten: int = 0  # written since their last sync with the same content: not re-chunked
    files_deleted: int = 0
    files_failed: int = 0
    chunks_added: int = 0
    chunks_kept: int = 0
    chunks_deleted: int = 0
    chunks_failed: int = 0
    chunks_moved: int = 0
    texts_embedded: int = 0
    embed_seconds: float = 0.0
    chunk_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    findings: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, memory_id, reason: str) -> None:
        self.files_failed += 1
        if len(self.failures) < FAILURE_SAMPLES:
            self.failures.append(f"device_memories {memory_id}: {reason}")


@dataclass(frozen=True)
class FileVersion:
    """A row of device_memories as this run read it."""

    memory_id: object
    mac_id: str
    file_type: str
    file_date: dt.date | None
    content: str
    updated_at: dt.datetime | None
    xmin: int  # the row version read (device_memories.xmin)
    md5: str  # FILE_MD5 of this version


def findings(version: FileVersion) -> set[str]:
    """Bad-input kinds ``version`` shows (each becomes a count in the metadata)."""
    found = set()
    content = version.content or ""
    if not content.strip():
        found.add("empty_files")
    if len(content.encode("utf-8", "surrogatepass")) > LARGE_FILE_BYTES:
        found.add("large_files")
    if any(len(line) > LONG_LINE_CHARS for line in content.split("\n")):
        found.add("long_line_files")
    if chunker.CONTROL.search(content):
        found.add("control_character_files")
    try:
        if chunker.normal_mac(version.mac_id) != version.mac_id:
            found.add("respelled_macs")
    except chunker.ChunkerError:
        found.add("invalid_macs")
    return found


# What a file's chunks depend on (its path comes from MAC, type and date), hashed where the row lives.
# The fields are joined by newlines, which a MAC or a file type never holds; a missing date is an empty field.
FILE_MD5 = ("md5(concat_ws(E'\\n', d.mac_id, d.file_type, coalesce(to_char(d.file_date, 'YYYY-MM-DD'), ''), "
            "coalesce(d.content, '')))")
# Rows the sync must look at: new, written since their last sync (another xmin), synced before md5s were
# recorded, chunked by another model or chunker, or whose chunks someone else deleted from memory_chunks
# (re-synced to heal). ``unchanged``: written since, but FILE_MD5 is still the synced one, so only the
# record moves on; not for a row with an error, which may belong to a version that was never synced (one
# that could not be embedded). The md5 is computed for those rows only (CASE evaluates lazily).
PLAN = f"""
    WITH broken AS (SELECT DISTINCT s.memory_id FROM warehouse.memory_chunk_sources s WHERE NOT EXISTS
                        (SELECT 1 FROM memory_chunks c WHERE c.mac_id = s.mac_id AND c.content_hash = s.content_hash))
    SELECT d.id::text AS memory_id, octet_length(d.content) AS bytes, d.xmin::text::bigint AS xmin, d.updated_at,
           CASE WHEN f.source_md5 IS NOT NULL AND f.chunker = %(chunker)s AND b.memory_id IS NULL AND f.error IS NULL
                THEN {FILE_MD5} = f.source_md5 ELSE false END AS unchanged
    FROM device_memories d
    LEFT JOIN warehouse.memory_files f ON f.memory_id = d.id::text
    LEFT JOIN broken b ON b.memory_id = d.id::text
    WHERE f.memory_id IS NULL OR f.source_xmin IS DISTINCT FROM d.xmin::text::bigint OR f.source_md5 IS NULL
       OR f.chunker <> %(chunker)s OR b.memory_id IS NOT NULL
"""
# Rows synced before but gone from device_memories.
DELETED_ROWS = """
    FROM warehouse.memory_files f WHERE NOT EXISTS (SELECT 1 FROM device_memories d WHERE d.id::text = f.memory_id)
"""


def _pending(conn, chunker_id: str) -> tuple[int, list[tuple[str, int]], list[tuple], list[str]]:
    """(rows in device_memories, [(id, bytes)] to re-chunk, [(id, xmin, updated_at)] rewritten with the same
    content, [ids] deleted since their last sync)."""
    seen = conn.execute("SELECT count(*) FROM device_memories").fetchone()[0]
    changed, rewritten = [], []
    for memory_id, size, xmin, updated_at, unchanged in conn.execute(f"{PLAN} ORDER BY 1", {"chunker": chunker_id}):
        if unchanged:
            rewritten.append((memory_id, xmin, updated_at))
        else:
            changed.append((memory_id, size))
    deleted = [row[0] for row in conn.execute(f"SELECT f.memory_id {DELETED_ROWS} ORDER BY 1").fetchall()]
    return seen, changed, rewritten, deleted


def _batches(changed: list[tuple[object, int]], files: int, size: int) -> Iterator[list[object]]:
    batch, total = [], 0
    for memory_id, length in changed:
        if batch and (len(batch) >= files or total + (length or 0) > size):
            yield batch
            batch, total = [], 0
        batch.append(memory_id)
        total += length or 0
    if batch:
        yield batch


def _read(conn, ids: list[str]) -> list[FileVersion]:
    """The rows ``ids`` with the version and md5 of exactly what is read (one statement, one snapshot)."""
    columns = ", ".join(f"d.{c}" for c in APP_COLUMNS["device_memories"])
    rows = conn.execute(f"SELECT {columns}, d.xmin::text::bigint, {FILE_MD5} FROM device_memories d "
                        "WHERE d.id::text = ANY(%s) ORDER BY d.id::text", (ids,)).fetchall()
    return [FileVersion(str(row[0]), *row[1:]) for row in rows]


def _existing(conn, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (mac_id, content_hash) pairs memory_chunks already has."""
    if not pairs:
        return set()
    macs, hashes = zip(*pairs)
    rows = conn.execute(
        "SELECT c.mac_id, c.content_hash FROM memory_chunks c "
        "JOIN unnest(%s::text[], %s::text[]) AS k(mac_id, content_hash) USING (mac_id, content_hash)",
        (list(macs), list(hashes)),
    ).fetchall()
    return {(mac, h) for mac, h in rows}


@dataclass
class _Batch:
    files: list[tuple] = field(default_factory=list)  # warehouse.memory_files rows
    sources: list[tuple] = field(default_factory=list)  # warehouse.memory_chunk_sources rows
    chunks: dict[tuple[str, str], chunker.Chunk] = field(default_factory=dict)  # one occurrence per new (mac, hash)
    unembedded: list[tuple] = field(default_factory=list)  # (memory_id, mac_id, error): kept as they were, error noted


def _chunk(versions: list[FileVersion], chunker_id: str, model_name: str, count_tokens, result: SyncResult) -> tuple[_Batch, dict]:
    """Chunk each file; failures become file rows with an error and no chunks."""
    batch, chunks_of = _Batch(), {}
    for version in versions:
        result.findings.update(findings(version))
        try:
            mac = chunker.normal_mac(version.mac_id)
            chunks = chunker.chunk_file(version.content, mac=mac, file_type=version.file_type, file_date=version.file_date,
                                        count_tokens=count_tokens, model_name=model_name)
        except Exception as error:  # noqa: BLE001 - one bad row is counted, not fatal to the run
            result.fail(version.memory_id, f"{type(error).__name__}: {error}")
            mac = None
            try:
                mac = chunker.normal_mac(version.mac_id)
            except chunker.ChunkerError:
                pass
            # Recorded as synced with no chunks: its old chunks go, and it is retried when the row changes.
            batch.files.append((version.memory_id, mac, version.updated_at, version.xmin, version.md5, chunker_id, 0,
                                str(error)[:500]))
            continue
        chunks_of[version.memory_id] = (version, mac, chunks)
    return batch, chunks_of


def _texts_to_embed(chunks_of: dict, pairs: set[tuple[str, str]]) -> dict[str, str]:
    """hash -> text for the chunks of ``pairs``: each distinct text once, whichever devices share it."""
    texts: dict[str, str] = {}
    for _, mac, chunks in chunks_of.values():
        for c in chunks:
            if (mac, c.content_hash) in pairs:
                texts.setdefault(c.content_hash, c.text)
    return texts


def _embed(texts: dict[str, str], embed: Callable[[Sequence[str]], np.ndarray], vectors: dict[str, np.ndarray],
           result: SyncResult) -> None:
    """Add the finite embeddings of ``texts`` to ``vectors``.

    When the model raises, the texts are retried in halves, so one text it
    cannot take (or a batch too big for the GPU) costs only that text; a
    model that fails on everything fails the run.
    """
    todo = [h for h in texts if h not in vectors]
    failures: list[BaseException] = []

    def attempt(hashes: list[str]) -> None:
        began = time.perf_counter()
        try:
            embedded = embed([texts[h] for h in hashes])
        except Exception as error:  # noqa: BLE001 - narrowed down below, re-raised if systemic
            result.embed_seconds += time.perf_counter() - began
            if len(hashes) == 1:
                failures.append(error)
                if len(failures) >= MAX_EMBED_FAILURES and not vectors:
                    raise
                return
            attempt(hashes[: len(hashes) // 2])
            attempt(hashes[len(hashes) // 2 :])
            return
        result.embed_seconds += time.perf_counter() - began
        result.texts_embedded += len(hashes)
        vectors.update({h: v for h, v in zip(hashes, embedded) if np.isfinite(v).all()})

    if todo:
        attempt(todo)


def _finish(batch: _Batch, chunks_of: dict, missing: set[tuple[str, str]], vectors: dict[str, np.ndarray],
            chunker_id: str, result: SyncResult) -> None:
    """The batch's rows; a file with a chunk that got no embedding keeps its old chunks and is retried."""
    occurrences = []
    for memory_id, (version, mac, chunks) in chunks_of.items():
        failed = [c for c in chunks if (mac, c.content_hash) in missing and c.content_hash not in vectors]
        if failed:
            result.chunks_failed += len(failed)
            reason = f"{len(failed)} chunk(s) could not be embedded"
            result.fail(memory_id, reason)
            batch.unembedded.append((memory_id, mac, reason))
            continue
        batch.files.append((memory_id, mac, version.updated_at, version.xmin, version.md5, chunker_id, len(chunks), None))
        for ordinal, c in enumerate(chunks):
            batch.sources.append((memory_id, ordinal, mac, c.content_hash, c.file_path, c.start_line, c.end_line, c.category))
            if (mac, c.content_hash) in missing:
                occurrences.append((c.file_path, c.start_line, ordinal, str(memory_id), mac, c))
    # A new chunk starts at the occurrence the UPDATE in _apply would pick, so it is not "moved" at once.
    for *_, mac, c in sorted(occurrences, key=lambda o: o[:4]):
        batch.chunks.setdefault((mac, c.content_hash), c)


def _record_rewritten(url: str, rewritten: list[tuple]) -> int:
    """Move the record of rows written with their synced content on to the version seen; nothing is re-chunked."""
    if not rewritten:
        return 0
    ids, xmins, times = (list(column) for column in zip(*rewritten))

    def work() -> int:
        with writes.transaction(url) as conn:
            return conn.execute(
                "UPDATE warehouse.memory_files f SET source_xmin = k.xmin, source_updated_at = k.updated_at, "
                "synced_at = now() FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[]) AS k(memory_id, xmin, updated_at) "
                "WHERE f.memory_id = k.memory_id", (ids, xmins, times)).rowcount

    return writes.with_retries(work)


def _apply(url: str, batch: _Batch, deleted: list[object], vectors: dict[str, np.ndarray], result: SyncResult) -> None:
    """Write one batch in one transaction: file records, chunk sources, new chunks, orphans removed."""

    def work() -> tuple[int, int, int]:
        with writes.transaction(url) as conn:
            conn.execute("CREATE TEMP TABLE _files (memory_id text, mac_id text, source_updated_at timestamptz, "
                         "source_xmin bigint, source_md5 text, chunker text, chunks integer, error text) ON COMMIT DROP")
            conn.execute("CREATE TEMP TABLE _sources (LIKE warehouse.memory_chunk_sources) ON COMMIT DROP")
            conn.execute("CREATE TEMP TABLE _chunks (mac_id text, text text, file_path text, start_line integer, "
                         "end_line integer, embedding vector(384), category text, content_hash text) ON COMMIT DROP")
            conn.execute("CREATE TEMP TABLE _gone (memory_id text) ON COMMIT DROP")
            writes.copy_rows(conn, "_files", FILE_COLUMNS, ["text", "text", "timestamptz", "int8", "text", "text", "int4",
                                                            "text"], batch.files)
            writes.copy_rows(conn, "_sources", ["memory_id", "ordinal", "mac_id", "content_hash", "file_path", "start_line",
                                                "end_line", "category"],
                             ["text", "int4", "text", "text", "text", "int4", "int4", "text"], batch.sources)
            writes.copy_rows(conn, "_chunks", list(APP_COLUMNS["memory_chunks"]),
                             ["text", "text", "text", "int4", "int4", "vector", "text", "text"],
                             ((mac, c.text, c.file_path, c.start_line, c.end_line, vectors[h], c.category, h)
                              for (mac, h), c in batch.chunks.items()))
            writes.copy_rows(conn, "_gone", ["memory_id"], ["text"], ((m,) for m in deleted))
            # Every text these files held before or hold now: the only chunks this batch can orphan or move.
            conn.execute(
                """
                CREATE TEMP TABLE _affected ON COMMIT DROP AS
                SELECT mac_id, content_hash FROM warehouse.memory_chunk_sources
                WHERE memory_id IN (SELECT memory_id FROM _files UNION ALL SELECT memory_id FROM _gone)
                UNION SELECT mac_id, content_hash FROM _sources
                """
            )
            conn.execute("DELETE FROM warehouse.memory_chunk_sources WHERE memory_id IN "
                         "(SELECT memory_id FROM _files UNION ALL SELECT memory_id FROM _gone)")
            conn.execute("DELETE FROM warehouse.memory_files WHERE memory_id IN (SELECT memory_id FROM _gone)")
            conn.execute(
                """
                INSERT INTO warehouse.memory_files (memory_id, mac_id, source_updated_at, source_xmin, source_md5, chunker,
                                                    chunks, error)
                SELECT memory_id, mac_id, source_updated_at, source_xmin, source_md5, chunker, chunks, error FROM _files
                ON CONFLICT (memory_id) DO UPDATE SET mac_id = EXCLUDED.mac_id, source_updated_at = EXCLUDED.source_updated_at,
                    source_xmin = EXCLUDED.source_xmin, source_md5 = EXCLUDED.source_md5, chunker = EXCLUDED.chunker,
                    chunks = EXCLUDED.chunks, error = EXCLUDED.error, synced_at = now()
                """
            )
            conn.execute("INSERT INTO warehouse.memory_chunk_sources SELECT * FROM _sources")
            # Could not be embedded: the old version's record stays (its xmin and md5 are not this
            # version's; a new row gets none and no chunker), so the next run retries it; the error
            # shows in the failing-files check.
            for memory_id, mac, reason in batch.unembedded:
                conn.execute(
                    "INSERT INTO warehouse.memory_files (memory_id, mac_id, source_updated_at, chunker, chunks, error) "
                    "VALUES (%s, %s, NULL, '', 0, %s) ON CONFLICT (memory_id) DO UPDATE SET error = EXCLUDED.error",
                    (memory_id, mac, reason))
            columns = ", ".join(APP_COLUMNS["memory_chunks"])
            added = conn.execute(f"INSERT INTO memory_chunks ({columns}) SELECT {columns} FROM _chunks "
                                 "ON CONFLICT (mac_id, content_hash) DO NOTHING").rowcount
            removed = conn.execute(
                """
                DELETE FROM memory_chunks c USING _affected a
                WHERE c.mac_id = a.mac_id AND c.content_hash = a.content_hash
                  AND NOT EXISTS (SELECT 1 FROM warehouse.memory_chunk_sources s
                                  WHERE s.mac_id = c.mac_id AND s.content_hash = c.content_hash)
                """
            ).rowcount
            # A chunk shows one place its text occurs: the first in path order (within a file type the
            # oldest date), so a recurring line does not move each time a new daily file repeats it.
            moved = conn.execute(
                """
                UPDATE memory_chunks c SET file_path = r.file_path, start_line = r.start_line, end_line = r.end_line,
                                           category = r.category
                FROM (SELECT DISTINCT ON (s.mac_id, s.content_hash) s.*
                      FROM warehouse.memory_chunk_sources s JOIN _affected a USING (mac_id, content_hash)
                      ORDER BY s.mac_id, s.content_hash, s.file_path, s.start_line, s.ordinal, s.memory_id) r
                WHERE c.mac_id = r.mac_id AND c.content_hash = r.content_hash
                  AND (c.file_path, c.start_line, c.end_line, c.category)
                      IS DISTINCT FROM (r.file_path, r.start_line, r.end_line, r.category)
                """
            ).rowcount
            dangling = conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT mac_id, content_hash FROM _sources) s WHERE NOT EXISTS "
                "(SELECT 1 FROM memory_chunks c WHERE c.mac_id = s.mac_id AND c.content_hash = s.content_hash)"
            ).fetchone()[0]
            if dangling:
                # Only a writer outside this sync can cause it; rolling back keeps the record true.
                raise RuntimeError(f"{dangling} chunk(s) disappeared from memory_chunks during the sync; "
                                   "is another process deleting memory_chunks rows?")
            return added, removed, moved

    began = time.perf_counter()
    added, removed, moved = writes.with_retries(work)
    result.write_seconds += time.perf_counter() - began
    result.chunks_added += added
    result.chunks_deleted += removed
    result.chunks_moved += moved


def sync(url: str, embed: Callable[[Sequence[str]], np.ndarray], *, model_name: str = chunker.MODEL_NAME,
         batch_files: int = BATCH_FILES, batch_bytes: int = BATCH_BYTES, count_tokens=None,
         progress: Callable[[str], None] | None = None) -> SyncResult:
    """Bring ``memory_chunks`` of the Cheeko database at ``url`` up to date with its ``device_memories``.

    ``embed`` maps texts to normalised vectors (an :class:`~pipelines.embedding.Embedder`'s ``encode``);
    ``model_name`` goes into every content hash, so a new model re-embeds everything.
    """
    began = time.perf_counter()
    result = SyncResult()
    chunker_id = _chunker_id(model_name)
    count_tokens = count_tokens or chunker.model_token_counter()
    with postgres.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
            raise SyncBusy("another memory sync is running on this database; try again when it has finished")
        try:
            missing = postgres.missing_columns(conn, APP_COLUMNS)
            if missing:
                raise SyncError(f"cheeko lacks {', '.join(missing)}, which the memory sync reads and writes "
                                f"(pipelines/memory_sync.py APP_COLUMNS); nothing was synced")
            result.files_seen, changed, rewritten, deleted = _pending(conn, chunker_id)
            result.files_deleted = len(deleted)
            result.files_rewritten = _record_rewritten(url, rewritten)
            # Writes are not overlapped with the next batch's embedding: on 2 CPU cores that was measured
            # slower (the HNSW inserts and the model compete for the same cores).
            done, kept = 0, set()
            for ids in _batches(changed, batch_files, batch_bytes):
                versions = _read(conn, ids)  # a row deleted since the plan is simply absent
                began_chunking = time.perf_counter()
                batch, chunks_of = _chunk(versions, chunker_id, model_name, count_tokens, result)
                result.chunk_seconds += time.perf_counter() - began_chunking
                wanted = {(mac, c.content_hash) for _, mac, chunks in chunks_of.values() for c in chunks}
                missing = wanted - _existing(conn, wanted)
                kept |= wanted - missing
                vectors: dict[str, np.ndarray] = {}
                _embed(_texts_to_embed(chunks_of, missing), embed, vectors, result)
                _finish(batch, chunks_of, missing, vectors, chunker_id, result)
                _apply(url, batch, [], vectors, result)
                result.files_changed += len(versions)
                done += len(ids)
                if progress:
                    rate = result.texts_embedded / result.embed_seconds if result.embed_seconds else 0.0
                    progress(f"memory: {done:,}/{len(changed):,} changed files synced, {result.texts_embedded:,} texts "
                             f"embedded ({rate:.0f}/s), {result.chunks_added:,} chunks added")
            # Deleted rows last: a row deleted and re-inserted under a new id keeps its chunks (the new
            # row took them over above) instead of losing them and having them embedded again.
            if deleted:
                _apply(url, _Batch(), deleted, {}, result)
            result.chunks_kept = len(kept)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    result.seconds = time.perf_counter() - began
    return result


def _chunker_id(model_name: str) -> str:
    return f"{model_name}/chunker-{chunker.CHUNKER_VERSION}"


@dataclass(frozen=True)
class Pending:
    """What the next sync would do: files to re-chunk, and files deleted since their last sync."""

    changed: int
    deleted: int
    newest_change: dt.datetime | None  # the latest updated_at among the changed rows (for reading, not deciding)
    fingerprint: str  # differs whenever the set of (id, xmin) to re-chunk or of ids deleted differs
    rewritten: int = 0  # written since their last sync with the same content: the next sync only records them

    @property
    def any(self) -> bool:
        """Whether a sync has work; rows rewritten with the same content alone are not (any sync records them)."""
        return bool(self.changed or self.deleted)


def pending(url: str, *, model_name: str = chunker.MODEL_NAME) -> Pending:
    """The work waiting for :func:`sync`, counted in the database without taking its lock (the sensor's question).

    Costs what the sync's own plan costs: an md5 per row written since its last sync, computed in PostgreSQL.
    """
    with postgres.read_only(url) as conn:
        changed, rewritten, newest, changed_md5 = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT unchanged), count(*) FILTER (WHERE unchanged), "
            "max(updated_at) FILTER (WHERE NOT unchanged), "
            "md5(coalesce(string_agg(memory_id || '@' || xmin, ',' ORDER BY memory_id) FILTER (WHERE NOT unchanged), '')) "
            f"FROM ({PLAN}) p", {"chunker": _chunker_id(model_name)}).fetchone()
        deleted, deleted_md5 = conn.execute(
            "SELECT count(*), md5(coalesce(string_agg(f.memory_id::text, ',' ORDER BY f.memory_id), '')) "
            + DELETED_ROWS).fetchone()
    return Pending(changed=changed, deleted=deleted, newest_change=newest, rewritten=rewritten,
                   fingerprint=f"{changed_md5[:12]}.{deleted_md5[:12]}")


def consistency(url: str) -> dict[str, int]:
    """Counts that must be zero when the sync's record and memory_chunks agree."""
    with postgres.read_only(url) as conn:
        missing = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT mac_id, content_hash FROM warehouse.memory_chunk_sources) s "
            "WHERE NOT EXISTS (SELECT 1 FROM memory_chunks c WHERE c.mac_id = s.mac_id AND c.content_hash = s.content_hash)"
        ).fetchone()[0]
        orphaned = conn.execute(
            "SELECT count(*) FROM memory_chunks c WHERE c.mac_id IN (SELECT mac_id FROM warehouse.memory_files) "
            "AND NOT EXISTS (SELECT 1 FROM warehouse.memory_chunk_sources s "
            "WHERE s.mac_id = c.mac_id AND s.content_hash = c.content_hash)"
        ).fetchone()[0]
        unembedded = conn.execute(
            "SELECT count(*) FROM memory_chunks c WHERE c.embedding IS NULL "
            "AND c.mac_id IN (SELECT mac_id FROM warehouse.memory_files)"
        ).fetchone()[0]
    return {"sources_without_chunk": missing, "chunks_without_source": orphaned, "chunks_without_embedding": unembedded}


def sync_status(url: str, samples: int = FAILURE_SAMPLES) -> dict:
    """Rows whose last sync failed (``files_failing``, with ``samples``) and the rows of memory_chunks (``chunks``)."""
    with postgres.read_only(url) as conn:
        failing = conn.execute("SELECT count(*) FROM warehouse.memory_files WHERE error IS NOT NULL").fetchone()[0]
        rows = conn.execute("SELECT memory_id, error FROM warehouse.memory_files WHERE error IS NOT NULL "
                            "ORDER BY synced_at DESC, memory_id LIMIT %s", (samples,)).fetchall()
        chunks = conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0]
    return {"files_failing": failing, "samples": [f"device_memories {m}: {e}" for m, e in rows], "chunks": chunks}
