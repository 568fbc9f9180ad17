"""The app's own analytics tables, kept the way the Cheeko app keeps them.

- ``analytics_streaks``: one row per device, game type (``streak_type``) and
  local day it played that game; ``streak_count`` is the run of consecutive
  days of that game ending that day.
- ``analytics_user_progress``: running counters per device with any mode
  session: sessions, their stored durations, game sessions, correct and wrong
  answers; ``current_streak``, ``longest_streak`` and ``last_activity_at`` by
  metrics.md's "Qualifying activity" and "Streaks". The app recomputes them
  when it writes the row (``updated_at``, its last activity) and never in
  between, so ``current_streak`` is the streak as of the device's local day of
  that write: a child who stopped playing keeps the number until the next
  write, as running counters do (the warehouse reconciles as of that write).
- ``kid_learning_progress``: per kid, subject (the game type) and topic (the
  question type, ``general`` when it has none): ``score`` = percent correct,
  ``time_spent`` = the answers' response times in whole seconds, ``completed``
  = at least 5 attempts and 80% correct, ``metadata`` = attempts and correct.

All of it comes from the clean events, before ``--messy`` damages them. Each
day's events fall on the local day they were generated for (:mod:`activity`),
so :func:`day_facts` needs no time zones. A fresh dataset writes the tables
whole (:func:`initial_tables`); an append updates them as the app would, with
upserts that add the new days (:func:`append_statements`, run after the new
rows are loaded).

Like every app's, the counters drift. About 5% of the devices run a flaky app
install (the same ones in every run, new signups included): a fresh dataset
gives each of them (at least one in a fleet of 10 or more devices with
sessions) one lost or doubled update, a stale ``current_streak`` or a
``last_activity_at`` minutes behind; an append loses or doubles one more update
of each of them that it counts sessions for. How many devices a run drifted is
its ``app_counter_drift`` fault count.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.fleet import TZ_NAMES, Population
from pipelines.generator.randomness import stream, uuids

US = 1_000_000
GAME_TYPES = {mode: game_type for mode, (game_type, *_) in vocab.GAME_MODES.items()}
EVENT_TIME = pl.coalesce("attempt_time", "answered_at", "created_at")  # metrics.md "Overrides"
DRIFT_SHARE = 0.05
LOST_GAME, DOUBLE_CORRECT, STALE_STREAK, LAGGING_ACTIVITY = range(4)
STAMP = pl.Datetime("us", "UTC")


def devices(pop: Population, seed: int) -> pl.DataFrame:
    """Per device: MAC, its kid's id (null when none), its zone (metrics.md "Local day") and whether
    its app install is flaky (drifts its counters)."""
    return pl.DataFrame({
        "mac_address": pop.device_mac.tolist(),
        "kid_id": [int(pop.kid_id[k]) if k >= 0 else None for k in pop.device_kid],
        "zone": [TZ_NAMES[z] if z >= 0 else "UTC" for z in pop.device_tz()],
        # One draw per device in population order, so a device keeps its draw as the fleet grows.
        "flaky": stream(seed, "app-drift").random(pop.n_devices),
    }, schema={"mac_address": pl.String, "kid_id": pl.Int64, "zone": pl.String, "flaky": pl.Float64})


def day_facts(day: dt.date, tables: dict[str, pl.DataFrame], fleet: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What the app learns from one local day's clean events (times in UTC µs):

    ``progress`` per device with qualifying activity that day (counter increments,
    its latest qualifying event); ``streaks`` per device and game type played;
    ``learning`` per kid, game type and topic.
    """
    sessions, attempts = tables["analytics_game_sessions"], tables["analytics_game_attempts"]
    qualifying = pl.concat([
        tables["ai_agent_chat_history"].filter(pl.col("chat_type") == 1).select("mac_address", at=pl.col("created_at")),
        attempts.select("mac_address", at=EVENT_TIME),
        tables["analytics_media_playback"].filter(pl.col("event_type").is_in(["play", "complete"]))
        .select("mac_address", at=pl.col("created_at")),
        tables["rfid_scan_log"].select("mac_address", at=pl.col("created_at")),
    ]).group_by("mac_address").agg(last_at=pl.col("at").max())
    per_session = sessions.group_by("mac_address").agg(
        sessions=pl.len().cast(pl.Int64),
        duration=pl.col("duration_seconds").sum().cast(pl.Int64),
        games=pl.col("mode_type").is_in(list(GAME_TYPES)).sum().cast(pl.Int64),
        first_at=pl.col("created_at").min(),
        updated_at=pl.col("updated_at").max(),
    )
    answers = attempts.group_by("mac_address").agg(
        correct=pl.col("is_correct").sum().cast(pl.Int64), wrong=(~pl.col("is_correct")).sum().cast(pl.Int64))
    counters = ["sessions", "duration", "games", "correct", "wrong"]
    progress = (
        qualifying.join(per_session, on="mac_address", how="full", coalesce=True)
        .join(answers, on="mac_address", how="left")
        .with_columns(pl.col(counters).fill_null(0), day=pl.lit(day))
        .sort("mac_address")
    )
    streaks = (
        sessions.filter(pl.col("mode_type").is_in(list(GAME_TYPES)))
        .group_by("mac_address", pl.col("mode_type").replace_strict(GAME_TYPES, return_dtype=pl.String).alias("streak_type"))
        .agg(first_at=pl.col("started_at").min(), last_at=pl.col("started_at").max())
        .with_columns(day=pl.lit(day))
        .sort("mac_address", "streak_type")
    )
    learning = (
        attempts.join(fleet.select("mac_address", "kid_id").drop_nulls("kid_id"), on="mac_address", how="inner")
        .group_by("kid_id", pl.col("game_type").alias("subject"), pl.col("question_type").fill_null("general").alias("topic"))
        .agg(attempts=pl.len().cast(pl.Int64), correct=pl.col("is_correct").sum().cast(pl.Int64),
             seconds=((pl.col("response_time_ms") + 500) // 1000).sum().cast(pl.Int64),
             first_at=pl.col("created_at").min(), last_at=pl.col("created_at").max())
        .sort("kid_id", "subject", "topic")
    )
    return {"progress": progress, "streaks": streaks, "learning": learning}


def _days(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int32)


def _streak_rows(streaks: pl.DataFrame) -> pl.DataFrame:
    """analytics_streaks from every day's ``streaks`` facts."""
    runs = streaks.sort("mac_address", "streak_type", "day").with_columns(
        island=_days("day") - pl.int_range(pl.len()).over("mac_address", "streak_type").cast(pl.Int32))
    return runs.select(
        "mac_address", "streak_type", streak_date=pl.col("day"),
        streak_count=(pl.int_range(pl.len()).over("mac_address", "streak_type", "island") + 1).cast(pl.Int64),
        created_at=pl.col("first_at").cast(STAMP), updated_at=pl.col("last_at").cast(STAMP),
    )


def _streaks(progress: pl.DataFrame) -> pl.DataFrame:
    """Per device with an active day: longest streak, and current streak as of its last active day (metrics.md
    "Streaks"; the app's last write is on that day: its sessions end before local midnight)."""
    runs = (
        progress.select("mac_address", d=_days("day")).sort("mac_address", "d")
        .with_columns(island=pl.col("d") - pl.int_range(pl.len()).over("mac_address").cast(pl.Int32))
        .group_by("mac_address", "island").agg(run_end=pl.col("d").max(), length=pl.len().cast(pl.Int64))
    )
    return runs.group_by("mac_address").agg(
        longest_streak=pl.col("length").max(),
        current_streak=pl.col("length").sort_by("run_end").last(),
    )


def _drift(progress: pl.DataFrame, rng: np.random.Generator) -> tuple[pl.DataFrame, int]:
    """Drift the counters of the flaky devices (one kind each); returns the frame and how many."""
    n = progress.height
    flaky = progress["flaky"].to_numpy()
    chosen = flaky < DRIFT_SHARE
    if n >= 10 and not chosen.any():
        chosen[int(np.argmin(flaky))] = True
    kind = rng.integers(0, 4, size=n)
    lag = rng.integers(2 * 60 * US, 30 * 60 * US, size=n)
    games = progress["total_games_played"].to_numpy()
    kind = np.where((kind == LOST_GAME) & (games == 0), DOUBLE_CORRECT, kind)
    current = progress["current_streak"].to_numpy()
    drifted = progress.with_columns(
        total_games_played=pl.Series(games - (chosen & (kind == LOST_GAME))),
        total_correct_answers=pl.Series(progress["total_correct_answers"].to_numpy() + (chosen & (kind == DOUBLE_CORRECT))),
        # A streak the app did not move on: one day short (a first day is counted twice instead).
        current_streak=pl.Series(np.where(chosen & (kind == STALE_STREAK), np.where(current > 1, current - 1, current + 1),
                                          current)),
        last_activity_at=pl.Series(progress["last_activity_at"].to_numpy() - np.where(chosen & (kind == LAGGING_ACTIVITY), lag, 0)),
    )
    return drifted, int(chosen.sum())


def _score(attempts: pl.Expr, correct: pl.Expr) -> pl.Expr:
    return (200 * correct + attempts) // (2 * attempts)  # percent correct, rounded half up


def initial_tables(facts: dict[str, pl.DataFrame], fleet: pl.DataFrame, as_of: dt.date,
                   seed: int) -> tuple[dict[str, pl.DataFrame], int]:
    """The app's three tables for a fresh dataset ending on ``as_of``, and how many devices drifted."""
    progress = facts["progress"]
    totals = progress.group_by("mac_address").agg(
        total_sessions=pl.col("sessions").sum(), total_duration_seconds=pl.col("duration").sum(),
        total_games_played=pl.col("games").sum(), total_correct_answers=pl.col("correct").sum(),
        total_wrong_answers=pl.col("wrong").sum(), last_activity_at=pl.col("last_at").max(),
        created_at=pl.col("first_at").min(), updated_at=pl.col("updated_at").max(),
    ).filter(pl.col("total_sessions") > 0)
    per_device = (
        totals.join(_streaks(progress), on="mac_address", how="left")
        .join(fleet, on="mac_address", how="left")
        .sort("mac_address")
    )
    per_device, drifted = _drift(per_device, stream(seed, "app-drift", as_of.toordinal()))
    user_progress = per_device.select(
        "mac_address", "kid_id", "total_sessions", "total_duration_seconds", "total_games_played",
        "total_correct_answers", "total_wrong_answers", "current_streak", "longest_streak",
        pl.col("last_activity_at").cast(STAMP), pl.col("created_at").cast(STAMP),
        pl.max_horizontal("updated_at", "last_activity_at").cast(STAMP).alias("updated_at"),
    )
    learning = facts["learning"].group_by("kid_id", "subject", "topic").agg(
        pl.col("attempts", "correct", "seconds").sum(), first_at=pl.col("first_at").min(), last_at=pl.col("last_at").max(),
    ).sort("kid_id", "subject", "topic")
    n, c = pl.col("attempts"), pl.col("correct")
    kid_learning = learning.select(
        id=pl.Series(uuids(stream(seed, "learning-progress"), learning.height).tolist(), dtype=pl.String),
        kid_id=pl.col("kid_id"), subject=pl.col("subject"), topic=pl.col("topic"), score=_score(n, c),
        time_spent=pl.col("seconds"), completed=(n >= 5) & (5 * c >= 4 * n),
        metadata=pl.concat_str(pl.lit('{"attempts": '), n, pl.lit(', "correct": '), c, pl.lit("}")),
        created_at=pl.col("first_at").cast(STAMP), updated_at=pl.col("last_at").cast(STAMP),
    )
    return {"analytics_streaks": _streak_rows(facts["streaks"]), "analytics_user_progress": user_progress,
            "kid_learning_progress": kid_learning}, drifted


# The app's day step for a device: the streak goes on from yesterday, stays today, or starts again.
_STREAK = ("CASE (p.last_activity_at AT TIME ZONE %(zone)s)::date WHEN %(day)s::date THEN p.current_streak "
           "WHEN %(day)s::date - 1 THEN p.current_streak + 1 ELSE 1 END")
PROGRESS_UPSERT = f"""
INSERT INTO analytics_user_progress AS p (mac_address, kid_id, total_sessions, total_duration_seconds, total_games_played,
    total_correct_answers, total_wrong_answers, current_streak, longest_streak, last_activity_at, created_at, updated_at)
SELECT %(mac)s::varchar, %(kid)s::bigint, %(sessions)s::int, %(duration)s::int, %(games)s::int, %(correct)s::int,
       %(wrong)s::int, 1, 1, %(last)s::timestamptz, %(created)s::timestamptz, %(updated)s::timestamptz
WHERE %(sessions)s::int > 0 OR EXISTS (SELECT 1 FROM analytics_user_progress WHERE mac_address = %(mac)s::varchar)
ON CONFLICT (mac_address) DO UPDATE SET
    kid_id = EXCLUDED.kid_id,
    total_sessions = p.total_sessions + EXCLUDED.total_sessions,
    total_duration_seconds = p.total_duration_seconds + EXCLUDED.total_duration_seconds,
    total_games_played = p.total_games_played + EXCLUDED.total_games_played,
    total_correct_answers = p.total_correct_answers + EXCLUDED.total_correct_answers,
    total_wrong_answers = p.total_wrong_answers + EXCLUDED.total_wrong_answers,
    current_streak = {_STREAK},
    longest_streak = greatest(p.longest_streak, {_STREAK}),
    last_activity_at = greatest(p.last_activity_at, EXCLUDED.last_activity_at),
    updated_at = greatest(p.updated_at, EXCLUDED.updated_at)
"""
STREAK_INSERT = """
INSERT INTO analytics_streaks (mac_address, streak_type, streak_date, streak_count, created_at, updated_at)
SELECT %(mac)s::varchar, %(type)s::varchar, %(day)s::date,
       1 + coalesce((SELECT s.streak_count FROM analytics_streaks s WHERE s.mac_address = %(mac)s::varchar
                     AND s.streak_type = %(type)s::varchar AND s.streak_date = %(day)s::date - 1), 0),
       %(created)s::timestamptz, %(updated)s::timestamptz
ON CONFLICT (mac_address, streak_type, streak_date) DO NOTHING
"""
_N = "((k.metadata->>'attempts')::int + (EXCLUDED.metadata->>'attempts')::int)"
_C = "((k.metadata->>'correct')::int + (EXCLUDED.metadata->>'correct')::int)"
LEARNING_UPSERT = f"""
INSERT INTO kid_learning_progress AS k (id, kid_id, subject, topic, score, time_spent, completed, metadata, created_at, updated_at)
VALUES (%(id)s::uuid, %(kid)s, %(subject)s, %(topic)s, %(score)s, %(seconds)s, %(completed)s, %(metadata)s::jsonb,
        %(first)s, %(last)s)
ON CONFLICT (kid_id, subject, topic) DO UPDATE SET
    time_spent = k.time_spent + EXCLUDED.time_spent,
    metadata = jsonb_build_object('attempts', {_N}, 'correct', {_C}),
    score = (200 * {_C} + {_N}) / (2 * {_N}),
    completed = {_N} >= 5 AND 5 * {_C} >= 4 * {_N},
    updated_at = greatest(k.updated_at, EXCLUDED.updated_at)
"""


def _when(us) -> dt.datetime | None:
    return None if us is None else dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))


def append_statements(facts: dict[str, pl.DataFrame], fleet: pl.DataFrame, as_of: dt.date,
                      seed: int) -> tuple[list[tuple[str, object]], int]:
    """Statements that bring the app's tables up to ``as_of`` with the new days' facts (run after
    the new rows are loaded, in order), and how many devices' updates drifted."""
    zones = dict(fleet.select("mac_address", "zone").iter_rows())
    kid_of = dict(fleet.select("mac_address", "kid_id").iter_rows())
    flaky = {mac for mac, u in fleet.select("mac_address", "flaky").iter_rows() if u < DRIFT_SHARE}
    streaks = [
        {"mac": mac, "type": kind, "day": day, "created": _when(first), "updated": _when(last)}
        for mac, kind, first, last, day in facts["streaks"].sort("day", "mac_address", "streak_type")
        .select("mac_address", "streak_type", "first_at", "last_at", "day").iter_rows()
    ]
    progress = facts["progress"].sort("day", "mac_address")
    drifted = sorted(flaky & set(progress.filter(pl.col("sessions") > 0)["mac_address"].to_list()))
    pending = set(drifted)
    days = []
    for row in progress.iter_rows(named=True):
        mac = row["mac_address"]
        games, correct = row["games"], row["correct"]
        if mac in pending and row["sessions"] > 0:  # on the device's first counted day, one update lost or doubled
            games, correct = (games - 1, correct) if games > 0 else (games, correct + 1)
            pending.discard(mac)
        days.append({"mac": mac, "kid": kid_of.get(mac), "sessions": row["sessions"], "duration": row["duration"],
                     "games": games, "correct": correct, "wrong": row["wrong"], "last": _when(row["last_at"]),
                     "created": _when(row["first_at"]), "updated": _when(max(row["updated_at"] or 0, row["last_at"] or 0)),
                     "zone": zones[mac], "day": row["day"]})
    learning = facts["learning"].group_by("kid_id", "subject", "topic").agg(
        pl.col("attempts", "correct", "seconds").sum(), first_at=pl.col("first_at").min(), last_at=pl.col("last_at").max(),
    ).sort("kid_id", "subject", "topic")
    ids = uuids(stream(seed, "learning-progress", as_of.toordinal()), learning.height)
    learned = [
        {"id": str(i), "kid": kid, "subject": subject, "topic": topic, "score": (200 * c + n) // (2 * n), "seconds": s,
         "completed": n >= 5 and 5 * c >= 4 * n, "metadata": f'{{"attempts": {n}, "correct": {c}}}',
         "first": _when(first), "last": _when(last)}
        for i, (kid, subject, topic, n, c, s, first, last) in zip(ids, learning.iter_rows())
    ]
    statements = [(STREAK_INSERT, streaks), (PROGRESS_UPSERT, days), (LEARNING_UPSERT, learned)]
    return statements, len(drifted)
