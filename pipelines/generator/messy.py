"""``--messy``: every fault that metrics.md names, injected into clean rows.

Each fault is counted in the returned dict, so data-quality tests can compare
what the warehouse counted with what was planted. Faults:

- ``mac_respelled``: MACs written ``AA-BB-CC-DD-EE-FF``, ``aabbccddeeff`` or in mixed case;
- ``mac_invalid``: MACs that cannot be normalised (wrong length, not hex);
- ``timezone_unknown``: profile time zones that are not IANA names;
- ``duplicate_<table>``: event rows repeating another row's natural key;
- ``future_<table>``: events dated a year after the data ends;
- ``token_total_mismatch``: ``total_tokens`` != input + output;
- ``session_total_mismatch``: game session totals that disagree with attempts;
- ``memory_<kind>``: empty, whitespace-only, huge, emoji/control-character
  and very-long-line memory files.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.randomness import uuids

US = 1_000_000
EVENT_MAC_COLUMNS = {
    "ai_agent_chat_history": "mac_address",
    "analytics_game_attempts": "mac_address",
    "analytics_game_sessions": "mac_address",
    "analytics_media_playback": "mac_address",
    "rfid_scan_log": "mac_address",
    "device_token_usage": "mac_address",
    "device_memories": "mac_id",
}
EVENT_TIME_COLUMNS = {
    "ai_agent_chat_history": "created_at",
    "analytics_game_attempts": "attempted_at",
    "analytics_media_playback": "occurred_at",
    "rfid_scan_log": "scanned_at",
}
DUPLICATED = ("analytics_game_attempts", "analytics_media_playback", "rfid_scan_log")
INVALID_MACS = ["zz:zz:zz:zz:zz:zz", "12:34:56", "not-a-mac", "24:0a:c4:12:34:56:78", ""]
FUTURE_DAYS = 400


def respell(mac: str, style: int) -> str:
    """The same MAC written another way (style 0, 1 or 2)."""
    if style == 0:
        return mac.upper().replace(":", "-")
    if style == 1:
        return mac.replace(":", "")
    return "".join(c.upper() if i % 2 else c for i, c in enumerate(mac))


def _rows(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """About ``share`` of ``n`` rows, and always at least one, so that even a
    small fleet carries every kind of fault."""
    chosen = rng.random(n) < share
    if n and not chosen.any():
        chosen[int(rng.integers(n))] = True
    return chosen


def inject(rng: np.random.Generator, tables: dict[str, pl.DataFrame], end: dt.date, faults: dict[str, int]) -> None:
    """Damage ``tables`` in place (event and profile tables present in it)."""
    for table, column in EVENT_MAC_COLUMNS.items():
        if table not in tables or tables[table].height == 0:
            continue
        frame = tables[table]
        macs = frame[column].to_list()
        respelled = _rows(rng, len(macs), 0.03)
        styles = rng.integers(0, 3, size=len(macs))
        invalid = _rows(rng, len(macs), 0.002) & ~respelled
        if table in ("device_token_usage", "device_memories"):
            invalid[:] = False  # unique keys include the MAC; respelling is enough there
        for i in np.flatnonzero(respelled):
            macs[i] = respell(macs[i], int(styles[i]))
        for i in np.flatnonzero(invalid):
            macs[i] = INVALID_MACS[int(rng.integers(len(INVALID_MACS)))]
        tables[table] = frame.with_columns(pl.Series(column, macs, dtype=pl.String))
        faults["mac_respelled"] = faults.get("mac_respelled", 0) + int(respelled.sum())
        faults["mac_invalid"] = faults.get("mac_invalid", 0) + int(invalid.sum())

    for table in ("parent_profile", "kid_profile"):
        if table in tables and tables[table].height:
            frame = tables[table]
            bad = _rows(rng, frame.height, 0.04)
            zones = [vocab.BAD_TIMEZONES[int(rng.integers(len(vocab.BAD_TIMEZONES)))] if b else z
                     for b, z in zip(bad, frame["timezone"].to_list())]
            tables[table] = frame.with_columns(pl.Series("timezone", zones, dtype=pl.String))
            faults["timezone_unknown"] = faults.get("timezone_unknown", 0) + int(bad.sum())

    for table in DUPLICATED:
        if table in tables and tables[table].height:
            frame = tables[table]
            dupes = frame.filter(pl.Series(_rows(rng, frame.height, 0.01)))
            tables[table] = pl.concat([frame, dupes])
            faults[f"duplicate_{table}"] = faults.get(f"duplicate_{table}", 0) + dupes.height
    if "ai_agent_chat_history" in tables and tables["ai_agent_chat_history"].height:
        frame = tables["ai_agent_chat_history"]
        dupes = frame.filter(pl.Series(_rows(rng, frame.height, 0.005)))
        dupes = dupes.with_columns(pl.Series("id", uuids(rng, dupes.height), dtype=pl.String))  # same turn, new row id
        tables["ai_agent_chat_history"] = pl.concat([frame, dupes])
        faults["duplicate_ai_agent_chat_history"] = faults.get("duplicate_ai_agent_chat_history", 0) + dupes.height

    shift = pl.duration(days=FUTURE_DAYS)
    for table, column in EVENT_TIME_COLUMNS.items():
        if table in tables and tables[table].height:
            frame = tables[table]
            future = pl.Series(_rows(rng, frame.height, 0.001))
            tables[table] = frame.with_columns(pl.when(future).then(pl.col(column) + shift).otherwise(pl.col(column)).alias(column))
            faults[f"future_{table}"] = faults.get(f"future_{table}", 0) + int(future.sum())

    if "device_token_usage" in tables and tables["device_token_usage"].height:
        frame = tables["device_token_usage"]
        off = pl.Series(_rows(rng, frame.height, 0.02))
        extra = pl.Series(rng.integers(1, 500, size=frame.height))
        tables["device_token_usage"] = frame.with_columns(
            pl.when(off).then(pl.col("total_tokens") + extra).otherwise(pl.col("total_tokens")).alias("total_tokens"))
        faults["token_total_mismatch"] = faults.get("token_total_mismatch", 0) + int(off.sum())

    if "analytics_game_sessions" in tables and tables["analytics_game_sessions"].height:
        frame = tables["analytics_game_sessions"]
        off = pl.Series(_rows(rng, frame.height, 0.03))
        tables["analytics_game_sessions"] = frame.with_columns(
            pl.when(off).then(pl.col("total_questions") + 2).otherwise(pl.col("total_questions")).alias("total_questions"),
            pl.when(off).then(pl.col("correct_answers") + 1).otherwise(pl.col("correct_answers")).alias("correct_answers"))
        faults["session_total_mismatch"] = faults.get("session_total_mismatch", 0) + int(off.sum())


def bad_memory_files(rng: np.random.Generator, macs: list[str], end: dt.date) -> tuple[pl.DataFrame, dict[str, int]]:
    """Memory files that a chunker must survive, one kind per device in ``macs``."""
    emoji = "🦖🚀🌈🐼✨"
    kinds = {
        "empty": "",
        "whitespace": "   \n\t\n  \n",
        "huge": "\n".join(f"## Note {i}\n" + "Cheeko remembered a long story about the ocean. " * 20 for i in range(3000)),
        "emoji_control": f"# {emoji}\n\x01\x02 bell\x07 and escape\x1b[31m\n" + (emoji * 50 + "\x0b\x0c\n") * 20,
        "long_line": "x" * 150_000 + "\nTail line after a very long one.\n",
    }
    rows = []
    ids = uuids(rng, len(kinds))
    for (kind, text), file_id, mac in zip(kinds.items(), ids, macs):
        rows.append((file_id, mac, "scratch", end, text, (end - dt.date(1970, 1, 1)).days * 86400 * US + 20 * 3600 * US))
    schema = {"id": pl.String, "mac_id": pl.String, "file_type": pl.String, "file_date": pl.Date, "content": pl.String, "updated_at": pl.Int64}
    frame = pl.DataFrame(rows, schema=schema, orient="row").with_columns(pl.col("updated_at").cast(pl.Datetime("us", "UTC")))
    return frame, {f"memory_{kind}": 1 for kind in list(kinds)[: len(rows)]}
