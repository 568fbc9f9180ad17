"""``--messy``: every fault that metrics.md names, injected into clean rows.

Each row (for mode sessions: each session together with its attempts) gets at
most one fault, so faults never mask each other and every count in the returned
dict is exactly what lands in the database. The app's own tables
(``analytics_streaks``, ``analytics_user_progress``, ``kid_learning_progress``)
are computed before any fault and never damaged here. Faults:

- ``mac_respelled``: MACs written ``AA-BB-CC-DD-EE-FF``, ``aabbccddeeff`` or in mixed case
  (counted per row: a session and each of its attempts);
- ``mac_invalid``: MACs that cannot be normalised (wrong length, not hex), counted likewise;
- ``timezone_unknown``: profile time zones that are not IANA names;
- ``duplicate_<table>``: event rows repeating another row's natural key with a new row id
  (attempts: session_id, attempt_number, attempt_time, question_text; playback: MAC,
  content_id, event_type, created_at; scans: rfid_uid, MAC, created_at; chat turns);
- ``future_<table>``: events dated a year after the data ends (a session's started_at,
  ended_at, created_at and updated_at together with its attempts' attempt_time,
  answered_at and created_at; playback and scans by created_at; chat turns);
- ``token_total_mismatch``: ``total_tokens`` != input + output;
- ``session_duration_mismatch``: ended sessions whose stored ``duration_seconds``
  differs from ``ended_at - started_at`` by 5 to 600 seconds;
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
FUTURE = pl.duration(days=400)
INVALID_MACS = ["zz:zz:zz:zz:zz:zz", "12:34:56", "not-a-mac", "24:0a:c4:12:34:56:78", ""]
NONE, RESPELL, INVALID, DUPLICATE, FUTURE_SLOT, TOTALS, DURATION = range(7)
# Per table: (MAC column, event-time column or None, faults it can carry, with their shares).
ROW_TABLES = {
    "ai_agent_chat_history": ("mac_address", "created_at", {RESPELL: 0.03, INVALID: 0.002, DUPLICATE: 0.005, FUTURE_SLOT: 0.001}),
    "analytics_media_playback": ("mac_address", "created_at", {RESPELL: 0.03, INVALID: 0.002, DUPLICATE: 0.01, FUTURE_SLOT: 0.001}),
    "rfid_scan_log": ("mac_address", "created_at", {RESPELL: 0.03, INVALID: 0.002, DUPLICATE: 0.01, FUTURE_SLOT: 0.001}),
    # Unique keys include the MAC here, so only a respelling (a new spelling of the same device).
    "device_token_usage": ("mac_address", None, {RESPELL: 0.03, TOTALS: 0.02}),
    "device_memories": ("mac_id", None, {RESPELL: 0.03}),
}
# Mode sessions: a duplicate repeats one of a game's attempts; a duration mismatch needs an ended session.
SESSION_FAULTS = {RESPELL: 0.03, INVALID: 0.003, DUPLICATE: 0.03, FUTURE_SLOT: 0.002, DURATION: 0.03}
OTHER_SESSION_FAULTS = {k: v for k, v in SESSION_FAULTS.items() if k != DUPLICATE}  # modes without attempts
SESSION_TIMES = ("started_at", "ended_at", "created_at", "updated_at")
ATTEMPT_TIMES = ("attempt_time", "answered_at", "created_at")


def respell(mac: str, style: int) -> str:
    """The same MAC written another way (style 0, 1 or 2); never the canonical form."""
    if style == 1:
        return mac.replace(":", "")
    if style == 2:
        mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(mac))
        if mixed != mac:
            return mixed
    return mac.upper().replace(":", "-")


def _slots(rng: np.random.Generator, n: int, shares: dict[int, float], eligible: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """One fault (or NONE) per row, disjoint; a fault only on rows ``eligible`` for it (default: all);
    each fault lands on at least one row when there are enough rows."""
    kinds = [NONE, *shares]
    p = np.array([1 - sum(shares.values()), *shares.values()])
    slots = np.asarray(rng.choice(kinds, size=n, p=p)) if n else np.zeros(0, dtype=np.int64)
    eligible = eligible or {}
    for kind, ok in eligible.items():
        slots[(slots == kind) & ~ok] = NONE
    for kind in shares:
        free = np.flatnonzero((slots == NONE) & eligible.get(kind, True))
        if not (slots == kind).any() and len(free):
            slots[free[int(rng.integers(len(free)))]] = kind
    return slots


def _count(faults: dict[str, int], name: str, n: int) -> None:
    faults[name] = faults.get(name, 0) + int(n)


def _bad_macs(rng: np.random.Generator, macs: list[str], slots: np.ndarray) -> list[str]:
    styles = rng.integers(0, 3, size=len(macs))
    picks = rng.integers(0, len(INVALID_MACS), size=len(macs))
    return [respell(m, int(st)) if s == RESPELL else INVALID_MACS[int(pk)] if s == INVALID else m
            for m, s, st, pk in zip(macs, slots, styles, picks)]


def _rows(tables: dict[str, pl.DataFrame], rng: np.random.Generator, faults: dict[str, int]) -> None:
    for table, (mac_col, time_col, shares) in ROW_TABLES.items():
        frame = tables.get(table)
        if frame is None or frame.height == 0:
            continue
        slots = _slots(rng, frame.height, shares)
        frame = frame.with_columns(pl.Series(mac_col, _bad_macs(rng, frame[mac_col].to_list(), slots), dtype=pl.String))
        mask = pl.Series(slots)
        if time_col:
            frame = frame.with_columns(pl.when(mask == FUTURE_SLOT).then(pl.col(time_col) + FUTURE).otherwise(pl.col(time_col)))
        if TOTALS in shares:
            extra = pl.Series(rng.integers(1, 500, size=frame.height))
            frame = frame.with_columns(pl.when(mask == TOTALS).then(pl.col("total_tokens") + extra).otherwise(pl.col("total_tokens")))
        dupes = frame.filter(mask == DUPLICATE)
        if "id" in dupes.columns and dupes.schema["id"] == pl.String:
            dupes = dupes.with_columns(pl.Series("id", uuids(rng, dupes.height), dtype=pl.String))  # same event, new row id
        tables[table] = pl.concat([frame, dupes])
        _count(faults, "mac_respelled", (slots == RESPELL).sum())
        _count(faults, "mac_invalid", (slots == INVALID).sum())
        if DUPLICATE in shares:
            _count(faults, f"duplicate_{table}", dupes.height)
        if FUTURE_SLOT in shares:
            _count(faults, f"future_{table}", (slots == FUTURE_SLOT).sum())
        if TOTALS in shares:
            _count(faults, "token_total_mismatch", (slots == TOTALS).sum())


def _sessions(tables: dict[str, pl.DataFrame], rng: np.random.Generator, faults: dict[str, int]) -> None:
    """Faults per mode session, applied to the session and its attempts together."""
    sessions, attempts = tables.get("analytics_game_sessions"), tables.get("analytics_game_attempts")
    if sessions is None or attempts is None or sessions.height == 0:
        return
    # Games (sessions with attempts) and the other modes draw their faults apart, so each fault
    # reaches both kinds of session; a duplicate needs a timed attempt, a duration an ended session.
    ids = sessions["session_id"].to_list()
    is_game = sessions["session_id"].is_in(attempts["session_id"].implode()).to_numpy()
    timed = sessions["session_id"].is_in(attempts.filter(pl.col("attempt_time").is_not_null())["session_id"].implode()).to_numpy()
    ended = sessions["ended_at"].is_not_null().to_numpy()
    slots = np.zeros(sessions.height, dtype=np.int64)
    for group, shares in ((is_game, SESSION_FAULTS), (~is_game, OTHER_SESSION_FAULTS)):
        slots[group] = _slots(rng, int(group.sum()), shares, {DURATION: ended[group], DUPLICATE: timed[group]})
    macs = _bad_macs(rng, sessions["mac_address"].to_list(), slots)
    # 5 to 600 seconds off, either way (never below zero).
    off = rng.integers(5, 601, size=sessions.height) * np.where(rng.random(sessions.height) < 0.5, -1, 1)
    fault = pl.DataFrame({"session_id": ids, "_slot": slots, "_mac": macs, "_off": off})
    sessions = sessions.join(fault, on="session_id", how="left", maintain_order="left")
    attempts = attempts.join(fault, on="session_id", how="left", maintain_order="left")
    bad_mac = pl.col("_slot").is_in([RESPELL, INVALID])
    future = pl.col("_slot") == FUTURE_SLOT
    true_seconds = (pl.col("ended_at") - pl.col("started_at")).dt.total_seconds()
    wrong_seconds = pl.when(true_seconds + pl.col("_off") >= 0).then(true_seconds + pl.col("_off")).otherwise(true_seconds - pl.col("_off"))
    sessions = sessions.with_columns(
        pl.when(bad_mac).then(pl.col("_mac")).otherwise(pl.col("mac_address")).alias("mac_address"),
        *[pl.when(future).then(pl.col(c) + FUTURE).otherwise(pl.col(c)).alias(c) for c in SESSION_TIMES],
        pl.when(pl.col("_slot") == DURATION).then(wrong_seconds).otherwise(pl.col("duration_seconds"))
        .cast(pl.Int64).alias("duration_seconds"),
    )
    attempts = attempts.with_columns(
        pl.when(bad_mac).then(pl.col("_mac")).otherwise(pl.col("mac_address")).alias("mac_address"),
        *[pl.when(future).then(pl.col(c) + FUTURE).otherwise(pl.col(c)).alias(c) for c in ATTEMPT_TIMES],
    )
    # One timed attempt of each "duplicate" session is recorded twice (a new row id: the table's identity).
    dupes = (attempts.filter((pl.col("_slot") == DUPLICATE) & pl.col("attempt_time").is_not_null())
             .unique("session_id", keep="first", maintain_order=True))
    tables["analytics_game_sessions"] = sessions.drop("_slot", "_mac", "_off")
    tables["analytics_game_attempts"] = pl.concat([attempts, dupes]).drop("_slot", "_mac", "_off")
    _count(faults, "mac_respelled", (slots == RESPELL).sum() + attempts.filter(pl.col("_slot") == RESPELL).height)
    _count(faults, "mac_invalid", (slots == INVALID).sum() + attempts.filter(pl.col("_slot") == INVALID).height)
    _count(faults, "duplicate_analytics_game_attempts", dupes.height)
    _count(faults, "future_analytics_game_sessions", (slots == FUTURE_SLOT).sum())
    _count(faults, "future_analytics_game_attempts", attempts.filter(future).height)
    _count(faults, "session_duration_mismatch", (slots == DURATION).sum())


def _timezones(tables: dict[str, pl.DataFrame], rng: np.random.Generator, faults: dict[str, int]) -> None:
    for table in ("parent_profile", "kid_profile"):
        frame = tables.get(table)
        if frame is None or frame.height == 0:
            continue
        bad = _slots(rng, frame.height, {RESPELL: 0.04}) == RESPELL
        picks = rng.integers(0, len(vocab.BAD_TIMEZONES), size=frame.height)
        zones = [vocab.BAD_TIMEZONES[int(p)] if b else z for b, p, z in zip(bad, picks, frame["timezone"].to_list())]
        tables[table] = frame.with_columns(pl.Series("timezone", zones, dtype=pl.String))
        _count(faults, "timezone_unknown", bad.sum())


def inject(rng: np.random.Generator, tables: dict[str, pl.DataFrame], faults: dict[str, int]) -> None:
    """Damage the event and profile tables present in ``tables``, in place; add counts to ``faults``."""
    _rows(tables, rng, faults)
    _sessions(tables, rng, faults)
    _timezones(tables, rng, faults)


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
