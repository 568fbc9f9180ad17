"""Semantic search over ``memory_chunks``: the nearest chunks to a question, overall or per device.

Per device, a filtered HNSW scan can come back short: the index finds the
nearest chunks of *all* devices and the filter then drops most of them. So a
device with up to ``EXACT_LIMIT`` chunks is searched exactly (its rows by the
``mac_id`` index, then sorted by distance: a few milliseconds for thousands
of rows, and always complete), and a larger one through the HNSW index with
pgvector 0.8's iterative scan, which keeps scanning until ``k`` rows pass
the filter. Scores are cosine similarities (1 is identical).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines import chunker, postgres

EXACT_LIMIT = 20_000
DEFAULT_K = 5
MAX_K = 1000


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
    if not query.strip():
        raise ValueError("the search query is empty")
    vector = embedder.encode([query])[0]
    return search_vector(url, vector, mac=mac, k=k, exact_limit=exact_limit)
