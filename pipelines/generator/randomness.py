"""Deterministic randomness for the generator.

Every random draw comes from a numpy ``Generator`` seeded by the run's seed
plus a *stream* name and, for daily events, the day. So the same parameters
always give the same rows, and an append draws its days from streams that the
original run never touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
import zoneinfo

import numpy as np


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """An independent generator for ``(seed, name, *keys)``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little"), *keys])


def day_stream(seed: int, name: str, day: dt.date) -> np.random.Generator:
    """The generator for one stream on one day."""
    return stream(seed, name, day.toordinal())


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    return np.array([str(uuid.UUID(bytes=row.tobytes(), version=4)) for row in raw], dtype=object)


def hex_ids(rng: np.random.Generator, n: int, prefix: str, length: int = 16) -> np.ndarray:
    """``n`` random identifiers like ``prefix_9f2c...`` (session ids, tokens)."""
    raw = rng.integers(0, 256, size=(n, length // 2), dtype=np.uint8)
    return np.array([prefix + row.tobytes().hex() for row in raw], dtype=object)


def pick(rng: np.random.Generator, values: list, n: int, weights: list[float] | None = None) -> np.ndarray:
    """``n`` draws from ``values`` (with optional weights), as an object array."""
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    idx = rng.choice(len(values), size=n, p=p)
    return np.asarray(values, dtype=object)[idx]


def utc_offsets(tz_names: list[str], days: list[dt.date]) -> np.ndarray:
    """Seconds east of UTC at local noon, shape (len(tz_names), len(days)).

    Offsets change across DST, so they are taken per day, not per zone.
    """
    out = np.zeros((len(tz_names), len(days)), dtype=np.int64)
    for i, name in enumerate(tz_names):
        zone = zoneinfo.ZoneInfo(name)
        for j, day in enumerate(days):
            noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)
            out[i, j] = int(noon.utcoffset().total_seconds())
    return out


def epoch_seconds(day: dt.date) -> int:
    """Seconds from the Unix epoch to midnight UTC of ``day``."""
    return (day - dt.date(1970, 1, 1)).days * 86400


def local_seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Times of day a child uses the device: before school, after school,
    bedtime, and a few late nights (which cross the UTC date in most zones)."""
    mode = rng.choice(4, size=n, p=[0.2, 0.52, 0.25, 0.03])
    centre = np.array([7.5, 16.5, 19.8, 23.0])[mode]
    spread = np.array([0.6, 1.3, 0.7, 0.5])[mode]
    hours = np.clip(rng.normal(centre, spread), 5.5, 23.99)
    return (hours * 3600).astype(np.int64)
