"""Assemble a generated dataset: every table's new rows, plus the updates and
deletes an append applies before them and the app's own upserts after them,
ready for :func:`pipelines.generator._load`."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipelines.generator import app_tables, cognova, messy
from pipelines.generator.activity import Events, activity_states, generate_days, signup_days
from pipelines.generator.catalogue import LLM_WEIGHTS, build_catalogue
from pipelines.generator.fleet import ADMIN_USER_IDS, FIRST_PARENT_ID, Population, build_population, population_tables, ts
from pipelines.generator.memories import PlantedFact, personality_files
from pipelines.generator.randomness import day_stream, epoch_seconds, hex_ids, stream

US = 1_000_000
CHEEKO_LOAD_ORDER = [
    "sys_user", "sys_user_token", "parent_profile", "user_question_quota", "openclaw_pair_tokens", "kid_profile",
    "ai_model_provider", "ai_model_config", "ai_tts_voice", "ai_agent_template", "ai_agent", "ai_device",
    "device_memories", "device_token_usage", "ai_agent_chat_history", "ai_ota", "ai_music", "ai_story", "ai_textbook",
    "ai_textbook_chapter", "content_library", "device_playlist", "music_playlist", "story_playlist", "rfid_pack",
    "rfid_content_pack", "rfid_question", "rfid_question_pack", "rfid_series", "content_item", "rfid_card_mapping",
    "ai_rfid_tag", "ai_rfid_scan_log", "rfid_tags", "rfid_scan_log", "kid_activity_log", "analytics_game_sessions",
    "analytics_game_attempts", "analytics_media_playback", "analytics_streaks", "analytics_user_progress",
    "kid_learning_progress", "game_session", "sys_params", "sys_dict_type", "sys_dict_data", "email_report_config",
    "email_report_history", "memory_chunks",
]
COGNOVA_LOAD_ORDER = [
    "user", "session", "account", "verification", "projects", "tasks", "reminders", "documents", "conversations",
    "conversation_messages", "cron_agents", "cron_agent_runs", "secrets", "hook_events", "memory_chunks",
    "token_usage", "user_settings",
]
META_PARAM = "warehouse.generator"  # sys_params row that records the dataset's parameters
SIGNUP_SHARE_IN_WINDOW = 0.45  # of the fleet, signing up during the generated window
# Local days end up to 12 hours after UTC midnight (UTC-12), so a dataset
# ending on day E has events up to E+1 12:00 UTC: its as-of time.
HORIZON_HOURS_AFTER_END = 36


def horizon(end: dt.date) -> int:
    """Epoch seconds after which a dataset ending on ``end`` has no (clean) rows."""
    return epoch_seconds(end) + HORIZON_HOURS_AFTER_END * 3600


@dataclass
class Dataset:
    """New rows per (database, table), statements to run before and after them, and what was planted."""

    start: dt.date
    end: dt.date
    meta: dict
    tables: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    statements: dict[str, list[tuple[str, object]]] = field(default_factory=dict)
    after: dict[str, list[tuple[str, object]]] = field(default_factory=dict)
    facts: list[PlantedFact] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _initial_population(meta: dict, n_llms: int) -> Population:
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["original_end"])
    return build_population(
        stream(meta["seed"], "population"), meta["devices"],
        signup_from=epoch_seconds(start), signup_to=epoch_seconds(end + dt.timedelta(days=1)) - 3600,
        existing_share=1 - SIGNUP_SHARE_IN_WINDOW, first_parent_id=FIRST_PARENT_ID, first_kid_id=1,
        n_llms=n_llms, llm_weights=LLM_WEIGHTS, taken_macs=set(),
    )


def _signups(meta: dict, pop: Population, day: dt.date, n_llms: int) -> Population:
    """Devices (with new parents and kids) that sign up on an appended ``day``."""
    rng = day_stream(meta["seed"], "signups", day)
    count = int(rng.poisson(meta["devices"] * SIGNUP_SHARE_IN_WINDOW / meta["days"]))
    return build_population(
        rng, count, signup_from=epoch_seconds(day), signup_to=epoch_seconds(day) + 86400 - 3600, existing_share=0.0,
        first_parent_id=int(pop.parent_id.max()) + 1, first_kid_id=int(pop.kid_id.max()) + 1,
        n_llms=n_llms, llm_weights=LLM_WEIGHTS, taken_macs=set(pop.device_mac),
    )


def _months(first: int, last: int) -> list[tuple[str, int, int]]:
    """``(YYYY-MM, month start, month end)`` for every calendar month from
    epoch second ``first`` to ``last`` (bounds in epoch seconds)."""
    a = dt.datetime.fromtimestamp(first, dt.UTC).date().replace(day=1)
    b = dt.datetime.fromtimestamp(last - 1, dt.UTC).date()
    out = []
    while a <= b:
        following = (a + dt.timedelta(days=32)).replace(day=1)
        out.append((a.strftime("%Y-%m"), epoch_seconds(a), epoch_seconds(following) - 1))
        a = following
    return out


def _people_tables(seed: int, pop: Population, cat, now: int, key: int) -> dict[str, pl.DataFrame]:
    tables = population_tables(pop, stream(seed, "people", key), llm_ids=cat.llm_ids, voice_ids=cat.voice_ids, now=now)
    rng = stream(seed, "people-extra", key)
    quota = [(int(uid), month, int(rng.poisson(18)), int(rng.choice([0, 0, 0, 50])), max(int(created), first), min(last, now - 1))
             for uid, created in zip(pop.parent_id, pop.parent_created) for month, first, last in _months(int(created), now)]
    tables["user_question_quota"] = pl.DataFrame(
        quota, schema=["user_id", "month_key", "questions_used", "extra_purchased", "created_at", "updated_at"], orient="row",
    ).with_columns(pl.col("created_at", "updated_at").cast(pl.Int64) * US).with_columns(
        pl.col("created_at", "updated_at").cast(pl.Datetime("us", "UTC")))
    return tables


def _playlists(rng: np.random.Generator, pop: Population, cat, library: pl.DataFrame, horizon_s: int) -> dict[str, pl.DataFrame]:
    """Playlists for about a third of the devices, made the day after setup."""
    devs = np.flatnonzero(rng.random(pop.n_devices) < 0.3)
    music, story, device = [], [], []
    for d in devs:
        mac, at = str(pop.device_mac[d]), min(int(pop.device_signup[d] + 86400), horizon_s) * US
        for pos, m in enumerate(rng.choice(len(cat.music_ids), size=4, replace=False)):
            music.append((mac, str(cat.music_ids[m]), pos + 1, at, at))
        for pos, s in enumerate(rng.choice(len(cat.story_ids), size=3, replace=False)):
            story.append((mac, str(cat.story_ids[s]), pos + 1, at, at))
        for pos, c in enumerate(rng.choice(np.flatnonzero(library["status"].to_numpy() == 1), size=3, replace=False)):
            device.append((None, mac, int(library["id"][int(c)]), str(library["content_type"][int(c)]), pos + 1, at))
    stamp = pl.Datetime("us", "UTC")
    return {
        "music_playlist": pl.DataFrame(music, schema={"mac_address": pl.String, "music_id": pl.String, "position": pl.Int64,
                                                      "created_at": pl.Int64, "updated_at": pl.Int64}, orient="row")
        .with_columns(pl.col("created_at", "updated_at").cast(stamp)),
        "story_playlist": pl.DataFrame(story, schema={"mac_address": pl.String, "story_id": pl.String, "position": pl.Int64,
                                                      "created_at": pl.Int64, "updated_at": pl.Int64}, orient="row")
        .with_columns(pl.col("created_at", "updated_at").cast(stamp)),
        "device_playlist": pl.DataFrame(device, schema={"device_id": pl.Int64, "mac_address": pl.String, "content_id": pl.Int64,
                                                        "playlist_type": pl.String, "position": pl.Int64, "created_at": pl.Int64},
                                        orient="row").with_columns(pl.col("created_at").cast(stamp)),
    }


def _legacy(rng: np.random.Generator, pop: Population, cat, before: int) -> dict[str, pl.DataFrame]:
    """History from the systems the analytics tables replaced: dated before the window."""
    n = min(500, pop.n_devices * 2)
    dev = rng.integers(0, pop.n_devices, size=n)
    started = before - rng.integers(86400, 200 * 86400, size=n)
    total = rng.integers(5, 11, size=n)
    correct = rng.integers(0, total + 1)
    seconds = rng.integers(60, 900, size=n)
    has_id = rng.random(n) < 0.7  # the oldest games kept no session id
    game = pl.DataFrame({
        "mac_address": pop.device_mac[dev], "game_type": rng.choice(["quiz", "riddles", "math_challenge"], size=n),
        "session_id": [sid if keep else None for sid, keep in zip(hex_ids(rng, n, "legacy_", 16), has_id)],
        "started_at": ts(started), "ended_at": ts(started + seconds), "duration_seconds": seconds,
        "total_attempts": total, "correct_attempts": correct,
        "metadata": [f'{{"score": {round(100 * c / t)}}}' for c, t in zip(correct, total)], "created_at": ts(started),
    })
    scan = pl.DataFrame({
        "tag_uid": cat.card_uids[rng.integers(0, 50, size=n)], "mac_address": pop.device_mac[dev],
        "scan_result": rng.choice(["ok", "ok", "ok", "unknown_tag"], size=n), "scanned_at": ts(started + 60),
    })
    return {"game_session": game, "ai_rfid_scan_log": scan}


def _admins(created: int) -> pl.DataFrame:
    return pl.DataFrame({
        "id": list(ADMIN_USER_IDS), "username": ["admin", "ops", "support"],
        "password": ["$2b$10$adminhashadminhashadminhash", "$2b$10$opshashopshashopshash12", "$2b$10$supporthashsupporthash1"],
        "email": ["admin@cheeko.example", "ops@cheeko.example", "support@cheeko.example"],
        "nickname": ["Admin", "Ops", "Support"], "status": [1, 1, 1], "role": ["admin", "admin", "support"],
        "created_at": ts(np.full(3, created)), "updated_at": ts(np.full(3, created)),
    })


def _sys_params(meta: dict, created: int) -> pl.DataFrame:
    params = [
        ("server.websocket", "wss://ws.cheeko.example/ws", "string", 1, "Device websocket endpoint"),
        ("server.ota", "https://ota.cheeko.example/", "string", 1, "OTA endpoint"),
        ("quota.monthly_questions", "100", "int", 1, "Free RFID questions per month"),
        ("device.max_per_user", "5", "int", 2, "Devices a parent may register"),
        (META_PARAM, json.dumps(meta), "json", 2, "Parameters of the generated dataset (warehouse generator)"),
    ]
    return pl.DataFrame({
        "param_code": [p[0] for p in params], "param_value": [p[1] for p in params], "value_type": [p[2] for p in params],
        "param_type": [p[3] for p in params], "remark": [p[4] for p in params],
        "created_at": ts(np.full(len(params), created)), "updated_at": ts(np.full(len(params), created)),
    })


def _cheeko_events(data: Dataset, seed: int, pop: Population, cat, days: list[dt.date], states: np.ndarray,
                   first_day: np.ndarray) -> Events:
    events = generate_days(seed, pop, cat, days, states, first_day)
    for name, frame in events.tables.items():
        data.tables[("cheeko", name)] = frame
    return events


def _cognova_days(data: Dataset, seed: int, days: list[dt.date], project_ids: list[str], agent_ids: list[str], now_us: int) -> None:
    parts: dict[str, list[pl.DataFrame]] = {}
    for day in days:
        for name, frame in cognova.day_tables(seed, day, project_ids, agent_ids, now_us).items():
            parts.setdefault(name, []).append(frame)
    for name, frames in parts.items():
        data.tables[("cognova", name)] = pl.concat(frames, how="diagonal_relaxed")


def build_initial(seed: int, devices: int, days: int, end: dt.date, is_messy: bool, progress=print) -> Dataset:
    """A whole dataset: catalogue, fleet, ``days`` days of activity, Cognova."""
    start = end - dt.timedelta(days=days - 1)
    meta = {"seed": seed, "devices": devices, "days": days, "start": start.isoformat(), "end": end.isoformat(),
            "original_end": end.isoformat(), "messy": is_messy}
    data = Dataset(start=start, end=end, meta=meta)
    now = epoch_seconds(end + dt.timedelta(days=1))
    created = epoch_seconds(start) - 300 * 86400
    cat = build_catalogue(stream(seed, "catalogue"), created)
    pop = _initial_population(meta, len(cat.llm_ids))
    for name, frame in cat.tables.items():
        data.tables[("cheeko", name)] = frame
    people = _people_tables(seed, pop, cat, now, 0)
    people["sys_user"] = pl.concat([_admins(created), people["sys_user"]], how="diagonal_relaxed")
    for name, frame in people.items():
        data.tables[("cheeko", name)] = frame
    data.tables |= {("cheeko", k): v for k, v in _playlists(stream(seed, "playlists"), pop, cat, cat.tables["content_library"], horizon(end)).items()}
    data.tables |= {("cheeko", k): v for k, v in _legacy(stream(seed, "legacy"), pop, cat, epoch_seconds(start)).items()}
    data.tables[("cheeko", "sys_params")] = _sys_params(meta, created)

    progress(f"  activity for {pop.n_devices} devices over {days} days")
    day_list = _days(start, end)
    first_day = signup_days(pop)
    states = activity_states(seed, pop, day_list, first_day)
    events = _cheeko_events(data, seed, pop, cat, day_list, states, first_day)
    _set_last_connected(data, events.last_seen)
    app, data.faults["app_counter_drift"] = app_tables.initial_tables(events.facts, app_tables.devices(pop, seed), end, seed)
    data.tables |= {("cheeko", name): frame for name, frame in app.items()}
    personality, data.facts = personality_files(seed, stream(seed, "personality"), pop, np.arange(pop.n_devices), horizon(end))
    data.tables[("cheeko", "device_memories")] = pl.concat([personality, data.tables[("cheeko", "device_memories")]])

    progress("  cognova")
    static, project_ids, agent_ids = cognova.static_tables(seed, start)
    for name, frame in static.items():
        data.tables[("cognova", name)] = frame
    _cognova_days(data, seed, day_list, project_ids, agent_ids, now * US)
    _set_agent_last_runs(data)
    if is_messy:
        _inject_faults(data, seed, pop, end)
    return data


def _set_last_connected(data: Dataset, last_seen: dict[str, int]) -> None:
    """``ai_device.last_connected_at``: the device's last event, else its setup time."""
    key = ("cheeko", "ai_device")
    devices = data.tables[key]
    last = [last_seen.get(mac, int(created.timestamp() * US)) for mac, created in devices.select("mac_address", "create_date").iter_rows()]
    data.tables[key] = devices.with_columns(pl.Series("last_connected_at", last, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")))


def _set_agent_last_runs(data: Dataset) -> None:
    last = cognova.agent_last_runs(data.tables[("cognova", "cron_agent_runs")])
    agents = data.tables[("cognova", "cron_agents")].drop("last_run_at", "last_status")
    data.tables[("cognova", "cron_agents")] = agents.join(last, left_on="id", right_on="agent_id", how="left")


def _inject_faults(data: Dataset, seed: int, pop: Population | None, end: dt.date) -> None:
    """--messy: damage the new rows (and, for a fresh dataset, add hostile memory files and a day of Cognova
    messages none of which reported a cost)."""
    rng = stream(seed, "messy", end.toordinal())
    cheeko = {t: f for (db, t), f in data.tables.items() if db == "cheeko"}
    window = (epoch_seconds(data.start), epoch_seconds(data.end + dt.timedelta(days=1)))
    messy.inject(rng, cheeko, data.faults, window=window)
    if pop is not None:
        with_kid = [str(m) for m, k in zip(pop.device_mac, pop.device_kid) if k >= 0]
        bad, counts = messy.bad_memory_files(rng, with_kid[:5], end)
        cheeko["device_memories"] = pl.concat([cheeko["device_memories"], bad])
        data.faults.update({k: data.faults.get(k, 0) + v for k, v in counts.items()})
    data.tables |= {("cheeko", t): f for t, f in cheeko.items()}
    cognova_tables = {t: f for (db, t), f in data.tables.items() if db == "cognova"}
    messy.inject_cognova(stream(seed, "messy-cognova", end.toordinal()), cognova_tables, data.faults,
                         whole_day=pop is not None)
    data.tables |= {("cognova", t): f for t, f in cognova_tables.items()}


def build_append(meta: dict, k: int, progress=print) -> Dataset:
    """``k`` more days after ``meta['end']``: events, signups, updates, deletes."""
    seed = meta["seed"]
    start, prev_end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    original_end = dt.date.fromisoformat(meta["original_end"])
    new_end = prev_end + dt.timedelta(days=k)
    new_days = _days(prev_end + dt.timedelta(days=1), new_end)
    data = Dataset(start=new_days[0], end=new_end, meta={**meta, "end": new_end.isoformat()})
    now = epoch_seconds(new_end + dt.timedelta(days=1))
    cat = build_catalogue(stream(seed, "catalogue"), epoch_seconds(start) - 300 * 86400)
    pop = _initial_population(meta, len(cat.llm_ids))
    for day in _days(original_end + dt.timedelta(days=1), prev_end):
        pop = pop.extend(_signups(meta, pop, day, len(cat.llm_ids)))
    first_new = pop.n_devices
    for day in new_days:
        joined = _signups(meta, pop, day, len(cat.llm_ids))
        if joined.n_devices:
            for name, frame in _people_tables(seed, joined, cat, now, day.toordinal()).items():
                key = ("cheeko", name)
                data.tables[key] = pl.concat([data.tables[key], frame], how="diagonal_relaxed") if key in data.tables else frame
        pop = pop.extend(joined)
    progress(f"  {pop.n_devices - first_new} new device(s); activity for {len(new_days)} day(s)")

    all_days = _days(start, new_end)
    first_day = signup_days(pop)
    states = activity_states(seed, pop, all_days, first_day)[:, -len(new_days):]
    events = _cheeko_events(data, seed, pop, cat, new_days, states, first_day)
    last_seen = events.last_seen
    data.after["cheeko"], data.faults["app_counter_drift"] = app_tables.append_statements(
        events.facts, app_tables.devices(pop, seed), new_end, seed)
    personality, data.facts = personality_files(seed, stream(seed, "personality", new_end.toordinal()), pop,
                                                np.arange(first_new, pop.n_devices), horizon(new_end))
    data.tables[("cheeko", "device_memories")] = pl.concat([personality, data.tables[("cheeko", "device_memories")]])
    if ("cheeko", "ai_device") in data.tables:
        _set_last_connected(data, last_seen)

    _, project_ids, agent_ids = cognova.static_tables(seed, start)
    _cognova_days(data, seed, new_days, project_ids, agent_ids, now * US)
    data.statements = _append_statements(seed, pop, first_new, last_seen, new_days, data)
    if meta.get("messy"):
        _inject_faults(data, seed, None, new_end)
    return data


def _append_statements(seed: int, pop: Population, first_new: int, last_seen: dict[str, int], new_days: list[dt.date],
                       data: Dataset) -> dict[str, list[tuple[str, object]]]:
    """Updates and deletes an append applies to existing rows, before its new rows.

    Rows are picked by a keyed hash of their id (``md5(id || key)``), so the
    choice is deterministic for a given seed and day without reading them first.
    """
    end = new_days[-1]
    key = f"{seed}:{end.isoformat()}"
    at = dt.datetime.combine(end, dt.time(12, 0), dt.UTC)
    existing = {str(mac) for mac in pop.device_mac[:first_new]}
    device_updates = [(dt.datetime.fromtimestamp(t / US, dt.UTC), at, mac) for mac, t in sorted(last_seen.items()) if mac in existing]
    months = sorted({day.strftime("%Y-%m") for day in new_days})
    cheeko = [
        ("UPDATE ai_device SET last_connected_at = %s, update_date = %s WHERE mac_address = %s", device_updates),
        # Parents who were already here get their quota row for a month the append reaches.
        ("INSERT INTO user_question_quota (user_id, month_key, questions_used, extra_purchased, created_at, updated_at) "
         "SELECT p.user_id, m.month, 0, 0, %s, %s FROM parent_profile p CROSS JOIN unnest(%s::text[]) AS m(month) "
         "ON CONFLICT (user_id, month_key) DO NOTHING", (at, at, months)),
        ("UPDATE parent_profile SET language = CASE language WHEN 'en' THEN 'hi' ELSE 'en' END, updated_at = %s "
         "WHERE id IN (SELECT id FROM parent_profile ORDER BY md5(id::text || %s) LIMIT 3)", (at, key)),
        ("UPDATE kid_profile SET interests = array_append(interests, 'volcanoes'), updated_at = %s "
         "WHERE id IN (SELECT id FROM kid_profile ORDER BY md5(id::text || %s) LIMIT 3)", (at, key)),
        # An edit to the last section only: the planted facts above keep their lines.
        ("UPDATE device_memories SET content = content || %s, updated_at = %s "
         "WHERE id IN (SELECT id FROM device_memories WHERE file_type = 'personality' ORDER BY md5(id::text || %s) LIMIT 3)",
         ("Lately also curious about how robots work.\n", at, key)),
        ("DELETE FROM device_memories WHERE id IN "
         "(SELECT id FROM device_memories WHERE file_type = 'daily' ORDER BY md5(id::text || %s) LIMIT 2)", (key,)),
        ("UPDATE ai_story SET title = title || ' (new recording)', updated_at = %s "
         "WHERE id IN (SELECT id FROM ai_story ORDER BY md5(id::text || %s) LIMIT 1)", (at, key)),
        ("DELETE FROM device_playlist WHERE id IN (SELECT id FROM device_playlist ORDER BY md5(id::text || %s) LIMIT 3)", (key,)),
        # Only a retired item (status 0): nothing plays those, so no playback is left pointing nowhere.
        ("DELETE FROM content_library WHERE id IN "
         "(SELECT id FROM content_library WHERE status = 0 ORDER BY md5(id::text || %s) LIMIT 1)", (key,)),
        ("DELETE FROM sys_dict_data WHERE id IN (SELECT id FROM sys_dict_data ORDER BY md5(id::text || %s) LIMIT 1)", (key,)),
        ("UPDATE sys_params SET param_value = %s, updated_at = %s WHERE param_code = %s",
         (json.dumps(data.meta), at, META_PARAM)),
    ]
    runs = data.tables.get(("cognova", "cron_agent_runs"))
    last_runs = [] if runs is None else [
        (r["last_run_at"], r["last_status"], at, r["agent_id"]) for r in cognova.agent_last_runs(runs).iter_rows(named=True)
    ]
    cognova_statements = [
        ("UPDATE tasks SET status = 'done', completed_at = %s, modified_at = %s, modified_by = %s "
         "WHERE id IN (SELECT id FROM tasks WHERE status <> 'done' AND deleted_at IS NULL ORDER BY md5(id::text || %s) LIMIT 5)",
         (at, at, cognova.USER_ID, key)),
        ("UPDATE tasks SET deleted_at = %s, deleted_by = %s, modified_at = %s "
         "WHERE id IN (SELECT id FROM tasks WHERE deleted_at IS NULL ORDER BY md5(id::text || %s) LIMIT 1)",
         (at, cognova.USER_ID, at, key)),
        ("UPDATE documents SET content = content || %s, modified_at = %s, modified_by = %s "
         "WHERE id IN (SELECT id FROM documents WHERE deleted_at IS NULL ORDER BY md5(id::text || %s) LIMIT 2)",
         ("\n\nUpdated.", at, cognova.USER_ID, key)),
        ("DELETE FROM reminders WHERE id IN (SELECT id FROM reminders ORDER BY md5(id::text || %s) LIMIT 1)", (key,)),
        ("UPDATE reminders SET notified = true WHERE NOT notified AND remind_at <= %s", (at,)),
        ("UPDATE cron_agents SET last_run_at = %s, last_status = %s, updated_at = %s WHERE id = %s", last_runs),
    ]
    return {"cheeko": cheeko, "cognova": cognova_statements}
