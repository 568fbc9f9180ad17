"""``--messy``: every fault that metrics.md names, injected into clean rows.

Each row (for mode sessions: each session together with its attempts) gets at
most one fault, so faults never mask each other and every count in the returned
dict is exactly what lands in the database. The app's own tables
(``analytics_streaks``, ``analytics_user_progress``, ``kid_learning_progress``)
are computed before any fault and never damaged here; they, the memory files
and the event rows keep each device's original spelling. Faults:

- ``mac_respelled``: MACs written ``AA-BB-CC-DD-EE-FF``, ``aabbccddeeff`` or in mixed case
  (counted per row: a session and each of its attempts);
- ``mac_whitespace``: MACs with surrounding spaces, tabs or a newline, in event rows and in
  ``ai_device`` (counted likewise); they normalise to the device;
- ``mac_invalid``: event-row MACs that cannot be normalised (wrong length, not hex), counted likewise;
- ``device_respelled``: a second ``ai_device`` row for an existing device, its MAC spelled
  another way, created and updated later than the original and pointing at another family's
  kid, owner and agent (one device: new on the original's ``create_date``, kid, owner and
  agent from the later row);
- ``device_mac_invalid``: extra ``ai_device`` rows, created in the data's window, whose MAC
  cannot be normalised (no device at all);
- ``timezone_unknown``: profile time zones that are not IANA names;
- ``timezone_blank``: profile time zones ``''`` or ``'   '`` (unset: NULL is common in clean
  data too); a blank kid zone only where the kid has a device and its owner a valid zone,
  which applies instead;
- ``timezone_padded``: profile time zones that are IANA names with surrounding whitespace
  (set: trimmed, they are that zone);
- ``duplicate_<table>``: event rows repeating another row's natural key with a new row id
  (attempts: session_id, attempt_number, attempt_time, question_text; playback: MAC,
  content_id, event_type, created_at; scans: rfid_uid, MAC, created_at; chat turns);
- ``future_<table>``: events dated a year after the data ends (a session's started_at,
  ended_at, created_at and updated_at together with its attempts' attempt_time,
  answered_at and created_at; playback and scans by created_at; chat turns);
- ``token_total_mismatch``: ``total_tokens`` != input + output;
- ``token_total_null``: ``total_tokens`` NULL (reported nothing: never a mismatch);
- ``token_null_parts``: ``input_tokens`` NULL (total = output), ``output_tokens`` NULL
  (total = input) or both NULL (total NULL), in turn; never a mismatch either;
- ``session_duration_mismatch``: ended sessions whose stored ``duration_seconds``
  differs from ``ended_at - started_at`` by 5 to 600 seconds (ended sessions that stored
  no duration at all come with clean data: an older app);
- ``message_cost_null``: Cognova assistant messages whose ``cost_usd`` is NULL (user messages
  never have one); every other UTC day keeps at least one priced message, except, in a
  fresh dataset, one whole day (``message_cost_null_day``) with no priced message at all;
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
(NONE, RESPELL, INVALID, DUPLICATE, FUTURE_SLOT, TOTALS, DURATION, WHITESPACE, TOTAL_NULL, NULL_PARTS, UNKNOWN_ZONE,
 BLANK_ZONE, PADDED_ZONE, DEVICE_RESPELL, DEVICE_INVALID, COST_NULL) = range(16)
# Surrounding whitespace a MAC picks up (before, after): at most 3 characters, as ai_device and the chat history
# hold varchar(20) and a MAC is 17.
PADS = ((" ", ""), ("", "\t"), ("\t", "\n"), ("  ", " "), ("", "\n"), ("\n", ""))
BLANK_ZONES = ("", "   ")
VALID_ZONES = frozenset(name for name, _ in vocab.TIMEZONES)
# Per table: (MAC column, event-time column or None, faults it can carry, with their shares).
ROW_TABLES = {
    "ai_agent_chat_history": ("mac_address", "created_at", {RESPELL: 0.03, WHITESPACE: 0.01, INVALID: 0.002,
                                                             DUPLICATE: 0.005, FUTURE_SLOT: 0.001}),
    "analytics_media_playback": ("mac_address", "created_at", {RESPELL: 0.03, WHITESPACE: 0.01, INVALID: 0.002,
                                                                DUPLICATE: 0.01, FUTURE_SLOT: 0.001}),
    "rfid_scan_log": ("mac_address", "created_at", {RESPELL: 0.03, WHITESPACE: 0.01, INVALID: 0.002, DUPLICATE: 0.01,
                                                     FUTURE_SLOT: 0.001}),
    # Unique keys include the MAC here, so only a new spelling of the same device (respelled or padded).
    "device_token_usage": ("mac_address", None, {RESPELL: 0.03, WHITESPACE: 0.01, TOTALS: 0.02, TOTAL_NULL: 0.01,
                                                 NULL_PARTS: 0.015}),
    "device_memories": ("mac_id", None, {RESPELL: 0.03}),
}
# Mode sessions: a duplicate repeats one of a game's attempts; a duration mismatch needs an ended session.
SESSION_FAULTS = {RESPELL: 0.03, WHITESPACE: 0.015, INVALID: 0.003, DUPLICATE: 0.03, FUTURE_SLOT: 0.002, DURATION: 0.03}
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


def pad(mac: str, style: int) -> str:
    """The same MAC with surrounding whitespace (style 0 to 5): spaces, a tab, a newline."""
    before, after = PADS[style % len(PADS)]
    return f"{before}{mac}{after}"


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
    pads = rng.integers(0, len(PADS), size=len(macs))
    return [respell(m, int(st)) if s == RESPELL else INVALID_MACS[int(pk)] if s == INVALID
            else pad(m, int(pd)) if s == WHITESPACE else m
            for m, s, st, pk, pd in zip(macs, slots, styles, picks, pads)]


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
        if NULL_PARTS in shares:
            frame = _null_token_parts(frame, slots)
        dupes = frame.filter(mask == DUPLICATE)
        if "id" in dupes.columns and dupes.schema["id"] == pl.String:
            dupes = dupes.with_columns(pl.Series("id", uuids(rng, dupes.height), dtype=pl.String))  # same event, new row id
        tables[table] = pl.concat([frame, dupes])
        _count(faults, "mac_respelled", (slots == RESPELL).sum())
        _count(faults, "mac_whitespace", (slots == WHITESPACE).sum())
        _count(faults, "mac_invalid", (slots == INVALID).sum())
        if DUPLICATE in shares:
            _count(faults, f"duplicate_{table}", dupes.height)
        if FUTURE_SLOT in shares:
            _count(faults, f"future_{table}", (slots == FUTURE_SLOT).sum())
        if TOTALS in shares:
            _count(faults, "token_total_mismatch", (slots == TOTALS).sum())
        if TOTAL_NULL in shares:
            _count(faults, "token_total_null", (slots == TOTAL_NULL).sum())
        if NULL_PARTS in shares:
            _count(faults, "token_null_parts", (slots == NULL_PARTS).sum())


def _null_token_parts(frame: pl.DataFrame, slots: np.ndarray) -> pl.DataFrame:
    """``token_total_null`` and ``token_null_parts`` rows of device_token_usage. A row missing a part keeps a total
    that agrees with what it reported (a null part counting 0), so neither fault is a ``token_total_mismatch``."""
    # The rows missing parts take turns: input missing, output missing, both missing (total null too).
    variant = np.full(frame.height, -1)
    parts = slots == NULL_PARTS
    variant[parts] = np.arange(int(parts.sum())) % 3
    no_input, no_output = pl.Series(parts & (variant != 1)), pl.Series(parts & (variant != 0))
    return frame.with_columns(
        pl.when(no_input).then(None).otherwise(pl.col("input_tokens")).alias("input_tokens"),
        pl.when(no_output).then(None).otherwise(pl.col("output_tokens")).alias("output_tokens"),
        pl.when(pl.Series(slots == TOTAL_NULL) | (no_input & no_output)).then(None)
        .when(no_input).then(pl.col("output_tokens"))
        .when(no_output).then(pl.col("input_tokens"))
        .otherwise(pl.col("total_tokens")).alias("total_tokens"),
    )


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
    bad_mac = pl.col("_slot").is_in([RESPELL, INVALID, WHITESPACE])
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
    _count(faults, "mac_whitespace", (slots == WHITESPACE).sum() + attempts.filter(pl.col("_slot") == WHITESPACE).height)
    _count(faults, "mac_invalid", (slots == INVALID).sum() + attempts.filter(pl.col("_slot") == INVALID).height)
    _count(faults, "duplicate_analytics_game_attempts", dupes.height)
    _count(faults, "future_analytics_game_sessions", (slots == FUTURE_SLOT).sum())
    _count(faults, "future_analytics_game_attempts", attempts.filter(future).height)
    _count(faults, "session_duration_mismatch", (slots == DURATION).sum())


def _zones(rng: np.random.Generator, zones: list[str | None], slots: np.ndarray) -> list[str | None]:
    picks = rng.integers(0, len(vocab.BAD_TIMEZONES), size=len(zones))
    blanks = rng.integers(0, len(BLANK_ZONES), size=len(zones))
    pads = rng.integers(0, len(PADS), size=len(zones))
    return [vocab.BAD_TIMEZONES[int(p)] if s == UNKNOWN_ZONE else BLANK_ZONES[int(b)] if s == BLANK_ZONE
            else pad(z, int(d)) if s == PADDED_ZONE else z
            for s, p, b, d, z in zip(slots, picks, blanks, pads, zones)]


def _timezones(tables: dict[str, pl.DataFrame], rng: np.random.Generator, faults: dict[str, int]) -> None:
    """Unknown, blank and padded zones on parent profiles, then on kid profiles."""
    parent_zone: dict[int, str | None] = {}
    parents = tables.get("parent_profile")
    if parents is not None and parents.height:
        zones = parents["timezone"].to_list()
        slots = _slots(rng, parents.height, {UNKNOWN_ZONE: 0.04, BLANK_ZONE: 0.03, PADDED_ZONE: 0.03},
                       {PADDED_ZONE: np.array([z is not None for z in zones], dtype=bool)})
        zones = _zones(rng, zones, slots)
        tables["parent_profile"] = parents.with_columns(pl.Series("timezone", zones, dtype=pl.String))
        parent_zone = dict(zip(parents["user_id"].to_list(), zones))
        _count(faults, "timezone_unknown", (slots == UNKNOWN_ZONE).sum())
        _count(faults, "timezone_blank", (slots == BLANK_ZONE).sum())
        _count(faults, "timezone_padded", (slots == PADDED_ZONE).sum())
    kids = tables.get("kid_profile")
    if kids is not None and kids.height:
        devices = tables.get("ai_device")
        with_device = set() if devices is None else set(devices["kid_id"].drop_nulls().to_list())
        # A blank kid zone is a fault worth planting where it matters: the kid has a device and its owner a valid
        # zone, which applies instead of the kid's (and instead of UTC, were the blank taken for a name).
        blank_ok = np.array([k in with_device and parent_zone.get(u) in VALID_ZONES
                             for k, u in zip(kids["id"].to_list(), kids["user_id"].to_list())], dtype=bool)
        zones = kids["timezone"].to_list()
        slots = _slots(rng, kids.height, {UNKNOWN_ZONE: 0.04, BLANK_ZONE: 0.06, PADDED_ZONE: 0.04},
                       {BLANK_ZONE: blank_ok, PADDED_ZONE: np.array([z is not None for z in zones], dtype=bool)})
        zones = _zones(rng, zones, slots)
        tables["kid_profile"] = kids.with_columns(pl.Series("timezone", zones, dtype=pl.String))
        _count(faults, "timezone_unknown", (slots == UNKNOWN_ZONE).sum())
        _count(faults, "timezone_blank", (slots == BLANK_ZONE).sum())
        _count(faults, "timezone_padded", (slots == PADDED_ZONE).sum())


def _devices(tables: dict[str, pl.DataFrame], rng: np.random.Generator, faults: dict[str, int],
             window: tuple[int, int]) -> None:
    """``ai_device`` faults: padded MACs, second rows of a device under another spelling, rows with invalid MACs.

    ``window`` is (first, last) epoch second of the rows being made: the new rows are created inside it.
    """
    frame = tables.get("ai_device")
    if frame is None or frame.height == 0:
        return
    first, last = window
    n = frame.height
    macs = frame["mac_address"].to_list()
    owners = frame["user_id"].to_numpy()
    kids = frame["kid_id"].to_list()
    has_kid = np.array([k is not None for k in kids], dtype=bool)
    created = frame["create_date"].dt.epoch("s").to_numpy()
    updated = frame["update_date"].dt.epoch("s").to_numpy()
    # A row made later needs room between the original's creation (and last update) and the window's end, an hour
    # either side.
    base = np.maximum(np.maximum(created, updated), first)
    room = base + 3600 < last - 3600
    # A re-registration moves the device to another family: a device with a kid and another owner lends its own.
    donors = [np.flatnonzero(has_kid & (owners != o)) for o in owners]
    has_donor = np.array([len(d) > 0 for d in donors], dtype=bool)
    slots = _slots(rng, n, {WHITESPACE: 0.04, DEVICE_RESPELL: 0.05, DEVICE_INVALID: 0.03},
                   {DEVICE_RESPELL: room & has_donor, DEVICE_INVALID: room})
    pads = rng.integers(0, len(PADS), size=n)
    frame = frame.with_columns(pl.Series("mac_address", [pad(m, int(p)) if s == WHITESPACE else m
                                                         for m, s, p in zip(macs, slots, pads)], dtype=pl.String))

    def later(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(create, update) epoch seconds for new rows beside ``rows``: after the original was created and last
        updated, inside the window."""
        lo = base[rows] + 3600
        made = lo + (rng.random(len(rows)) * (last - 3600 - lo)).astype(np.int64)
        return made, np.minimum(made + rng.integers(60, 3600, size=len(rows)), last - 1)

    def stamp(seconds: np.ndarray) -> pl.Series:
        return pl.Series(np.asarray(seconds, dtype=np.int64) * US).cast(pl.Datetime("us", "UTC"))

    extra = []
    again = np.flatnonzero(slots == DEVICE_RESPELL)
    if len(again):
        lent = np.array([int(donors[i][int(rng.integers(len(donors[i])))]) for i in again])
        made, touched = later(again)
        styles = rng.integers(0, 3, size=len(again))
        extra.append(frame[again.tolist()].with_columns(
            pl.Series("id", uuids(rng, len(again)), dtype=pl.String),
            pl.Series("mac_address", [respell(macs[i], int(st)) for i, st in zip(again, styles)], dtype=pl.String),
            pl.Series("user_id", owners[lent], dtype=frame.schema["user_id"]),
            pl.Series("kid_id", [kids[j] for j in lent], dtype=frame.schema["kid_id"]),
            pl.Series("agent_id", frame["agent_id"].gather(lent)),
            pl.Series("alias", frame["alias"].gather(lent)),
            pl.Series("creator", owners[lent], dtype=frame.schema["creator"]),
            pl.Series("updater", owners[lent], dtype=frame.schema["updater"]),
            stamp(made).alias("create_date"), stamp(touched).alias("update_date"),
            stamp(touched).alias("last_connected_at"),
        ))
    junk = np.flatnonzero(slots == DEVICE_INVALID)
    if len(junk):
        made, touched = later(junk)
        spelled, taken = [], set(macs)
        for k, i in enumerate(junk):
            # Too short (five octets), too long (seven) or not hex: each from one device's MAC, so all distinct.
            options = [macs[i][:14], macs[i] + ":ff", "zz" + macs[i][2:]]
            mac = next(m for m in options[k % 3:] + options[: k % 3] if m not in taken)
            taken.add(mac)
            spelled.append(mac)
        extra.append(frame[junk.tolist()].with_columns(
            pl.Series("id", uuids(rng, len(junk)), dtype=pl.String),
            pl.Series("mac_address", spelled, dtype=pl.String),
            pl.Series("agent_id", [None] * len(junk), dtype=frame.schema["agent_id"]),
            pl.Series("alias", ["Cheeko (setup failed)"] * len(junk), dtype=frame.schema["alias"]),
            stamp(made).alias("create_date"), stamp(touched).alias("update_date"),
            stamp(touched).alias("last_connected_at"),
        ))
    tables["ai_device"] = pl.concat([frame, *extra])
    _count(faults, "mac_whitespace", (slots == WHITESPACE).sum())
    _count(faults, "device_respelled", len(again))
    _count(faults, "device_mac_invalid", len(junk))


def inject(rng: np.random.Generator, tables: dict[str, pl.DataFrame], faults: dict[str, int], *,
           window: tuple[int, int]) -> None:
    """Damage the Cheeko event, device and profile tables present in ``tables``, in place; add counts to ``faults``.
    ``window``: (first, last) epoch second of the rows being made."""
    _rows(tables, rng, faults)
    _sessions(tables, rng, faults)
    _timezones(tables, rng, faults)
    _devices(tables, rng, faults, window)


def inject_cognova(rng: np.random.Generator, tables: dict[str, pl.DataFrame], faults: dict[str, int], *,
                   whole_day: bool) -> None:
    """``message_cost_null`` (and, with ``whole_day``, ``message_cost_null_day``) in Cognova's new messages."""
    messages = tables.get("conversation_messages")
    if messages is None or messages.height == 0:
        return
    priced = messages["cost_usd"].is_not_null().to_numpy()
    days = np.array(messages["created_at"].dt.date().to_list(), dtype=object)
    null = _slots(rng, messages.height, {COST_NULL: 0.05}, {COST_NULL: priced}) == COST_NULL
    priced_days = sorted(set(days[priced]))
    chosen = None
    if whole_day and priced_days:
        chosen = priced_days[int(rng.integers(len(priced_days)))]
        null |= priced & (days == chosen)
    for day in priced_days:  # every other day keeps a priced message, so exactly one day has none
        here = priced & (days == day)
        if day != chosen and not (here & ~null).any():
            null[np.flatnonzero(here)[0]] = False
    tables["conversation_messages"] = messages.with_columns(
        pl.when(pl.Series(null)).then(None).otherwise(pl.col("cost_usd")).alias("cost_usd"))
    _count(faults, "message_cost_null", null.sum())
    if chosen is not None:
        _count(faults, "message_cost_null_day", 1)


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
