"""Cognova's single user: conversations, cron agents and their runs, tasks,
reminders, documents, memory, hook events and token costs."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.randomness import day_stream, epoch_seconds, hex_ids, pick, uuids

US = 1_000_000
USER_ID = "usr_7f3a9c2e51"
HOOK_SCRIPT = "~/.claude/hooks/guard.sh"
TIME_COLUMNS = {
    "conversations": ["started_at", "ended_at"],
    "conversation_messages": ["created_at"],
    "cron_agent_runs": ["started_at", "completed_at"],
    "token_usage": ["created_at"],
    "hook_events": ["created_at"],
    "tasks": ["due_date", "created_at", "modified_at", "completed_at", "deleted_at"],
    "reminders": ["remind_at", "created_at"],
    "documents": ["synced_at", "created_at", "modified_at", "deleted_at"],
    "memory_chunks": ["last_accessed_at", "created_at", "expires_at"],
}


def _ts(values: list) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))


def static_tables(seed: int, start: dt.date) -> tuple[dict[str, pl.DataFrame], list[str], list[str]]:
    """User, auth rows, settings, secrets, projects and cron agents (created before ``start``)."""
    rng = day_stream(seed, "cognova-static", start)
    created = (epoch_seconds(start) - 120 * 86400) * US
    t: dict[str, pl.DataFrame] = {}
    t["user"] = pl.DataFrame({"id": [USER_ID], "name": ["Maya Krishnan"], "email": ["maya@cognova.example"],
                              "email_verified": [True], "image": [None], "created_at": _ts([created]), "updated_at": _ts([created])})
    t["session"] = pl.DataFrame({
        "id": list(hex_ids(rng, 3, "ses_", 16)), "user_id": [USER_ID] * 3, "token": list(hex_ids(rng, 3, "bsess_", 48)),
        "expires_at": _ts([created + k * 7 * 86400 * US for k in (1, 2, 30)]),
        "ip_address": ["127.0.0.1", "192.0.2.10", "198.51.100.7"], "user_agent": ["Mozilla/5.0 (Macintosh)", "Mozilla/5.0 (X11)", "Cognova-CLI/1.2"],
        "created_at": _ts([created] * 3), "updated_at": _ts([created] * 3)})
    t["account"] = pl.DataFrame({
        "id": ["acc_cred", "acc_github"], "user_id": [USER_ID] * 2, "account_id": [USER_ID, "gh_4821"],
        "provider_id": ["credential", "github"], "access_token": [None, hex_ids(rng, 1, "gho_", 36)[0]],
        "refresh_token": [None, hex_ids(rng, 1, "ghr_", 36)[0]], "access_token_expires_at": _ts([None, created + 8 * 3600 * US]),
        "refresh_token_expires_at": _ts([None, created + 180 * 86400 * US]), "scope": [None, "read:user repo"],
        "id_token": [None, hex_ids(rng, 1, "eyJhbGciOi.", 60)[0]], "password": [hex_ids(rng, 1, "scrypt$", 64)[0], None],
        "created_at": _ts([created] * 2), "updated_at": _ts([created] * 2)})
    t["verification"] = pl.DataFrame({
        "id": ["ver_1", "ver_2"], "identifier": ["maya@cognova.example", "reset:maya@cognova.example"],
        "value": list(hex_ids(rng, 2, "vrf_", 32)), "expires_at": _ts([created + 3600 * US] * 2),
        "created_at": _ts([created] * 2), "updated_at": _ts([created] * 2)})
    t["user_settings"] = pl.DataFrame({"id": list(uuids(rng, 1)), "user_id": [USER_ID],
                                       "settings": [json.dumps({"theme": "dark", "timezone": "Europe/Berlin", "model": "claude-sonnet"})],
                                       "created_at": _ts([created]), "updated_at": _ts([created])})
    keys = ["GITHUB_TOKEN", "OPENAI_API_KEY", "GMAIL_APP_PASSWORD", "NOTION_TOKEN", "TODOIST_TOKEN"]
    t["secrets"] = pl.DataFrame({"id": list(uuids(rng, len(keys))), "key": keys,
                                 "encrypted_value": list(hex_ids(rng, len(keys), "gcm:", 64)), "iv": list(hex_ids(rng, len(keys), "", 24)),
                                 "description": [f"{k.split('_')[0].title()} credential" for k in keys],
                                 "created_at": _ts([created] * len(keys)), "updated_at": _ts([created] * len(keys)),
                                 "created_by": [USER_ID] * len(keys)})
    project_ids = list(uuids(rng, len(vocab.COGNOVA_PROJECTS)))
    deleted = [None] * (len(project_ids) - 1) + [created + 30 * 86400 * US]
    t["projects"] = pl.DataFrame({
        "id": project_ids, "name": [n for n, _ in vocab.COGNOVA_PROJECTS], "color": [c for _, c in vocab.COGNOVA_PROJECTS],
        "description": [None] * len(project_ids), "created_at": _ts([created] * len(project_ids)),
        "modified_at": _ts([created + 86400 * US] * len(project_ids)), "deleted_at": _ts(deleted),
        "created_by": [USER_ID] * len(project_ids), "modified_by": [USER_ID] * len(project_ids),
        "deleted_by": [USER_ID if d else None for d in deleted]})
    agent_ids = list(uuids(rng, len(vocab.COGNOVA_AGENTS)))
    t["cron_agents"] = pl.DataFrame({
        "id": agent_ids, "name": [a[0] for a in vocab.COGNOVA_AGENTS], "description": [a[2] for a in vocab.COGNOVA_AGENTS],
        "schedule": [a[1] for a in vocab.COGNOVA_AGENTS], "prompt": [a[2] for a in vocab.COGNOVA_AGENTS],
        "enabled": [name != "Reading digest" for name, *_ in vocab.COGNOVA_AGENTS], "max_turns": [50, 20, 80, 30, 40, 25],
        "max_budget_usd": [0.5, 0.2, 1.5, 0.3, 0.4, None], "last_run_at": _ts([None] * len(agent_ids)),
        "last_status": [None] * len(agent_ids), "created_at": _ts([created] * len(agent_ids)),
        "updated_at": _ts([created] * len(agent_ids)), "created_by": [USER_ID] * len(agent_ids)})
    return t, project_ids, agent_ids


def _run_times(schedule: str, day: dt.date) -> list[int]:
    """Minutes after UTC midnight at which a cron schedule fires on ``day``."""
    minute, hour, _, _, weekday = schedule.split()
    hours = range(24) if hour == "*" else [int(hour)]
    minutes = range(0, 60, int(minute[2:])) if minute.startswith("*/") else [int(minute)]
    if weekday != "*" and (day.isoweekday() % 7) != int(weekday):
        return []
    return [h * 60 + m for h in hours for m in minutes]


def day_tables(seed: int, day: dt.date, project_ids: list[str], agent_ids: list[str], now_us: int) -> dict[str, pl.DataFrame]:
    """Everything Cognova's user does on ``day`` (UTC)."""
    rng = day_stream(seed, "cognova", day)
    midnight = epoch_seconds(day) * US
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    busy = 1.0 if day.weekday() < 5 else 0.5

    for _ in range(rng.poisson(3.5 * busy)):
        conv_id = str(uuids(rng, 1)[0])
        session = str(hex_ids(rng, 1, "web_", 16)[0])
        title = str(pick(rng, vocab.CONVERSATION_TITLES, 1)[0])
        t = midnight + int(rng.integers(6 * 3600, 22 * 3600)) * US
        start, n_msgs, cost = t, 2 * int(rng.integers(1, 12)), 0.0
        hooks = rows["hook_events"]
        _hook(hooks, rng, "SessionStart", session, t)
        for k in range(n_msgs):
            t += int(rng.integers(5, 90)) * US
            m = rows["conversation_messages"]
            m["id"].append(str(uuids(rng, 1)[0]))
            m["conversation_id"].append(conv_id)
            role = "user" if k % 2 == 0 else "assistant"
            m["role"].append(role)
            m["content"].append(json.dumps([{"type": "text", "text": f"{title}: message {k + 1}"}]))
            if role == "assistant":
                c = round(float(rng.uniform(0.002, 0.08)), 4)
                d = int(rng.integers(800, 20000))
                cost += c
                m["cost_usd"].append(c)
                m["duration_ms"].append(d)
                for _ in range(int(rng.poisson(1.5))):
                    _tool_use(hooks, rng, session, t)
                _usage(rows["token_usage"], "chat", conv_id, title, rng, c, d, None, t)
            else:
                _hook(hooks, rng, "UserPromptSubmit", session, t)
                m["cost_usd"].append(None)
                m["duration_ms"].append(None)
            m["created_at"].append(t)
        _hook(hooks, rng, "SessionEnd", session, t + US)
        status = str(pick(rng, ["idle", "interrupted", "error", "streaming"], 1, [0.86, 0.07, 0.05, 0.02])[0])
        c = rows["conversations"]
        for key, value in (("id", conv_id), ("session_id", session), ("sdk_session_id", str(hex_ids(rng, 1, "sdk_", 16)[0])),
                           ("title", title), ("summary", f"Discussed {title.lower()}."), ("status", status),
                           ("total_cost_usd", round(cost, 4)), ("started_at", start),
                           ("ended_at", t + 60 * US if status == "idle" else None), ("message_count", n_msgs)):
            c[key].append(value)
        _usage(rows["token_usage"], "memory_extraction", conv_id, title, rng, round(float(rng.uniform(0.001, 0.01)), 4),
               int(rng.integers(500, 4000)), None, t + 120 * US)
        for _ in range(int(rng.poisson(0.8))):
            mc = rows["memory_chunks"]
            for key, value in (("id", str(uuids(rng, 1)[0])), ("session_id", session), ("project_path", "~/code/cognova"),
                               ("chunk_type", str(pick(rng, ["decision", "fact", "solution", "pattern", "preference", "summary"], 1)[0])),
                               ("content", f"From '{title}': keep the decision log short."), ("source_excerpt", None),
                               ("relevance_score", round(float(rng.uniform(0.4, 1.0)), 3)), ("access_count", int(rng.poisson(2))),
                               ("last_accessed_at", t + 3600 * US), ("created_at", t + 130 * US), ("expires_at", None)):
                mc[key].append(value)

    for agent_id, (name, schedule, _) in zip(agent_ids, vocab.COGNOVA_AGENTS):
        if name == "Reading digest":
            continue  # disabled: it never runs
        for minute in _run_times(schedule, day):
            started = midnight + minute * 60 * US + int(rng.integers(0, 20 * US))
            status = str(pick(rng, ["success", "error", "budget_exceeded", "cancelled", "running"], 1, [0.86, 0.07, 0.03, 0.02, 0.02])[0])
            if started > now_us - 600 * US:
                status = "running"  # a run in the last ten minutes has not finished yet
            duration = int(rng.integers(5_000, 600_000))
            tokens_in, tokens_out = int(rng.integers(2_000, 60_000)), int(rng.integers(300, 6_000))
            cost = round(tokens_in * 3e-6 + tokens_out * 15e-6, 4)
            r = rows["cron_agent_runs"]
            finished = status != "running"
            turns = int(rng.integers(1, 30))
            for key, value in (("id", str(uuids(rng, 1)[0])), ("agent_id", agent_id), ("status", status),
                               ("output", "Done: summary posted." if status == "success" else None),
                               ("error", "Tool call failed: HTTP 502 from upstream" if status == "error" else None),
                               ("cost_usd", cost if finished else None), ("input_tokens", tokens_in if finished else None),
                               ("output_tokens", tokens_out if finished else None), ("num_turns", turns if finished else None),
                               ("started_at", started), ("completed_at", started + duration * 1000 if finished else None),
                               ("duration_ms", duration if finished else None)):
                r[key].append(value)
            if finished:
                _usage(rows["token_usage"], "agent", agent_id, name, rng, cost, duration, turns, started + duration * 1000,
                       tokens=(tokens_in, tokens_out))

    for _ in range(rng.poisson(2.5 * busy)):
        created = midnight + int(rng.integers(7 * 3600, 21 * 3600)) * US
        fate = str(pick(rng, ["done", "in_progress", "todo", "blocked"], 1, [0.55, 0.15, 0.25, 0.05])[0])
        closed = created + int(rng.integers(3600, 5 * 86400)) * US
        task_id = str(uuids(rng, 1)[0])
        due = created + int(rng.integers(1, 14)) * 86400 * US if rng.random() < 0.6 else None
        deleted = created + 86400 * US if rng.random() < 0.03 else None
        tk = rows["tasks"]
        for key, value in (("id", task_id), ("title", str(pick(rng, vocab.TASK_TITLES, 1)[0])), ("description", None),
                           ("status", fate), ("priority", int(rng.integers(1, 4))),
                           ("project_id", str(pick(rng, project_ids, 1)[0]) if rng.random() < 0.8 else None),
                           ("due_date", due),
                           ("tags", "{" + ",".join(pick(rng, ["home", "work", "urgent", "later", "health"], int(rng.integers(0, 3)))) + "}"),
                           ("created_at", created), ("modified_at", min(closed, now_us) if fate != "todo" else None),
                           ("completed_at", closed if fate == "done" and closed <= now_us else None), ("deleted_at", deleted),
                           ("created_by", USER_ID), ("modified_by", USER_ID if fate != "todo" else None),
                           ("deleted_by", USER_ID if deleted else None)):
            tk[key].append(value)
        if tk["completed_at"][-1] is None and fate == "done":
            tk["status"][-1] = "in_progress"  # not finished by the end of the data
        if due is not None and rng.random() < 0.6:  # reminders belong to tasks with a deadline
            rm = rows["reminders"]
            remind = due - 86400 * US
            for key, value in (("id", str(uuids(rng, 1)[0])), ("task_id", task_id), ("message", "Reminder: task due tomorrow"),
                               ("remind_at", remind), ("notified", remind <= now_us), ("created_at", created)):
                rm[key].append(value)

    for _ in range(rng.poisson(1.2 * busy)):
        created = midnight + int(rng.integers(7 * 3600, 21 * 3600)) * US
        doc_id = str(uuids(rng, 1)[0])
        dc = rows["documents"]
        for key, value in (("id", doc_id), ("title", str(pick(rng, vocab.CONVERSATION_TITLES, 1)[0])),
                           ("path", f"notes/{day:%Y/%m}/{doc_id[:8]}.md"), ("content", "# Notes\n\nDraft."),
                           ("content_hash", str(hex_ids(rng, 1, "", 32)[0])),
                           ("tags", "{" + ",".join(pick(rng, ["draft", "reference", "journal"], int(rng.integers(0, 2)))) + "}"),
                           ("project_id", str(pick(rng, project_ids, 1)[0]) if rng.random() < 0.6 else None),
                           ("shared", bool(rng.random() < 0.1)), ("share_type", None), ("file_type", "md"), ("mime_type", "text/markdown"),
                           ("synced_at", created + 5 * US), ("created_at", created), ("created_by", USER_ID),
                           ("modified_at", None), ("modified_by", None), ("deleted_at", None), ("deleted_by", None)):
            dc[key].append(value)
        if dc["shared"][-1]:
            dc["share_type"][-1] = "public"

    return {name: _to_frame(name, cols) for name, cols in rows.items()}


def _hook(hooks: dict, rng: np.random.Generator, event: str, session: str, at: int, tool: str | None = None,
          blocked: bool = False, exit_code: int = 0) -> None:
    for key, value in (("id", str(uuids(rng, 1)[0])), ("event_type", event), ("session_id", session),
                       ("project_dir", "~/code/cognova"), ("tool_name", tool), ("tool_matcher", tool and f"{tool}|Edit"),
                       ("event_data", json.dumps({"tool": tool} if tool else {})), ("exit_code", exit_code), ("blocked", blocked),
                       ("block_reason", "Command touches a protected path" if blocked else None),
                       ("duration_ms", int(rng.integers(3, 400))), ("hook_script", HOOK_SCRIPT), ("created_at", at)):
        hooks[key].append(value)


def _tool_use(hooks: dict, rng: np.random.Generator, session: str, at: int) -> None:
    tool = str(pick(rng, vocab.COGNOVA_TOOLS, 1)[0])
    blocked = bool(rng.random() < 0.04)
    _hook(hooks, rng, "PreToolUse", session, at, tool, blocked, 2 if blocked else 0)
    if not blocked:
        failed = bool(rng.random() < 0.05)
        _hook(hooks, rng, "PostToolUseFailure" if failed else "PostToolUse", session, at + US, tool, False, 1 if failed else 0)


def _usage(usage: dict, source: str, source_id: str, name: str, rng: np.random.Generator, cost: float, duration: int,
           turns: int | None, at: int, tokens: tuple[int, int] | None = None) -> None:
    tokens_in, tokens_out = tokens or (int(rng.integers(500, 20_000)), int(rng.integers(100, 3_000)))
    for key, value in (("id", str(uuids(rng, 1)[0])), ("source", source), ("source_id", source_id), ("source_name", name),
                       ("input_tokens", tokens_in), ("output_tokens", tokens_out), ("cost_usd", cost),
                       ("duration_ms", duration), ("num_turns", turns), ("created_at", at)):
        usage[key].append(value)


def _to_frame(name: str, columns: dict[str, list]) -> pl.DataFrame:
    frame = pl.DataFrame({k: pl.Series(v, strict=False) for k, v in columns.items()})
    return frame.with_columns([pl.col(c).cast(pl.Int64).cast(pl.Datetime("us", "UTC")) for c in TIME_COLUMNS.get(name, [])])


def agent_last_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """Per agent, the latest run's start and status (for ``cron_agents``)."""
    return (runs.sort("started_at").group_by("agent_id").agg(pl.col("started_at").last().alias("last_run_at"),
                                                                 pl.col("status").last().alias("last_status")))
