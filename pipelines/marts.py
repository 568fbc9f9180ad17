"""The marts: what each table holds, column by column, and the rules behind it.

This is the contract between ``shared/design/metrics.md``, the SQL in
``sql/`` (one file per mart, named after it) and the reference
implementation in ``tests/``. Descriptions here become the Dagster UI's
column schemas and DuckDB ``COMMENT``s. Where metrics.md is silent, the rule
chosen is written in :data:`RULES` and in the mart's description.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Rules the marts share, where metrics.md leaves a choice open.
RULES = {
    "mac": "A MAC is normalised by trimming surrounding whitespace (space, tab, newline, carriage return, form and "
           "line feed), lower-casing it and removing ':', '-', '.' and "
           "spaces; it is valid when exactly 12 hex digits remain, written back as aa:bb:cc:dd:ee:ff. Rows whose MAC "
           "is not valid are left out of every device metric; the mac_unnormalisable check counts them in the event "
           "tables, device_token_usage and ai_device.",
    "devices": "One device per normalised MAC (metrics.md 'Resolved details'): several ai_device rows whose MACs "
               "normalise alike are one device, new on the earliest create_date among them; its kid, owner and agent "
               "come from the most recently updated row (update_date, then the greatest id). ai_device rows whose "
               "MAC is not valid are no device: they count in no device metric, new_devices included.",
    "local_day": "A device's zone is its kid's (ai_device.kid_id -> kid_profile.timezone), else its owner's "
                 "(ai_device.user_id -> parent_profile.user_id -> timezone), else UTC. A zone that is NULL or blank "
                 "after trimming is unset and falls through to the next; a set zone is trimmed and, when it is not an "
                 "IANA name, counts as UTC (no fall-through; check timezone_unknown). A MAC with no ai_device row "
                 "uses UTC.",
    "as_of": "A computation has an as-of time (the run's start, or one given for a backfill or a test). Events "
             "more than 5 minutes after it are excluded (check future_timestamps). As-of marts are computed for an "
             "as-of date D and include events whose device-local date is on or before D.",
    "event_times": "Event times on the production columns (metrics.md 'Overrides'): a game attempt's is attempt_time, "
                   "else answered_at, else created_at; playback and RFID scans use created_at; chat turns created_at; "
                   "sessions started_at. A row with no event time counts in no event metric.",
    "duplicates": "Natural keys: attempts (session_id, attempt_number, attempt_time, question_text); playback (MAC, "
                  "content_id, event_type, created_at); chat turns (MAC, session_id, chat_type, created_at); RFID scans "
                  "(rfid_uid, MAC, created_at); MACs normalised. A row repeating another's natural key counts once "
                  "(the one with the smallest id is kept).",
    "sessions": "Every analytics_game_sessions row is a mode session and keeps its mode_type. A session is a game when "
                "its mode_type is Math, Riddle or WordLadder, or when any deduplicated attempt with a valid MAC carries "
                "its session_id; game_daily, device_progress.game_sessions, fleet_daily.game_sessions and "
                "app_counter_drift count games only. A session's kid (and an attempt's) is its device's kid.",
    "qualifying": "A device is active on a local day with one of: a chat turn with chat_type = 1, a game attempt, "
                  "a playback event 'play' or 'complete', an RFID scan (metrics.md).",
    "games": "Learning: subject is the attempt's game_type, topic its question_type ('general' when null).",
    "app_tables": "analytics_streaks, analytics_user_progress and kid_learning_progress are the app's: the warehouse "
                  "reads them and never writes them. It publishes its exact values of device_streaks, device_progress "
                  "and learning_progress (latest as-of date) to Cheeko's warehouse schema, and app_counter_drift "
                  "reconciles the app's running counters with them.",
    "prices": "est_cost_usd = (input_tokens * input price + output_tokens * output price) / 1e6, with the prices "
              "per million tokens of the device's LLM (ai_device.agent_id -> ai_agent.llm_model_id -> "
              "ai_model_config.model_code) in pipelines/price_sheet.toml, else its default price; a null token column "
              "counts 0 unless both are null (then the row's cost is null: it reported nothing); every cost row "
              "records the sheet's version.",
    "money": "Money is exact: every cost is a DECIMAL(18, 8) of US dollars, rounded half away from zero once per "
             "source row (a priced usage row; a Cognova cost_usd as stored, from the exact value of its float) and "
             "summed in decimal, so a re-run gives bit-identical rows and extracts print cleanly.",
    "stored_values": "A stored total or duration that is null reported nothing and never disagrees: only non-null "
                     "stored values that differ from what the events give count (token_totals_mismatch: a non-null "
                     "total_tokens other than input + output, a null part counting 0; session_duration_disagree).",
    "sums": "A sum over no values is null for a measured quantity (tokens, seconds, money: a column nobody reported) "
            "and 0 for a count of rows. Percentiles (p50, p95) interpolate linearly between order statistics.",
}


@dataclass(frozen=True)
class Mart:
    """One table the warehouse builds from the raw layer."""

    name: str
    grain: str  # "local_day" / "utc_day" partitioned; "as_of" partitioned by as-of date; "whole" unpartitioned
    description: str
    key: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)


# The app's running counters (analytics_user_progress) reconciled in app_counter_drift: counter ->
# (the app's column, what the warehouse counts exactly).
DRIFT_COUNTERS = {
    "games_played": ("total_games_played", "games (rule: sessions) started"),
    "correct_answers": ("total_correct_answers", "correct attempts"),
    "wrong_answers": ("total_wrong_answers", "attempts - correct attempts"),
    "current_streak": ("current_streak", "current_streak_days"),
    "longest_streak": ("longest_streak", "longest_streak_days"),
}


def _drift_columns() -> dict[str, str]:
    columns = {"mac_address": "Normalised MAC of the app's row.",
               "kid_id": "kid_id as the app stored it.",
               "compared_at": "The moment compared: the row's updated_at (when the app last wrote its counters), or "
                              "the as-of time when that is null or later.",
               "as_of_date": "The device's local date at compared_at (streaks are as of it)."}
    for counter, (app, exact) in DRIFT_COUNTERS.items():
        columns[f"app_{counter}"] = f"{app} as the app stored it."
        columns[f"warehouse_{counter}"] = f"Exact: {exact}."
        columns[f"{counter}_drift"] = f"app_{counter} - warehouse_{counter}; null when the app reported nothing."
    return columns | {
        "app_last_activity_at": "last_activity_at as the app stored it.",
        "warehouse_last_activity_at": "Exact: the latest qualifying event (UTC).",
        "last_activity_drift_seconds": "app - warehouse last activity in seconds; null when either is null.",
        "max_count_drift": "The largest absolute drift of the five counters (0 when none drifts).",
        "drifting": "Any counter drifts, or last activity differs by more than 1 second, or the app has a last activity "
                    "and the warehouse no event at all (check app_counter_drift).",
    }


MARTS: tuple[Mart, ...] = (
    Mart("daily_device_activity", "local_day",
         "One row per device and local day on which it was active (rules: mac, local_day, qualifying, duplicates).",
         ("activity_date", "mac_address"),
         {"activity_date": "The device's local date.",
          "mac_address": "Normalised MAC.",
          "user_turns": "Chat turns with chat_type = 1, deduplicated.",
          "game_attempts": "Game attempts, deduplicated.",
          "media_plays": "Playback events 'play' or 'complete', deduplicated.",
          "rfid_scans": "RFID scans, deduplicated.",
          "first_event_at": "Earliest qualifying event (UTC).",
          "last_event_at": "Latest qualifying event (UTC)."}),
    Mart("device_streaks", "as_of",
         "Streaks per device as of a local date D, from daily_device_activity (metrics.md 'Streaks'). "
         "Only devices with at least one active day on or before D.",
         ("as_of_date", "mac_address"),
         {"as_of_date": "D.",
          "mac_address": "Normalised MAC.",
          "current_streak_days": "Run of consecutive active days ending on D, else on D-1, else 0.",
          "longest_streak_days": "Longest run of consecutive active days on or before D.",
          "last_active_date": "Latest active day on or before D.",
          "streak_start_date": "First day of the current streak; null when it is 0.",
          "total_active_days": "Active days on or before D."}),
    Mart("game_sessions", "local_day",
         "One row per mode session (every analytics_game_sessions row, games and not), partitioned by the local date "
         "of started_at; attempts joined by session_id and deduplicated (metrics.md 'Game sessions' and 'Overrides'; "
         "rules: sessions, duplicates). Sessions with an invalid MAC are left out.",
         ("session_id",),
         {"session_id": "Session id.",
          "local_date": "The device's local date of started_at.",
          "mac_address": "Normalised MAC.",
          "kid_id": "The device's kid (ai_device.kid_id).",
          "agent_id": "Agent the session ran with, as stored.",
          "mode_type": "Session mode as stored: Math, Riddle, WordLadder, Music, Story, Conversation.",
          "is_game": "A game (rule: sessions): a game mode, or a session with attempts.",
          "started_at": "Start (UTC).",
          "ended_at": "End as stored (UTC), null if not ended.",
          "status": "completed when ended_at is set; abandoned when not and the last event (latest attempt, else "
                    "started_at) is more than 30 minutes before the as-of time; else open.",
          "completion_status": "completion_status as the app stored it.",
          "ended_at_effective": "ended_at, else the last event for an abandoned session, else null.",
          "duration_seconds": "ended_at_effective - started_at in seconds, never negative; null when open. Wins over "
                              "the stored duration.",
          "attempts": "Deduplicated attempts of the session (future-dated ones excluded).",
          "correct": "Of those, is_correct.",
          "accuracy": "correct / attempts; null without attempts.",
          "interaction_count": "interaction_count as the app stored it.",
          "stored_duration_seconds": "duration_seconds as the app stored it.",
          "duration_disagrees": "The stored duration differs from ended_at - started_at by more than 1 second, both "
                                "set (check session_duration_disagree); false when either is null."}),
    Mart("game_daily", "local_day",
         "Per device and local day (by started_at): games played, from game_sessions (games only, rule: sessions).",
         ("local_date", "mac_address"),
         {"local_date": "Local date.", "mac_address": "Normalised MAC.", "sessions": "Sessions started.",
          "completed_sessions": "Of those, completed.", "attempts": "Attempts in those sessions.",
          "correct": "Correct attempts.", "accuracy": "correct / attempts; null without attempts.",
          "total_duration_seconds": "Sum of duration_seconds of the sessions that have one (open sessions have "
                                    "none); null when none has (rule: sums)."}),
    Mart("learning_progress", "as_of",
         "Per kid, subject and topic as of local date D (metrics.md 'Learning progress' and 'Overrides'; rule: games). "
         "The kid is the device's kid; attempts of devices without one are left out. Attempts count when their "
         "device-local date is on or before D; 'latest 20' orders by event time, then attempt_number, then id.",
         ("as_of_date", "kid_id", "subject", "topic"),
         {"as_of_date": "D.", "kid_id": "Kid.", "subject": "The attempts' game_type.",
          "topic": "Their question_type, 'general' when null.",
          "attempts": "Deduplicated attempts.", "correct": "Correct attempts.", "accuracy": "correct / attempts.",
          "recent_accuracy": "Accuracy over the latest 20 attempts.",
          "mastery": "needs_data under 5 attempts; else by recent_accuracy: < 0.5 struggling, < 0.8 practicing, "
                     "else mastered.",
          "last_practiced_at": "Latest attempt (UTC)."}),
    Mart("device_progress", "as_of",
         "Per device, all time up to local date D (metrics.md 'Device progress'). Only devices with any counted event.",
         ("as_of_date", "mac_address"),
         {"as_of_date": "D.", "mac_address": "Normalised MAC.", "total_active_days": "Active days on or before D.",
          "user_turns": "Chat turns with chat_type = 1.", "game_sessions": "Games started (rule: sessions).",
          "attempts": "Game attempts.", "correct": "Correct attempts.", "accuracy": "correct / attempts.",
          "stories_completed": "Playback 'complete' of content_type story.",
          "songs_completed": "Playback 'complete' of content_type music.",
          "listen_seconds": "Sum of position_seconds over 'complete' and 'pause' events; null when there is none "
                            "(rule: sums).",
          "rfid_scans": "RFID scans.", "last_active_at": "Latest qualifying event (UTC)."}),
    Mart("token_usage_daily", "utc_day",
         "Cheeko token usage per usage_date (the device's reporting date) and device, with estimated cost "
         "(rules: mac, prices). Rows whose total_tokens != input + output are counted by a check; sums use the "
         "columns as stored.",
         ("usage_date", "mac_address"),
         {"usage_date": "Reporting date.", "mac_address": "Normalised MAC.", "owner_user_id": "ai_device.user_id.",
          "llm_model": "model_code priced, or 'default'.", "input_tokens": "Sum.", "output_tokens": "Sum.",
          "total_tokens": "Sum as stored.", "input_audio_tokens": "Sum.", "input_text_tokens": "Sum.",
          "input_cached_tokens": "Sum.", "output_audio_tokens": "Sum.", "output_text_tokens": "Sum.",
          "message_count": "Sum.", "session_count": "Sum.", "session_duration_seconds": "Sum.",
          "total_response_duration_seconds": "Sum.",
          "avg_ttft_seconds": "Sum(avg_ttft x message_count) / sum(message_count) over rows with both set; null if none.",
          "est_cost_usd": "Estimated cost, DECIMAL(18, 8) US dollars (rules: prices, money).",
          "price_sheet_version": "Version of the price sheet used."}),
    Mart("token_usage_monthly", "whole",
         "Cheeko token usage per owner (ai_device.user_id; null when unknown) and calendar month of usage_date.",
         ("month", "owner_user_id"),
         {"month": "First day of the month.", "owner_user_id": "Owner.", "devices": "Distinct devices.",
          "input_tokens": "Sum.", "output_tokens": "Sum.", "total_tokens": "Sum as stored.",
          "message_count": "Sum.", "session_count": "Sum.", "avg_ttft_seconds": "Weighted by message_count.",
          "est_cost_usd": "Sum of daily estimates (rule: money).", "price_sheet_version": "Version of the price sheet used."}),
    Mart("fleet_daily", "utc_day",
         "Fleet summary per UTC day (metrics.md 'Fleet summary'): activity by the UTC date of events, tokens by usage_date. "
         "One row for every day of the range, zeros (and nulls for ratios) when nothing happened.",
         ("day",),
         {"day": "UTC date.", "active_devices": "Devices with a qualifying event that UTC day.",
          "new_devices": "Devices (rule: devices) whose earliest create_date is that day.",
          "new_users": "sys_user rows created that day.",
          "user_turns": "Chat turns with chat_type = 1.", "game_sessions": "Games started (rule: sessions).",
          "attempts": "Attempts.", "accuracy": "Correct / attempts.", "stories_completed": "Story completions.",
          "songs_completed": "Music completions.",
          "total_tokens": "Sum as stored; null when no device reported tokens that day (rule: sums).",
          "est_cost_usd": "Estimated cost (rules: prices, money); null when nothing was priced that day.",
          "avg_ttft_seconds": "Weighted by message_count.",
          "p50_ttft_seconds": "Median of device-day avg_ttft_seconds (non-null), linear interpolation.",
          "p95_ttft_seconds": "95th percentile of the same, linear interpolation."}),
    Mart("cognova_cost_daily", "utc_day",
         "Cognova token_usage per UTC day and source.",
         ("day", "source"),
         {"day": "UTC date of created_at.", "source": "chat, agent or memory_extraction.", "operations": "Rows.",
          "input_tokens": "Sum.", "output_tokens": "Sum.",
          "total_tokens": "input + output over the rows that report either (a null part counts 0); null when none does.",
          "cost_usd": "Sum of cost_usd as stored, each as DECIMAL(18, 8) (rule: money).", "duration_ms": "Sum of duration_ms."}),
    Mart("cognova_agent_runs_daily", "utc_day",
         "Cognova cron agent runs per agent and UTC day of started_at.",
         ("day", "agent_id"),
         {"day": "UTC date.", "agent_id": "Agent.", "agent_name": "Its name.", "runs": "All runs.",
          "success": "status success.", "error": "status error.", "budget_exceeded": "status budget_exceeded.",
          "cancelled": "status cancelled.", "running": "status running, started at most 6 hours before the as-of time.",
          "stale": "status running, started more than 6 hours before the as-of time.",
          "success_rate": "success / (success + error + budget_exceeded + cancelled); null if none finished.",
          "p50_duration_ms": "Median duration_ms of finished runs.", "p95_duration_ms": "95th percentile of the same.",
          "cost_usd": "Sum of cost_usd, each as DECIMAL(18, 8) (rule: money).", "input_tokens": "Sum.",
          "output_tokens": "Sum."}),
    Mart("cognova_activity_daily", "utc_day",
         "Cognova activity per UTC day; one row for every day of the range, zeros when nothing happened.",
         ("day",),
         {"day": "UTC date.", "conversations_started": "conversations by started_at.",
          "messages": "conversation_messages by created_at.",
          "chat_cost_usd": "Sum of message cost_usd, each as DECIMAL(18, 8) (rule: money); null when no message "
                           "reported a cost that day (rule: sums).",
          "tasks_created": "tasks by created_at.", "tasks_completed": "tasks by completed_at.",
          "reminders_due": "reminders by the UTC day of remind_at, with no future cut-off (a schedule, not an event).",
          "reminders_notified": "Of those, notified.",
          "hook_events": "hook_events by created_at.", "blocked_hook_events": "Of those, blocked."}),
    Mart("app_counter_drift", "whole",
         "The app's running counters in analytics_user_progress, one row per device the app keeps them for, against "
         "the warehouse's exact values at the moment the app last wrote them (the row's updated_at, capped at the "
         "as-of time): every deduplicated event up to then (plus the as-of rule's 5 minutes' grace for clocks), "
         "streaks as of the device's local date then (metrics.md "
         "'Overrides'; rules: sessions, app_tables). Comparing at the app's own moment, not the run's, means a "
         "counter is never called drifting only because the run came later. A counter the app left null reported "
         "nothing and never drifts. Rows whose MAC is not valid are left out; two rows of one device keep the most "
         "recently updated.",
         ("mac_address",),
         _drift_columns()),
)


def mart(name: str) -> Mart:
    for m in MARTS:
        if m.name == name:
            return m
    raise KeyError(f"no mart named {name!r}")
