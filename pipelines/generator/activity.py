"""Daily Cheeko activity: which devices are used each day, and what happens.

Activity follows a two-state chain per device (used yesterday or not), so
children build streaks and break them; weekends are busier; devices churn.
Each day's events come from that day's own random stream, in the child's
local time, converted to UTC with that day's offset (DST included).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.catalogue import Catalogue
from pipelines.generator.fleet import SUBJECT_NAMES, TZ_NAMES, Population
from pipelines.generator.memories import daily_files
from pipelines.generator.randomness import day_stream, epoch_seconds, hex_ids, local_seconds_of_day, pick, utc_offsets, uuids

US = 1_000_000
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Mean time to first token per LLM (index into Catalogue.llm_ids); -1 = default model.
TTFT_BY_LLM = {0: 0.9, 1: 1.1, 2: 0.7, 3: 0.45, -1: 1.0}


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
    "analytics_game_sessions": {"session_id": STR, "mac_address": STR, "kid_id": I64, "game_type": STR, "started_at": I64,
                                "ended_at": I64, "total_questions": I64, "correct_answers": I64, "created_at": I64},
    "analytics_game_attempts": {"session_id": STR, "mac_address": STR, "question_id": I64, "question_key": STR,
                                "subject": STR, "topic": STR, "difficulty": I64, "is_correct": BOOL,
                                "response_time_ms": I64, "attempted_at": I64},
    "analytics_media_playback": {"mac_address": STR, "content_type": STR, "content_id": STR, "event_type": STR,
                                 "position_seconds": I64, "occurred_at": I64},
    "rfid_scan_log": {"uid": STR, "mac_address": STR, "resolved_type": STR, "resolved_id": I64, "scanned_at": I64},
}


def _frame(table: str, columns: dict) -> pl.DataFrame:
    """``columns`` (numpy arrays or lists) as a frame with ``table``'s schema."""
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()}
    return pl.DataFrame(plain, schema=SCHEMAS[table])


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


def chat(ctx: DayContext) -> tuple[dict[str, pl.DataFrame], dict]:
    """Chat turns and the day's token usage row per chatting device."""
    rng, pop = ctx.rng, ctx.pop
    devs = ctx.active[rng.random(len(ctx.active)) < 0.88]
    e = pop.device_engagement[devs]
    n_sess = 1 + rng.poisson(0.3 + 1.2 * e)
    s_dev = np.repeat(devs, n_sess)
    s_start = ctx.times(s_dev)
    pairs = 1 + rng.poisson(3 + 6 * pop.device_engagement[s_dev])
    s_id = hex_ids(rng, len(s_dev), "lk_", 20)
    gaps = rng.integers(15 * US, 75 * US, size=int(pairs.sum()))
    # A session ends before local midnight, because the device reports its
    # token usage per local day; one that cannot (set up minutes before
    # midnight) is dropped.
    span = np.add.reduceat(gaps, np.cumsum(pairs) - pairs) + 8 * US
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
    per_device = {"chat_devices": devs, "sessions": n_sess, "last_turn_us": last_turn}
    return {"ai_agent_chat_history": history, "device_token_usage": usage}, per_device


def games(ctx: DayContext) -> dict[str, pl.DataFrame]:
    """Game sessions and their attempts; skill grows with practice."""
    rng, pop, cat = ctx.rng, ctx.pop, ctx.cat
    devs = ctx.active[rng.random(len(ctx.active)) < 0.2 + 0.3 * pop.device_engagement[ctx.active]]
    n_games = 1 + (rng.random(len(devs)) < 0.35)
    g_dev = np.repeat(devs, n_games)
    g = len(g_dev)
    g_type = pick(rng, vocab.GAME_TYPES, g)
    g_subject = np.array([
        SUBJECT_NAMES.index(vocab.GAME_SUBJECT[t]) if t != "quiz" else int(rng.integers(len(SUBJECT_NAMES)))
        for t in g_type
    ], dtype=np.int64)
    g_start = ctx.times(g_dev)
    n_att = rng.integers(5, 11, size=g)
    keep = ctx.after_setup(g_dev, g_start)
    g_dev, g_type, g_subject, g_start, n_att = g_dev[keep], g_type[keep], g_subject[keep], g_start[keep], n_att[keep]
    g = len(g_dev)
    a_game = np.repeat(np.arange(g), n_att)
    a_subject = g_subject[a_game]
    topics = [vocab.SUBJECTS[s] for s in SUBJECT_NAMES]
    a_topic = np.array([topics[s][i % len(topics[s])] for s, i in zip(a_subject, rng.integers(0, 60, size=len(a_game)))] or [], dtype=object)
    difficulty = rng.integers(1, 4, size=len(a_game))
    kid = pop.device_kid[g_dev][a_game]
    skill = np.where(kid >= 0, pop.kid_skill[np.maximum(kid, 0), a_subject], 0.6)
    practice = np.clip((ctx.day.toordinal() - ctx.first_day[g_dev][a_game]) / 120, 0, 1)
    p = np.clip(skill + 0.15 * practice - 0.08 * (difficulty - 2), 0.05, 0.97)
    correct = rng.random(len(a_game)) < p
    attempted = _within(g_start, n_att, rng.integers(4 * US, 25 * US, size=len(a_game)))

    from_bank = rng.random(len(a_game)) < 0.45
    q_id = np.full(len(a_game), None, dtype=object)
    q_key = np.array([f"txt:{h:08x}" for h in rng.integers(0, 2**32, size=len(a_game))], dtype=object)
    pick_idx = rng.integers(0, 8, size=len(a_game))
    for i in np.flatnonzero(from_bank):
        ids, codes = cat.question_ids[(SUBJECT_NAMES[a_subject[i]], a_topic[i])]
        q_id[i], q_key[i] = int(ids[pick_idx[i]]), codes[pick_idx[i]]

    session_id = hex_ids(rng, g, "gs_", 20)
    last_attempt = attempted[np.cumsum(n_att) - 1]
    completed = rng.random(g) < 0.85
    ended = np.where(completed, last_attempt + rng.integers(5 * US, 40 * US, size=g), -1)
    kid_g = pop.device_kid[g_dev]
    kid_on_session = (kid_g >= 0) & (rng.random(g) < 0.9)
    sessions = _frame("analytics_game_sessions", {
        "session_id": session_id,
        "mac_address": pop.device_mac[g_dev],
        "kid_id": [int(pop.kid_id[k]) if on else None for k, on in zip(kid_g, kid_on_session)],
        "game_type": g_type,
        "started_at": g_start,
        "ended_at": [int(x) if x >= 0 else None for x in ended],
        "total_questions": n_att.astype(np.int64),
        "correct_answers": np.add.reduceat(correct.astype(np.int64), np.cumsum(n_att) - n_att),
        "created_at": g_start,
    })
    response = rng.integers(800, 15000, size=len(a_game))
    attempts = _frame("analytics_game_attempts", {
        "session_id": session_id[a_game],
        "mac_address": pop.device_mac[g_dev][a_game],
        "question_id": q_id,
        "question_key": q_key,
        "subject": np.asarray(SUBJECT_NAMES, dtype=object)[a_subject],
        "topic": a_topic,
        "difficulty": difficulty,
        "is_correct": correct,
        "response_time_ms": [int(r) if keep else None for r, keep in zip(response, rng.random(len(a_game)) < 0.92)],
        "attempted_at": attempted,
    })
    return {"analytics_game_sessions": sessions, "analytics_game_attempts": attempts}


def media(ctx: DayContext) -> dict[str, pl.DataFrame]:
    """Stories, songs and textbook chapters played, then completed, paused or skipped."""
    rng, pop, cat = ctx.rng, ctx.pop, ctx.cat
    devs = ctx.active[rng.random(len(ctx.active)) < 0.25 + 0.35 * pop.device_engagement[ctx.active]]
    plays = 1 + rng.poisson(0.7, size=len(devs))
    p_dev = np.repeat(devs, plays)
    n = len(p_dev)
    kind = rng.choice(3, size=n, p=[0.55, 0.4, 0.05])
    s_i = rng.integers(0, len(cat.story_ids), size=n)
    m_i = rng.integers(0, len(cat.music_ids), size=n)
    c_i = rng.integers(0, len(cat.textbook_chapter_ids), size=n)
    content_id = np.where(kind == 0, cat.story_ids[s_i], np.where(kind == 1, cat.music_ids[m_i], cat.textbook_chapter_ids[c_i]))
    length = np.where(kind == 0, cat.story_seconds[s_i], np.where(kind == 1, cat.music_seconds[m_i], 300))
    start = ctx.times(p_dev)
    outcome = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])  # complete, pause, skip
    listened = np.where(outcome == 0, length, np.where(outcome == 1, rng.integers(20, np.maximum(length, 21)), rng.integers(2, 25, size=n)))
    keep = ctx.after_setup(p_dev, start)
    p_dev, kind, content_id, start, outcome, listened = p_dev[keep], kind[keep], content_id[keep], start[keep], outcome[keep], listened[keep]
    n = len(p_dev)
    mac = pop.device_mac[p_dev]
    ctype = np.asarray(["story", "music", "textbook"], dtype=object)[kind]
    frame = _frame("analytics_media_playback", {
        "mac_address": np.concatenate([mac, mac]),
        "content_type": np.concatenate([ctype, ctype]),
        "content_id": np.concatenate([content_id, content_id]),
        "event_type": np.concatenate([np.full(n, "play", dtype=object), np.asarray(["complete", "pause", "skip"], dtype=object)[outcome]]),
        "position_seconds": np.concatenate([np.zeros(n, dtype=np.int64), listened.astype(np.int64)]),
        "occurred_at": np.concatenate([start, start + listened.astype(np.int64) * US]),
    })
    return {"analytics_media_playback": frame}


def scans(ctx: DayContext) -> dict[str, pl.DataFrame]:
    """RFID card taps; a few cards are unknown and resolve to nothing."""
    rng, pop, cat = ctx.rng, ctx.pop, ctx.cat
    candidates = ctx.active[pop.device_has_cards[ctx.active]]
    devs = candidates[rng.random(len(candidates)) < 0.35]
    taps = 1 + rng.poisson(0.8, size=len(devs))
    s_dev = np.repeat(devs, taps)
    n = len(s_dev)
    card = rng.integers(0, len(cat.card_uids), size=n)
    # Most taps are mapped cards; some are printed pack cards that resolve
    # through an rfid_series UID range; a few are unknown and resolve to nothing.
    source = rng.choice(3, size=n, p=[0.84, 0.10, 0.06])  # mapped, series, unknown
    series = rng.integers(0, cat.series_count, size=n)
    in_range = rng.integers(0, 256, size=n)
    unknown_uid = rng.integers(0, 2**40, size=n)
    uid = [cat.card_uids[c] if k == 0 else f"05{s:02X}00000000{r:02X}" if k == 1 else f"04{u:012X}"
           for k, c, s, r, u in zip(source, card, series, in_range, unknown_uid)]
    resolved_type = [cat.card_resolved_type[c] if k == 0 else "series" if k == 1 else None for k, c in zip(source, card)]
    resolved_id = [int(cat.card_resolved_id[c]) if k == 0 else int(s) + 1 if k == 1 else None
                   for k, c, s in zip(source, card, series)]
    scanned = ctx.times(s_dev)
    keep = ctx.after_setup(s_dev, scanned)
    frame = _frame("rfid_scan_log", {
        "uid": uid,
        "mac_address": pop.device_mac[s_dev],
        "resolved_type": resolved_type,
        "resolved_id": resolved_id,
        "scanned_at": scanned,
    }).filter(pl.Series(keep, dtype=pl.Boolean))
    return {"rfid_scan_log": frame}


def kid_activity(ctx: DayContext, tables: dict[str, pl.DataFrame], chat_devices: np.ndarray, sessions: np.ndarray,
                 last_turn: np.ndarray) -> pl.DataFrame:
    """Per-child activity events derived from the day's chats, games and stories."""
    pop = ctx.pop
    rows: dict[str, list] = defaultdict(list)
    kid_of_mac = {m: pop.kid_id[k] for m, k in zip(pop.device_mac, pop.device_kid) if k >= 0}
    for dev, n, at in zip(chat_devices, sessions, last_turn):
        if pop.device_kid[dev] >= 0:
            rows["kid_id"].append(int(pop.kid_id[pop.device_kid[dev]]))
            rows["activity_type"].append("chat")
            rows["details"].append(json.dumps({"sessions": int(n)}))
            rows["occurred_at"].append(int(at))
    done = tables["analytics_game_sessions"].filter(pl.col("ended_at").is_not_null())
    for mac, sid, correct, total, ended in done.select("mac_address", "session_id", "correct_answers", "total_questions", "ended_at").iter_rows():
        if mac in kid_of_mac:
            rows["kid_id"].append(int(kid_of_mac[mac]))
            rows["activity_type"].append("game_completed")
            rows["details"].append(json.dumps({"session_id": sid, "score": f"{correct}/{total}"}))
            rows["occurred_at"].append(ended)
    stories = tables["analytics_media_playback"].filter((pl.col("event_type") == "complete") & (pl.col("content_type") == "story"))
    for mac, content, at in stories.select("mac_address", "content_id", "occurred_at").iter_rows():
        if mac in kid_of_mac:
            rows["kid_id"].append(int(kid_of_mac[mac]))
            rows["activity_type"].append("story_completed")
            rows["details"].append(json.dumps({"content_id": content}))
            rows["occurred_at"].append(at)
    schema = {"kid_id": pl.Int64, "activity_type": pl.String, "details": pl.String, "occurred_at": pl.Int64}
    return pl.DataFrame(dict(rows), schema=schema)


TIME_COLUMNS = {
    "ai_agent_chat_history": ["created_at"],
    "device_token_usage": ["created_at", "update_date"],
    "analytics_game_sessions": ["started_at", "ended_at", "created_at"],
    "analytics_game_attempts": ["attempted_at"],
    "analytics_media_playback": ["occurred_at"],
    "rfid_scan_log": ["scanned_at"],
    "kid_activity_log": ["occurred_at"],
    "device_memories": ["updated_at"],
}


EVENT_TIMES = {
    "ai_agent_chat_history": "created_at",
    "analytics_game_attempts": "attempted_at",
    "analytics_media_playback": "occurred_at",
    "rfid_scan_log": "scanned_at",
}


def generate_days(seed: int, pop: Population, cat: Catalogue, days: list[dt.date], states: np.ndarray,
                  first_day: np.ndarray | None = None) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """Event rows for ``days`` (columns of ``states``), and each active device's last event (MAC -> UTC µs)."""
    offsets = utc_offsets(TZ_NAMES, days)
    tz = pop.device_tz()
    earliest = (pop.device_signup + 300) * US
    first_day = signup_days(pop) if first_day is None else first_day
    parts: dict[str, list[pl.DataFrame]] = defaultdict(list)
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
        tables, per_device = chat(ctx)
        tables |= games(ctx)
        tables |= media(ctx)
        tables |= scans(ctx)
        tables["kid_activity_log"] = kid_activity(ctx, tables, per_device["chat_devices"], per_device["sessions"],
                                                  per_device["last_turn_us"])
        tables["device_memories"] = daily_files(day_stream(seed, "memories", day), pop, day, per_device["chat_devices"],
                                                per_device["sessions"], ctx.midnight_us)
        for name, frame in tables.items():
            parts[name].append(frame)
    out = {}
    for name, frames in parts.items():
        frame = pl.concat(frames, how="vertical_relaxed")
        out[name] = frame.with_columns([pl.col(c).cast(pl.Datetime("us", "UTC")) for c in TIME_COLUMNS[name]])
    seen = pl.concat([out[t].select(pl.col("mac_address"), pl.col(c).cast(pl.Int64).alias("at"))
                      for t, c in EVENT_TIMES.items() if t in out])
    last_seen = dict(seen.group_by("mac_address").agg(pl.col("at").max()).iter_rows()) if seen.height else {}
    return out, last_seen
