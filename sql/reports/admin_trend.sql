-- admin_trend: the admin report's daily series, one row per local day of $days in the report's zone.
-- A day is [start_at, end_at): local midnight to local midnight, so a DST day is 23 or 25 hours.
-- Activity follows metrics.md "Qualifying activity" (deduplicated staging events); tokens are reported per
-- device usage_date, which has no time of day, so they are taken by that date. Counts are 0 on a day without
-- rows; money (est_cost_usd, DECIMAL) is null there: nobody reported a cost (marts.RULES["sums"]).
WITH days AS (
    SELECT unnest($days::DATE[]) AS day, unnest($starts::TIMESTAMPTZ[]) AS start_at, unnest($ends::TIMESTAMPTZ[]) AS end_at
),
span AS (
    SELECT min(start_at) AS lo, max(end_at) AS hi FROM days
),
events AS (
    SELECT q.mac_address, q.kind, q.event_at FROM staging.qualifying_events q, span
    WHERE q.event_at >= span.lo AND q.event_at < span.hi
),
activity AS (
    SELECT d.day, count(DISTINCT e.mac_address) AS active_devices,
           count(*) FILTER (WHERE e.kind = 'turn') AS user_turns
    FROM days d JOIN events e ON e.event_at >= d.start_at AND e.event_at < d.end_at
    GROUP BY d.day
),
attempts AS (
    SELECT d.day, count(*) AS attempts, count(*) FILTER (WHERE a.is_correct) AS correct
    FROM days d JOIN staging.game_attempts a ON a.event_at >= d.start_at AND a.event_at < d.end_at
    GROUP BY d.day
),
sessions AS (
    SELECT d.day, count(*) AS game_sessions
    FROM days d JOIN staging.game_sessions s ON s.started_at >= d.start_at AND s.started_at < d.end_at AND s.is_game
    GROUP BY d.day
),
completions AS (
    SELECT d.day,
           count(*) FILTER (WHERE m.content_type = 'story') AS stories_completed,
           count(*) FILTER (WHERE m.content_type = 'music') AS songs_completed
    FROM days d JOIN staging.media_events m ON m.event_at >= d.start_at AND m.event_at < d.end_at
    WHERE m.event_type = 'complete'
    GROUP BY d.day
),
new_devices AS (
    -- One device per normalised MAC, new on its earliest create_date (marts.RULES["devices"]).
    SELECT d.day, count(*) AS new_devices
    FROM days d JOIN staging.devices v ON v.created_at >= d.start_at AND v.created_at < d.end_at
    GROUP BY d.day
),
new_users AS (
    SELECT d.day, count(*) AS new_users
    FROM days d JOIN raw_cheeko.sys_user u ON u.created_at >= d.start_at AND u.created_at < d.end_at
    GROUP BY d.day
),
tokens AS (
    SELECT usage_date AS day, sum(total_tokens)::BIGINT AS total_tokens, sum(est_cost_usd) AS est_cost_usd,
           weighted_ttft(avg_ttft_seconds, message_count) AS avg_ttft_seconds
    FROM staging.priced_usage WHERE usage_date IN (SELECT day FROM days) GROUP BY usage_date
),
device_days AS (
    SELECT usage_date AS day, quantile_cont(avg_ttft_seconds, 0.95) AS p95_ttft_seconds
    FROM marts.token_usage_daily WHERE usage_date IN (SELECT day FROM days) GROUP BY usage_date
)
SELECT d.day,
       coalesce(a.active_devices, 0) AS active_devices,
       coalesce(nd.new_devices, 0) AS new_devices,
       coalesce(nu.new_users, 0) AS new_users,
       coalesce(a.user_turns, 0) AS user_turns,
       coalesce(s.game_sessions, 0) AS game_sessions,
       coalesce(t.attempts, 0) AS attempts,
       coalesce(t.correct, 0) AS correct,
       coalesce(c.stories_completed, 0) AS stories_completed,
       coalesce(c.songs_completed, 0) AS songs_completed,
       coalesce(k.total_tokens, 0) AS total_tokens,
       k.est_cost_usd,
       k.avg_ttft_seconds,
       p.p95_ttft_seconds
FROM days d
LEFT JOIN activity a USING (day)
LEFT JOIN attempts t USING (day)
LEFT JOIN sessions s USING (day)
LEFT JOIN completions c USING (day)
LEFT JOIN new_devices nd USING (day)
LEFT JOIN new_users nu USING (day)
LEFT JOIN tokens k USING (day)
LEFT JOIN device_days p USING (day)
ORDER BY d.day
