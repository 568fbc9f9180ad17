"""Semantic search over ``memory_chunks``: the nearest chunks to a question, overall or per device.

Per device, a filtered HNSW scan can come back short: the index finds the
nearest chunks of *all* devices and the filter then drops most of them. So a
device with up to ``EXACT_LIMIT`` chunks is searched exactly (its rows by the
``mac_id`` index, then sorted by distance: a few milliseconds for thousands
of rows, and always complete), and a larger one through the HNSW index with
pgvector 0.8's iterative scan, which keeps scanning until ``k`` rows pass
the filter. Scores are cosine similarities (1 is identical).

Before any model is loaded, :func:`check_arguments` refuses a bad question,
MAC or ``k``, and :func:`searchable` says whether there is anything to
search and, if not, why (an unknown device, one without memory files, or
memories the sync has not embedded yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines import chunker, postgres

EXACT_LIMIT = 20_000
DEFAULT_K = 5
MAX_K = 1000
# How to fill memory_chunks from device_memories (the asset assets/memory.py; the sensor
# device_memories_changed starts the same when `warehouse ui` runs the daemon).
MEMORY_SYNC_COMMAND = "warehouse run --select memory_chunks"
# A MAC in any spelling, as SQL: the rule of chunker.normal_mac (lower case, without ':', '-', '.' and spaces).
_BARE_MAC = "regexp_replace(lower(btrim({})), '[-:. ]', '', 'g')"


@dataclass(frozen=True)
class Hit:
    """One search result."""

    mac_id: str
    text: str
    file_path: str | None
    start_line: int | None
    end_line: int | None
    category: str | None
    score: float


def search_vector(url: str, vector: np.ndarray, *, mac: str | None = None, k: int = DEFAULT_K,
                  exact_limit: int = EXACT_LIMIT) -> list[Hit]:
    """The ``k`` chunks nearest to ``vector`` (normalised), of device ``mac`` (any spelling) or of all devices."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
    columns = "mac_id, text, file_path, start_line, end_line, category, 1 - (embedding <=> %(q)s) AS score"
    params = {"q": np.asarray(vector, dtype=np.float32), "k": k}
    with postgres.read_only(url) as conn:
        postgres.register_vector(conn)
        if mac is None:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(40, k)),))
            rows = conn.execute(f"SELECT {columns} FROM memory_chunks WHERE embedding IS NOT NULL "
                                "ORDER BY embedding <=> %(q)s LIMIT %(k)s", params).fetchall()
        else:
            params["mac"] = chunker.normal_mac(mac)
            # MATERIALIZED keeps the planner from trading the mac_id filter for the approximate index.
            exact = (f"WITH device AS MATERIALIZED (SELECT * FROM memory_chunks WHERE mac_id = %(mac)s AND embedding IS NOT NULL) "
                     f"SELECT {columns} FROM device ORDER BY embedding <=> %(q)s, id LIMIT %(k)s")
            size = conn.execute("SELECT count(*) FROM memory_chunks WHERE mac_id = %(mac)s", params).fetchone()[0]
            if size <= exact_limit:
                rows = conn.execute(exact, params).fetchall()
            else:
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(100, k)),))
                # This branch exists to walk the HNSW index; without this the planner may still sort
                # the device's rows by distance, which is the exact path under another name.
                conn.execute("SELECT set_config('enable_sort', 'off', true)")
                rows = conn.execute(f"SELECT {columns} FROM memory_chunks WHERE mac_id = %(mac)s AND embedding IS NOT NULL "
                                    "ORDER BY embedding <=> %(q)s LIMIT %(k)s", params).fetchall()
                if len(rows) < min(k, size):
                    # The iterative scan stops at hnsw.max_scan_tuples; complete the answer exactly.
                    rows = conn.execute(exact, params).fetchall()
    return [Hit(*row[:6], score=float(row[6])) for row in rows]


def search(url: str, query: str, embedder, *, mac: str | None = None, k: int = DEFAULT_K,
           exact_limit: int = EXACT_LIMIT) -> list[Hit]:
    """The ``k`` chunks nearest to the text ``query``, embedded with ``embedder`` (an ``Embedder``)."""
    check_arguments(query, mac=mac, k=k)  # before the model loads
    vector = embedder.encode([query])[0]
    return search_vector(url, vector, mac=mac, k=k, exact_limit=exact_limit)


def check_arguments(query: str, *, mac: str | None = None, k: int = DEFAULT_K) -> str | None:
    """The normalised MAC (None for every device); ValueError for an empty query or a ``k`` out of range,
    :class:`~pipelines.chunker.ChunkerError` (a ValueError) for a MAC that is not one."""
    if not query.strip():
        raise ValueError("the search query is empty")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
    return chunker.normal_mac(mac) if mac is not None else None


@dataclass(frozen=True)
class Searchable:
    """What there is to search, for one device or all (``mac`` None), counted before anything is embedded."""

    mac: str | None
    chunks: int  # embedded rows of memory_chunks (for every device: 1 when there is any, not counted further)
    files: int  # device_memories rows (any spelling of the MAC)
    synced: int  # of those, synced in their current version (warehouse.memory_files)
    device_rows: int | None = None  # ai_device rows with this MAC; None for all devices

    @property
    def unknown_device(self) -> bool:
        """A device Cheeko has neither an ai_device row nor a memory file for: a wrong MAC, most likely."""
        return self.mac is not None and not self.chunks and not self.device_rows and not self.files

    def problem(self) -> str | None:
        """Why there is nothing to search, in one line that says what to do; None when there is something."""
        if self.chunks:
            return None
        who = f"device {self.mac}" if self.mac else "the fleet"
        if self.unknown_device:
            return f"Cheeko has no device {self.mac}: no ai_device row and no memory files (device_memories) have that MAC"
        if not self.files:
            return (f"device {self.mac} has an ai_device row but no memory files in device_memories: nothing to search"
                    if self.mac else "device_memories is empty: nothing to search")
        if self.synced < self.files:
            return (f"{who} has {self.files:,} memory file(s) in device_memories, {self.files - self.synced:,} not "
                    f"synced to memory_chunks yet: run the memory sync ({MEMORY_SYNC_COMMAND})")
        return (f"{who} has {self.files:,} memory file(s), all synced, and none holds text to search "
                "(empty files, or files the sync could not chunk: see the check every_memory_file_synced)")


def searchable(url: str, mac: str | None = None) -> Searchable:
    """Count what a search of device ``mac`` (normalised; None: every device) would find, without the model.

    The counts past ``chunks`` are only taken when there are no chunks (they scan device_memories).
    """
    with postgres.read_only(url) as conn:
        missing = [t for t in ("memory_chunks", "device_memories", "ai_device", "warehouse.memory_files")
                   if conn.execute("SELECT to_regclass(%s) IS NULL", (t,)).fetchone()[0]]
        needed = [t for t in ("memory_chunks", "device_memories") if t in missing]
        if needed:
            raise ValueError(f"Cheeko has no {' and no '.join(needed)} table: run `warehouse db upgrade`")
        params = {"mac": mac, "bare": mac.replace(":", "") if mac else None}
        if mac is None:
            chunks = conn.execute("SELECT count(*) FROM (SELECT 1 FROM memory_chunks WHERE embedding IS NOT NULL "
                                  "LIMIT 1) c").fetchone()[0]
        else:
            chunks = conn.execute("SELECT count(*) FROM memory_chunks WHERE mac_id = %(mac)s AND embedding IS NOT NULL",
                                  params).fetchone()[0]
        if chunks:
            return Searchable(mac, chunks, 0, 0)
        of_device = f"WHERE {_BARE_MAC.format('d.mac_id')} = %(bare)s" if mac else ""
        if "warehouse.memory_files" in missing:  # the pipeline's tables are not installed: nothing synced
            files, synced = conn.execute(f"SELECT count(*), 0 FROM device_memories d {of_device}", params).fetchone()
        else:
            files, synced = conn.execute(
                "SELECT count(*), count(f.memory_id) FILTER (WHERE f.source_xmin = d.xmin::text::bigint) "
                f"FROM device_memories d LEFT JOIN warehouse.memory_files f ON f.memory_id = d.id::text {of_device}",
                params).fetchone()
        device_rows = None
        if mac is not None and "ai_device" not in missing:
            device_rows = conn.execute(f"SELECT count(*) FROM ai_device WHERE {_BARE_MAC.format('mac_address')} = %(bare)s",
                                       params).fetchone()[0]
    return Searchable(mac, chunks, files, synced, device_rows)
