"""Daily Cheeko activity: which devices are used each day, and what happens.

Activity follows a two-state chain per device (used yesterday or not), so
children build streaks and break them; weekends are busier; devices churn.
Each day's events come from that day's own random stream, in the child's
local time, converted to UTC with that day's offset (DST included).

Every session of a day (a chat, a game, a story or a song) also ends before the
child's local midnight, so each event falls on the local day it was made for:
the app's own tables (:mod:`app_tables`) count a day's facts without time zones.
Each chat, game, story and song is a *mode session* (``analytics_game_sessions``:
Conversation, Math, Riddle, WordLadder, Story, Music), stored as the app stores it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.generator import app_tables, questions, vocab
from pipelines.generator.catalogue import Catalogue
from pipelines.generator.fleet import SUBJECT_NAMES, TZ_NAMES, Population
from pipelines.generator.memories import daily_files
from pipelines.generator.randomness import day_stream, epoch_seconds, hex_ids, local_seconds_of_day, pick, utc_offsets, uuids

US = 1_000_000
# Mean time to first token per LLM (index into Catalogue.llm_ids); -1 = default model.
TTFT_BY_LLM = {0: 0.9, 1: 1.1, 2: 0.7, 3: 0.45, -1: 1.0}
# Per game mode (index into questions.MODES): the attempts' game_type and the skill (SUBJECT_NAMES) it draws on.
GAME_TYPE_OF_MODE = np.array([game_type for game_type, *_ in vocab.GAME_MODES.values()], dtype=object)
SKILL_OF_MODE = np.array([SUBJECT_NAMES.index(subject) for _, subject, *_ in vocab.GAME_MODES.values()])
MODE_SHARES = [share for _, _, share, _ in vocab.GAME_MODES.values()]
# Shares of the app's stored-value quirks: an older app version stored no session duration; older firmware sent
# no attempt_time (answered_at only), and the oldest neither (the row has only its created_at).
OLD_APP_SHARE = 0.04
NO_ATTEMPT_TIME_SHARE, NO_ANSWER_TIME_SHARE = 0.04, 0.015
ACTIONS = {"question": "ask_question", "question_pack": "ask_question", "content_pack": "play_content"}


I64, STR, BOOL, F64 = pl.Int64, pl.String, pl.Boolean, pl.Float64
# Explicit schemas: a quiet day yields empty arrays, whose types numpy cannot infer.
SCHEMAS = {
    "ai_agent_chat_history": {"id": STR, "mac_address": STR, "agent_id": STR, "session_id": STR, "chat_type": I64,
                              "content": STR, "audio_id": STR, "created_at": I64},
    "device_token_usage": {"mac_address": STR, "session_id": STR, "input_tokens": I64, "output_tokens": I64,
                           "total_tokens": I64, "input_audio_tokens": I64, "input_text_tokens": I64,
                           "input_cached_tokens": I64, "output_audio_tokens": I64, "output_text_tokens": I64,
                           "avg_ttft_seconds": F64, "message_count": I64, "session_duration_seconds": F64,
                           "total_response_duration_seconds": F64, "session_count": I64, "usage_date": pl.Date,
                           "created_at": I64, "update_date": I64},
    "analytics_game_sessions": {"session_id": STR, "mac_address": STR, "agent_id": STR, "mode_type": STR,
                                "started_at": I64, "ended_at": I64, "duration_seconds": I64, "interaction_count": I64,
                                "completion_status": STR, "metadata": STR, "created_at": I64, "updated_at": I64},
    "analytics_game_attempts": {"session_id": STR, "mac_address": STR, "game_type": STR, "question_text": STR,
                                "question_type": STR, "difficulty_level": STR, "user_answer": STR, "correct_answer": STR,
                                "is_correct": BOOL, "attempt_number": I64, "attempt_time": I64, "response_time_ms": I64,
                                "answered_at": I64, "metadata": STR, "created_at": I64},
    "analytics_media_playback": {"mac_address": STR, "content_id": I64, "content_type": STR, "event_type": STR,
                                 "position_seconds": I64, "duration_seconds": I64, "metadata": STR, "created_at": I64},
    "rfid_scan_log": {"mac_address": STR, "rfid_uid": STR, "action_taken": STR, "created_at": I64},
    "kid_activity_log": {"id": STR, "kid_id": I64, "activity_type": STR, "content_type": STR, "content_id": STR,
                         "duration": I64, "metadata": STR, "created_at": I64},
}


def _frame(table: str, columns: dict) -> pl.DataFrame:
    """``columns`` (numpy arrays, lists or polars Series) as a frame with ``table``'s schema."""
    out = []
    for name, dtype in SCHEMAS[table].items():
        values = columns[name]
        if isinstance(values, pl.Series):
            series = values.alias(name)
        elif isinstance(values, np.ndarray) and values.dtype != object:
            series = pl.Series(name, values)
        else:
            series = pl.Series(name, values.tolist() if isinstance(values, np.ndarray) else values, dtype=dtype)
        out.append(series.cast(dtype))
    return pl.DataFrame(out)


def _nullable(values: np.ndarray, null: np.ndarray) -> pl.Series:
    """``values`` with a null wherever ``null`` is true."""
    return pl.select(pl.when(pl.Series(null, dtype=pl.Boolean)).then(None).otherwise(pl.Series(values))).to_series()


def _strings(template: str, *columns: np.ndarray) -> list[str]:
    """``template`` formatted row by row (JSON metadata, question texts): values are our own, never quoted input."""
    return [template.format(*row) for row in zip(*columns)]
def signup_days(pop: Population) -> np.ndarray:
    """Each device's setup day, as a date ordinal in its child's local time."""
    zones = pop.device_tz()
    out = np.empty(pop.n_devices, dtype=np.int64)
    for i, (seconds, zone) in enumerate(zip(pop.device_signup, zones)):
        tz = zoneinfo.ZoneInfo(TZ_NAMES[zone]) if zone >= 0 else dt.UTC
        out[i] = dt.datetime.fromtimestamp(int(seconds), tz).date().toordinal()
    return out


def activity_states(seed: int, pop: Population, days: list[dt.date], first: np.ndarray | None = None) -> np.ndarray:
    """Boolean matrix (devices, days): was the device used that local day."""
    first = signup_days(pop) if first is None else first
    e = pop.device_engagement
    states = np.zeros((pop.n_devices, len(days)), dtype=bool)
    prev = np.zeros(pop.n_devices, dtype=bool)
    for j, day in enumerate(days):
        u = day_stream(seed, "active", day).random(pop.n_devices)
        ordinal = day.toordinal()
        alive = (first <= ordinal) & (ordinal < pop.device_churn_day)
        p = np.where(prev, 0.45 + 0.5 * e, 0.08 + 0.55 * e) * (1.15 if day.weekday() >= 5 else 1.0)
        prev = alive & ((u < p) | (first == ordinal))  # the day of setup always counts
        states[:, j] = prev
    return states


@dataclass
class DayContext:
    """What the per-table generators share for one day."""

    day: dt.date
    rng: np.random.Generator
    pop: Population
    cat: Catalogue
    active: np.ndarray  # device indices used today
    midnight_us: np.ndarray  # per device: UTC microseconds of local midnight
    earliest_us: np.ndarray  # per device: nothing happens before setup
    first_day: np.ndarray  # per device: local setup day (ordinal)

    def times(self, devices: np.ndarray) -> np.ndarray:
        """Plausible local times of day for ``devices``, as UTC microseconds."""
        t = self.midnight_us[devices] + local_seconds_of_day(self.rng, len(devices)) * US
        return t + self.rng.integers(0, US, size=len(devices))

    def after_setup(self, devices: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Mask of events that happen after their device was set up (others are dropped)."""
        return times >= self.earliest_us[devices]


def _within(starts: np.ndarray, counts: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Per expanded row, the cumulative gap since its group's start."""
    cs = np.cumsum(gaps)
    first = np.cumsum(counts) - counts
    group = np.repeat(np.arange(len(counts)), counts)
    return starts[group] + cs - (cs[first] - gaps[first])[group]


def _mode_sessions(ctx: DayContext, dev: np.ndarray, session_id: np.ndarray, mode, started: np.ndarray,
                   ended: np.ndarray, still_open: np.ndarray, open_status, interactions: np.ndarray, metadata: list[str],
                   updated: np.ndarray) -> pl.DataFrame:
    """Mode sessions as the app stores them: an ended one is 'completed' with its duration in whole seconds (none
    from the older app version); one never ended keeps ``ended_at`` null and ``open_status``."""
    n = len(dev)
    old_app = ctx.rng.random(n) < OLD_APP_SHARE
    return _frame("analytics_game_sessions", {
        "session_id": session_id,
        "mac_address": ctx.pop.device_mac[dev],
        "agent_id": ctx.pop.device_agent_id[dev],
        "mode_type": np.full(n, mode, dtype=object) if isinstance(mode, str) else mode,
        "started_at": started,
        "ended_at": _nullable(ended, still_open),
        "duration_seconds": _nullable((ended - started) // US, still_open | old_app),
        "interaction_count": np.asarray(interactions, dtype=np.int64),
        "completion_status": np.where(still_open, open_status, "completed").astype(object),
        "metadata": metadata,
        "created_at": started,
        "updated_at": updated,
    })


def chat(ctx: DayContext) -> tuple[dict[str, pl.DataFrame], dict]:
    """Chat turns, one Conversation session per chat, and the day's token usage row per chatting device."""
    rng, pop = ctx.rng, ctx.pop
    devs = ctx.active[rng.random(len(ctx.active)) < 0.88]
    e = pop.device_engagement[devs]
    n_sess = 1 + rng.poisson(0.3 + 1.2 * e)
    s_dev = np.repeat(devs, n_sess)
    s_start = ctx.times(s_dev)
    pairs = 1 + rng.poisson(3 + 6 * pop.device_engagement[s_dev])
    s_id = hex_ids(rng, len(s_dev), "lk_", 20)
    gaps = rng.integers(15 * US, 75 * US, size=int(pairs.sum()))
    # A session (its last answer and the room's closing included) ends before
    # local midnight, because the device reports its token usage per local day;
    # one that cannot (set up minutes before midnight) is dropped.
    span = np.add.reduceat(gaps, np.cumsum(pairs) - pairs) + 15 * US
    s_start = np.minimum(s_start, ctx.midnight_us[s_dev] + 86399 * US - span)
    keep = s_start >= ctx.earliest_us[s_dev]
    gaps = gaps[np.repeat(keep, pairs)]
    s_dev, s_start, pairs, s_id = s_dev[keep], s_start[keep], pairs[keep], s_id[keep]
    devs, n_sess = np.unique(s_dev, return_counts=True)
    t_sess = np.repeat(np.arange(len(s_dev)), pairs)
    user_t = _within(s_start, pairs, gaps)
    asst_t = user_t + rng.integers(2 * US, 7 * US, size=len(t_sess))
    n = len(t_sess)
    mac = pop.device_mac[s_dev][t_sess]
    agent = pop.device_agent_id[s_dev][t_sess]
    ids = uuids(rng, 2 * n)
    utter = rng.integers(0, len(vocab.CHAT_USER), size=n)
    history = _frame("ai_agent_chat_history", {
        "id": ids,
        "mac_address": np.concatenate([mac, mac]),
        "agent_id": np.concatenate([agent, agent]),
        "session_id": np.concatenate([s_id[t_sess], s_id[t_sess]]),
        "chat_type": np.concatenate([np.ones(n, dtype=np.int64), np.full(n, 2)]),
        "content": np.concatenate([np.asarray(vocab.CHAT_USER, dtype=object)[utter],
                                   np.asarray(vocab.CHAT_ASSISTANT, dtype=object)[utter]]),
        "audio_id": np.concatenate([hex_ids(rng, n, "aud_", 12), np.full(n, None, dtype=object)]),
        "created_at": np.concatenate([user_t, asst_t]),
    })

    # The Conversation session opens a few seconds before the child's first turn and
    # closes a few seconds after the last answer; now and then the app never hears it close.
    first_turn, last_turn_idx = np.cumsum(pairs) - pairs, np.cumsum(pairs) - 1
    c_start = user_t[first_turn] - rng.integers(2 * US, 9 * US, size=len(s_dev))
    c_end = asst_t[last_turn_idx] + rng.integers(1 * US, 6 * US, size=len(s_dev))
    still_open = rng.random(len(s_dev)) < 0.02
    trigger = pick(rng, ["wake_word", "button"], len(s_dev), [0.7, 0.3])
    conversations = _mode_sessions(
        ctx, s_dev, s_id, "Conversation", c_start, c_end, still_open, "in_progress", pairs,
        _strings('{{"messages": {}, "trigger": "{}"}}', 2 * pairs, trigger),
        np.where(still_open, asst_t[last_turn_idx], c_end),
    )

    # One device_token_usage row per chatting device: sums over its sessions.
    messages = np.bincount(np.searchsorted(devs, s_dev), weights=2 * pairs, minlength=len(devs)).astype(np.int64)
    sess_len = (user_t[np.cumsum(pairs) - 1] - s_start) / US + 30
    duration = np.bincount(np.searchsorted(devs, s_dev), weights=sess_len, minlength=len(devs))
    last_sess = s_id[np.cumsum(n_sess) - 1]
    session_last_turn = asst_t[np.cumsum(pairs) - 1]
    last_turn = np.maximum.reduceat(session_last_turn, np.cumsum(n_sess) - n_sess) if len(devs) else session_last_turn
    inp = (messages * rng.normal(420, 70, size=len(devs))).clip(50).astype(np.int64)
    out = (messages * rng.normal(140, 25, size=len(devs))).clip(20).astype(np.int64)
    ttft_mean = np.array([TTFT_BY_LLM.get(int(i), 1.0) for i in pop.device_llm[devs]])
    ttft = np.round(ttft_mean * rng.lognormal(0, 0.25, size=len(devs)), 3)
    ttft = np.where(rng.random(len(devs)) < 0.03, np.nan, ttft)  # older firmware reports no TTFT
    day_end = ctx.midnight_us[devs] + 86399 * US
    usage = _frame("device_token_usage", {
        "mac_address": pop.device_mac[devs],
        "session_id": last_sess,
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "input_audio_tokens": (inp * 0.7).astype(np.int64),
        "input_text_tokens": inp - (inp * 0.7).astype(np.int64),
        "input_cached_tokens": (inp * rng.uniform(0.1, 0.4, size=len(devs))).astype(np.int64),
        "output_audio_tokens": (out * 0.8).astype(np.int64),
        "output_text_tokens": out - (out * 0.8).astype(np.int64),
        "avg_ttft_seconds": [None if np.isnan(x) else float(x) for x in ttft],
        "message_count": messages,
        "session_duration_seconds": np.round(duration, 3),
        "total_response_duration_seconds": np.round(messages / 2 * rng.uniform(1.5, 3.5, size=len(devs)), 3),
        "session_count": n_sess.astype(np.int64),
        "usage_date": [ctx.day] * len(devs),
        "created_at": day_end,
        "update_date": day_end,
    })
    chat_seconds = np.bincount(np.searchsorted(devs, s_dev), weights=(c_end - c_start) // US, minlength=len(devs))
    per_device = {"chat_devices": devs, "sessions": n_sess, "last_turn_us": last_turn,
                  "chat_seconds": chat_seconds.astype(np.int64)}
    tables = {"ai_agent_chat_history": history, "device_token_usage": usage, "analytics_game_sessions": conversations}
    return tables, per_device


def _firmware(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per attempt, what the device's firmware sent: 0 every time, 1 no attempt_time, 2 neither attempt_time nor
    answered_at. A day with a handful of attempts has at least one of each, so every fleet shows them."""
    kinds = rng.choice(3, size=n, p=[1 - NO_ATTEMPT_TIME_SHARE - NO_ANSWER_TIME_SHARE, NO_ATTEMPT_TIME_SHARE,
                                     NO_ANSWER_TIME_SHARE])
    if n >= 8:
        for kind in (1, 2):
            if not (kinds == kind).any():
                free = np.flatnonzero(kinds == 0)
                kinds[free[int(rng.integers(len(free)))]] = kind
    return kinds


def games(ctx: DayContext) -> tuple[dict[str, pl.DataFrame], dict]:
    """Math, Riddle and WordLadder sessions and their attempts; skill grows with practice.

    A wrong first answer is often retried (``attempt_number`` 2, the same question).
    Attempts are back to back: the question is asked (``attempt_time``), answered
    ``response_time_ms`` later (``answered_at``) and recorded (``created_at``) just after.
    """
    rng, pop = ctx.rng, ctx.pop
    bank = questions.bank()
    devs = ctx.active[rng.random(len(ctx.active)) < 0.2 + 0.3 * pop.device_engagement[ctx.active]]
    n_games = 1 + (rng.random(len(devs)) < 0.35)
    g_dev = np.repeat(devs, n_games)
    g = len(g_dev)
    mode = rng.choice(len(questions.MODES), size=g, p=MODE_SHARES)
    level = rng.choice(len(questions.LEVELS), size=g, p=questions.LEVEL_SHARES)
    n_q = rng.integers(5, 11, size=g)
    g_start = ctx.times(g_dev)
    session_id = hex_ids(rng, g, "gs_", 20)
    completed = rng.random(g) < 0.85
    open_status = np.where(rng.random(g) < 0.7, "abandoned", "in_progress")

    q_game = np.repeat(np.arange(g), n_q)
    kind, question = questions.pick_questions(rng, q_game, mode, level, g)
    kid = pop.device_kid[g_dev][q_game]
    skill = np.where(kid >= 0, pop.kid_skill[np.maximum(kid, 0), SKILL_OF_MODE[mode[q_game]]], 0.6)
    practice = np.clip((ctx.day.toordinal() - ctx.first_day[g_dev][q_game]) / 120, 0, 1)
    p = np.clip(skill + bank.ease[kind] + 0.15 * practice - 0.08 * (level[q_game] - 1), 0.05, 0.97)
    first_ok = rng.random(len(q_game)) < p
    retried = ~first_ok & (rng.random(len(q_game)) < 0.45)
    second_ok = rng.random(len(q_game)) < np.clip(p + 0.2, 0.05, 0.98)
    wrong_pick = rng.integers(0, 2, size=len(q_game))

    # Attempt rows: every question once, a retried one twice.
    row_q = np.repeat(np.arange(len(q_game)), 1 + retried)
    number = np.ones(len(row_q), dtype=np.int64)
    number[1:][row_q[1:] == row_q[:-1]] = 2
    second = number == 2
    correct = np.where(second, second_ok[row_q], first_ok[row_q])
    row_game = q_game[row_q]
    rows_per_game = np.bincount(row_game, minlength=g)
    response_ms = rng.integers(800, 15000, size=len(row_q))
    wait = rng.integers(2 * US, 10 * US, size=len(row_q))  # the question being read out, or feedback on the last
    answered_off = _within(np.zeros(g, dtype=np.int64), rows_per_game, wait + response_ms * 1000)
    end_gap = rng.integers(5 * US, 40 * US, size=g)
    last_off = answered_off[np.cumsum(rows_per_game) - 1]
    g_start = np.minimum(g_start, ctx.midnight_us[g_dev] + 86399 * US - last_off - end_gap - US)
    keep = ctx.after_setup(g_dev, g_start)
    row_keep = keep[row_game]
    g_dev, mode, level, g_start, session_id, completed, open_status, rows_per_game, end_gap, last_off = (
        a[keep] for a in (g_dev, mode, level, g_start, session_id, completed, open_status, rows_per_game, end_gap, last_off))
    row_q, number, second, correct, response_ms, answered_off, row_game = (
        a[row_keep] for a in (row_q, number, second, correct, response_ms, answered_off, row_game))
    row_game = (np.cumsum(keep) - 1)[row_game]
    g, n = len(g_dev), len(row_q)

    answered = g_start[row_game] + answered_off
    attempt_time = answered - response_ms * 1000
    created = answered + rng.integers(5_000, 400_000, size=n)
    firmware = _firmware(rng, n)
    q = question[row_q]
    wrong = bank.wrong[q, np.where(second, 1 - wrong_pick[row_q], wrong_pick[row_q])]
    hint = rng.random(n) < np.where(second, 0.35, 0.08)
    attempts = _frame("analytics_game_attempts", {
        "session_id": session_id[row_game],
        "mac_address": pop.device_mac[g_dev][row_game],
        "game_type": GAME_TYPE_OF_MODE[mode][row_game],
        "question_text": bank.text[q],
        "question_type": np.asarray(questions.TYPES, dtype=object)[kind[row_q]],
        "difficulty_level": np.asarray(questions.LEVELS, dtype=object)[level][row_game],
        "user_answer": np.where(correct, bank.answer[q], wrong),
        "correct_answer": bank.answer[q],
        "is_correct": correct,
        "attempt_number": number,
        "attempt_time": _nullable(attempt_time, firmware >= 1),
        "response_time_ms": _nullable(response_ms, firmware >= 1),
        "answered_at": _nullable(answered, firmware == 2),
        "metadata": ['{"hint_used": true}' if h else '{"hint_used": false}' for h in hint],
        "created_at": created,
    })

    last_row = np.cumsum(rows_per_game) - 1
    ended = g_start + last_off + end_gap
    questions_asked = np.bincount(row_game[~second], minlength=g)
    sessions = _mode_sessions(
        ctx, g_dev, session_id, np.asarray(questions.MODES, dtype=object)[mode], g_start, ended, ~completed,
        open_status, rows_per_game,
        _strings('{{"difficulty": "{}", "questions": {}}}', np.asarray(questions.LEVELS)[level], questions_asked),
        np.where(completed, ended, created[last_row]),
    )
    n_correct = np.bincount(row_game, weights=correct, minlength=g).astype(np.int64)
    done = {"dev": g_dev[completed], "session_id": session_id[completed], "game_type": GAME_TYPE_OF_MODE[mode][completed],
            "correct": n_correct[completed], "attempts": rows_per_game[completed],
            "seconds": ((ended - g_start) // US)[completed], "at": ended[completed]}
    return {"analytics_game_sessions": sessions, "analytics_game_attempts": attempts}, done


def media(ctx: DayContext) -> tuple[dict[str, pl.DataFrame], dict]:
    """Stories and songs played, then completed, paused or skipped: two playback events and a Story or
    Music session each. ``content_id`` is the item's content_library id."""
    rng, pop, cat = ctx.rng, ctx.pop, ctx.cat
    devs = ctx.active[rng.random(len(ctx.active)) < 0.25 + 0.35 * pop.device_engagement[ctx.active]]
    plays = 1 + rng.poisson(0.7, size=len(devs))
    p_dev = np.repeat(devs, plays)
    n = len(p_dev)
    is_story = rng.random(n) < 0.58
    s_i = rng.integers(0, len(cat.story_ids), size=n)
    m_i = rng.integers(0, len(cat.music_ids), size=n)
    content_id = np.where(is_story, cat.story_library_ids[s_i], cat.music_library_ids[m_i])
    content_uuid = np.where(is_story, cat.story_ids[s_i], cat.music_ids[m_i])
    length = np.where(is_story, cat.story_seconds[s_i], cat.music_seconds[m_i]).astype(np.int64)
    start = ctx.times(p_dev)
    outcome = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])  # complete, pause, skip
    listened = np.where(outcome == 0, length, np.where(outcome == 1, rng.integers(20, np.maximum(length, 21)),
                                                        rng.integers(2, 25, size=n))).astype(np.int64)
    source = pick(rng, ["voice", "rfid", "playlist", "app"], n, [0.5, 0.2, 0.2, 0.1])
    session_id = hex_ids(rng, n, "ms_", 20)
    start = np.minimum(start, ctx.midnight_us[p_dev] + 86399 * US - listened * US - US)
    keep = ctx.after_setup(p_dev, start)
    p_dev, is_story, content_id, content_uuid, length, start, outcome, listened, source, session_id = (
        a[keep] for a in (p_dev, is_story, content_id, content_uuid, length, start, outcome, listened, source, session_id))
    n = len(p_dev)
    mac = pop.device_mac[p_dev]
    ctype = np.where(is_story, "story", "music").astype(object)
    event = np.asarray(["complete", "pause", "skip"], dtype=object)[outcome]
    end = start + listened * US
    meta = _strings('{{"session_id": "{}", "source": "{}"}}', session_id, source)
    playback = _frame("analytics_media_playback", {
        "mac_address": np.concatenate([mac, mac]),
        "content_id": np.concatenate([content_id, content_id]),
        "content_type": np.concatenate([ctype, ctype]),
        "event_type": np.concatenate([np.full(n, "play", dtype=object), event]),
        "position_seconds": np.concatenate([np.zeros(n, dtype=np.int64), listened]),
        "duration_seconds": np.concatenate([length, length]),
        "metadata": meta + meta,
        "created_at": np.concatenate([start, end]),
    })
    sessions = _mode_sessions(
        ctx, p_dev, session_id, np.where(is_story, "Story", "Music").astype(object), start, end, np.zeros(n, dtype=bool),
        "in_progress", np.full(n, 2), _strings('{{"content_id": {}, "outcome": "{}"}}', content_id, event), end,
    )
    finished = outcome == 0
    done = {"dev": p_dev[finished], "content_type": ctype[finished], "content_uuid": content_uuid[finished],
            "content_id": content_id[finished], "seconds": length[finished], "at": end[finished]}
    return {"analytics_media_playback": playback, "analytics_game_sessions": sessions}, done


def scans(ctx: DayContext) -> dict[str, pl.DataFrame]:
    """RFID card taps, and what the device did with each card; a few cards are unknown."""
    rng, pop, cat = ctx.rng, ctx.pop, ctx.cat
    candidates = ctx.active[pop.device_has_cards[ctx.active]]
    devs = candidates[rng.random(len(candidates)) < 0.35]
    taps = 1 + rng.poisson(0.8, size=len(devs))
    s_dev = np.repeat(devs, taps)
    n = len(s_dev)
    card = rng.integers(0, len(cat.card_uids), size=n)
    # Most taps are mapped cards; some are printed pack cards that resolve
    # through an rfid_series UID range (content packs); a few are unknown.
    source = rng.choice(3, size=n, p=[0.84, 0.10, 0.06])  # mapped, series, unknown
    series = rng.integers(0, cat.series_count, size=n)
    in_range = rng.integers(0, 256, size=n)
    unknown_uid = rng.integers(0, 2**40, size=n)
    uid = [cat.card_uids[c] if k == 0 else f"05{s:02X}00000000{r:02X}" if k == 1 else f"04{u:012X}"
           for k, c, s, r, u in zip(source, card, series, in_range, unknown_uid)]
    action = [ACTIONS[cat.card_resolved_type[c]] if k == 0 else "play_content" if k == 1 else "unknown_card"
              for k, c in zip(source, card)]
    scanned = ctx.times(s_dev)
    keep = ctx.after_setup(s_dev, scanned)
    frame = _frame("rfid_scan_log", {
        "mac_address": pop.device_mac[s_dev],
        "rfid_uid": uid,
        "action_taken": action,
        "created_at": scanned,
    }).filter(pl.Series(keep, dtype=pl.Boolean))
    return {"rfid_scan_log": frame}


def kid_activity(ctx: DayContext, chats: dict, games_done: dict, media_done: dict) -> pl.DataFrame:
    """Per-child activity events: a day's chatting, finished games, finished stories and songs."""
    pop = ctx.pop
    n_chat, n_game, n_media = len(chats["chat_devices"]), len(games_done["dev"]), len(media_done["dev"])
    dev = np.concatenate([chats["chat_devices"], games_done["dev"], media_done["dev"]]).astype(np.int64)
    activity = np.concatenate([np.full(n_chat, "chat", dtype=object), np.full(n_game, "game_completed", dtype=object),
                               np.asarray([f"{t}_completed" for t in media_done["content_type"]], dtype=object)])
    content_type = np.concatenate([np.full(n_chat, None, dtype=object), np.full(n_game, "game", dtype=object),
                                   media_done["content_type"].astype(object)])
    content_id = np.concatenate([np.full(n_chat + n_game, None, dtype=object), media_done["content_uuid"].astype(object)])
    metadata = (_strings('{{"sessions": {}}}', chats["sessions"])
                + _strings('{{"session_id": "{}", "game_type": "{}", "score": "{}/{}"}}', games_done["session_id"],
                           games_done["game_type"], games_done["correct"], games_done["attempts"])
                + _strings('{{"content_id": {}}}', media_done["content_id"]))
    duration = np.concatenate([chats["chat_seconds"], games_done["seconds"], media_done["seconds"]]).astype(np.int64)
    at = np.concatenate([chats["last_turn_us"], games_done["at"], media_done["at"]]).astype(np.int64)
    has_kid = pop.device_kid[dev] >= 0
    n = int(has_kid.sum())
    return _frame("kid_activity_log", {
        "id": uuids(ctx.rng, n),
        "kid_id": pop.kid_id[pop.device_kid[dev[has_kid]]].astype(np.int64),
        "activity_type": activity[has_kid],
        "content_type": content_type[has_kid],
        "content_id": content_id[has_kid],
        "duration": duration[has_kid],
        "metadata": [m for m, k in zip(metadata, has_kid) if k],
        "created_at": at[has_kid],
    })


TIME_COLUMNS = {
    "ai_agent_chat_history": ["created_at"],
    "device_token_usage": ["created_at", "update_date"],
    "analytics_game_sessions": ["started_at", "ended_at", "created_at", "updated_at"],
    "analytics_game_attempts": ["attempt_time", "answered_at", "created_at"],
    "analytics_media_playback": ["created_at"],
    "rfid_scan_log": ["created_at"],
    "kid_activity_log": ["created_at"],
    "device_memories": ["updated_at"],
}
# Every event's time (metrics.md "Overrides"): an attempt's is attempt_time, else answered_at, else created_at.
EVENT_TIMES = {
    "ai_agent_chat_history": pl.col("created_at"),
    "analytics_game_attempts": pl.coalesce("attempt_time", "answered_at", "created_at"),
    "analytics_media_playback": pl.col("created_at"),
    "rfid_scan_log": pl.col("created_at"),
}


@dataclass
class Events:
    """Event rows for some days, each active device's last event (MAC -> UTC µs), and what the app
    learnt from them day by day (:func:`app_tables.day_facts`, from the clean rows)."""

    tables: dict[str, pl.DataFrame]
    last_seen: dict[str, int]
    facts: dict[str, pl.DataFrame]


def generate_days(seed: int, pop: Population, cat: Catalogue, days: list[dt.date], states: np.ndarray,
                  first_day: np.ndarray | None = None) -> Events:
    """Event rows for ``days`` (columns of ``states``)."""
    offsets = utc_offsets(TZ_NAMES, days)
    tz = pop.device_tz()
    earliest = (pop.device_signup + 300) * US
    first_day = signup_days(pop) if first_day is None else first_day
    fleet = app_tables.devices(pop, seed)
    parts: dict[str, list[pl.DataFrame]] = defaultdict(list)
    facts: dict[str, list[pl.DataFrame]] = defaultdict(list)
    for j, day in enumerate(days):
        offset = np.where(tz >= 0, offsets[np.maximum(tz, 0), j], 0)
        ctx = DayContext(
            day=day,
            rng=day_stream(seed, "events", day),
            pop=pop,
            cat=cat,
            active=np.flatnonzero(states[:, j]),
            midnight_us=(epoch_seconds(day) - offset) * US,
            earliest_us=earliest,
            first_day=first_day,
        )
        tables, chats = chat(ctx)
        played, games_done = games(ctx)
        listened, media_done = media(ctx)
        tables["analytics_game_sessions"] = pl.concat([tables["analytics_game_sessions"], played["analytics_game_sessions"],
                                                       listened["analytics_game_sessions"]])
        tables["analytics_game_attempts"] = played["analytics_game_attempts"]
        tables["analytics_media_playback"] = listened["analytics_media_playback"]
        tables |= scans(ctx)
        tables["kid_activity_log"] = kid_activity(ctx, chats, games_done, media_done)
        tables["device_memories"] = daily_files(day_stream(seed, "memories", day), pop, day, chats["chat_devices"],
                                                chats["sessions"], ctx.midnight_us)
        for name, frame in tables.items():
            parts[name].append(frame)
        for name, frame in app_tables.day_facts(day, tables, fleet).items():
            facts[name].append(frame)
    out = {}
    for name, frames in parts.items():
        frame = pl.concat(frames, how="vertical_relaxed")
        out[name] = frame.with_columns([pl.col(c).cast(pl.Datetime("us", "UTC")) for c in TIME_COLUMNS[name]])
    seen = pl.concat([out[t].select(pl.col("mac_address"), at.cast(pl.Int64).alias("at")) for t, at in EVENT_TIMES.items() if t in out])
    last_seen = dict(seen.group_by("mac_address").agg(pl.col("at").max()).iter_rows()) if seen.height else {}
    return Events(out, last_seen, {name: pl.concat(frames) for name, frames in facts.items()})
