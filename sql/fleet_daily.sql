-- fleet_daily: one row per UTC day in [$first_day, $last_day] (metrics.md "Fleet summary").
-- Activity by the UTC date of events; tokens by usage_date, from marts.token_usage_daily.
WITH days AS (
    SELECT CAST(d AS DATE) AS day FROM range($first_day::TIMESTAMP, $last_day::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
),
utc_events AS (
    SELECT mac_address, CAST(event_at AS DATE) AS day, 'turn' AS kind, NULL AS is_correct, NULL AS content_type
    FROM staging.chat_turns WHERE chat_type = 1 AND event_at <= $cutoff
    UNION ALL
    SELECT mac_address, CAST(event_at AS DATE), 'attempt', is_correct, NULL FROM staging.game_attempts WHERE event_at <= $cutoff
    UNION ALL
    SELECT mac_address, CAST(event_at AS DATE), 'media_' || event_type, NULL, content_type
    FROM staging.media_events WHERE event_type IN ('play', 'complete') AND event_at <= $cutoff
    UNION ALL
    SELECT mac_address, CAST(event_at AS DATE), 'scan', NULL, NULL FROM staging.rfid_scans WHERE event_at <= $cutoff
),
activity AS (
    SELECT day,
           count(DISTINCT mac_address) AS active_devices,
           count(*) FILTER (WHERE kind = 'turn') AS user_turns,
           count(*) FILTER (WHERE kind = 'attempt') AS attempts,
           count(*) FILTER (WHERE kind = 'attempt' AND is_correct) AS correct,
           count(*) FILTER (WHERE kind = 'media_complete' AND content_type = 'story') AS stories_completed,
           count(*) FILTER (WHERE kind = 'media_complete' AND content_type = 'music') AS songs_completed
    FROM utc_events WHERE day BETWEEN $first_day AND $last_day GROUP BY day
),
sessions AS (
    SELECT CAST(started_at AS DATE) AS day, count(*) AS game_sessions
    FROM staging.game_sessions WHERE is_game AND started_at <= $cutoff GROUP BY 1
),
signups AS (
    -- One device per normalised MAC, new on its earliest create_date; invalid MACs are no device (RULES["devices"]).
    SELECT CAST(created_at AS DATE) AS day, count(*) AS new_devices FROM staging.devices GROUP BY 1
),
users AS (
    SELECT CAST(created_at AS DATE) AS day, count(*) AS new_users FROM raw_cheeko.sys_user GROUP BY 1
),
tokens AS (
    -- Weighted TTFT over the raw rows that report one (a device-day's average already hides which did).
    SELECT usage_date AS day,
           sum(total_tokens)::BIGINT AS total_tokens,
           weighted_ttft(avg_ttft_seconds, message_count)
               AS avg_ttft_seconds
    FROM raw_cheeko.device_token_usage
    WHERE usage_date BETWEEN $first_day AND $last_day AND normal_mac(mac_address) IS NOT NULL
    GROUP BY usage_date
),
device_days AS (
    SELECT usage_date AS day, CAST(sum(est_cost_usd) AS DECIMAL(18, 8)) AS est_cost_usd,
           quantile_cont(avg_ttft_seconds, 0.5) AS p50_ttft_seconds,
           quantile_cont(avg_ttft_seconds, 0.95) AS p95_ttft_seconds
    FROM marts.token_usage_daily WHERE usage_date BETWEEN $first_day AND $last_day GROUP BY usage_date
)
SELECT
    d.day,
    coalesce(a.active_devices, 0) AS active_devices,
    coalesce(sg.new_devices, 0) AS new_devices,
    coalesce(u.new_users, 0) AS new_users,
    coalesce(a.user_turns, 0) AS user_turns,
    coalesce(s.game_sessions, 0) AS game_sessions,
    coalesce(a.attempts, 0) AS attempts,
    CASE WHEN a.attempts > 0 THEN a.correct / a.attempts END AS accuracy,
    coalesce(a.stories_completed, 0) AS stories_completed,
    coalesce(a.songs_completed, 0) AS songs_completed,
    -- Measured quantities: null on a day no device reported (marts.RULES["sums"]).
    t.total_tokens,
    dd.est_cost_usd,
    t.avg_ttft_seconds,
    dd.p50_ttft_seconds,
    dd.p95_ttft_seconds
FROM days d
LEFT JOIN activity a USING (day)
LEFT JOIN sessions s USING (day)
LEFT JOIN signups sg USING (day)
LEFT JOIN users u USING (day)
LEFT JOIN tokens t USING (day)
LEFT JOIN device_days dd USING (day)
