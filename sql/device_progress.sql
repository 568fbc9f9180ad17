-- device_progress: per device, all time up to each local date D in [$first_day, $last_day]
-- (metrics.md "Device progress").
WITH as_of_dates AS (
    SELECT CAST(d AS DATE) AS as_of_date FROM range($first_day::TIMESTAMP, $last_day::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
),
events AS (
    SELECT mac_address, local_date, event_at, 'turn' AS kind, NULL AS is_correct, NULL AS content_type, NULL AS listened
    FROM staging.chat_turns WHERE chat_type = 1
    UNION ALL
    SELECT mac_address, local_date, event_at, 'attempt', is_correct, NULL, NULL FROM staging.game_attempts
    UNION ALL
    SELECT mac_address, local_date, event_at, 'media_' || event_type, NULL, content_type,
           CASE WHEN event_type IN ('complete', 'pause') THEN position_seconds END
    FROM staging.media_events
    UNION ALL
    SELECT mac_address, local_date, event_at, 'scan', NULL, NULL, NULL FROM staging.rfid_scans
    UNION ALL
    -- Games only (marts.RULES["sessions"]).
    SELECT mac_address, local_date, started_at, 'session', NULL, NULL, NULL FROM staging.game_sessions WHERE is_game
),
in_scope AS (
    SELECT * FROM events WHERE event_at <= $cutoff AND local_date <= $last_day AND kind <> 'media_skip'
),
counted AS (
    SELECT d.as_of_date, e.mac_address,
           count(*) FILTER (WHERE kind = 'turn') AS user_turns,
           count(*) FILTER (WHERE kind = 'session') AS game_sessions,
           count(*) FILTER (WHERE kind = 'attempt') AS attempts,
           count(*) FILTER (WHERE kind = 'attempt' AND is_correct) AS correct,
           count(*) FILTER (WHERE kind = 'media_complete' AND content_type = 'story') AS stories_completed,
           count(*) FILTER (WHERE kind = 'media_complete' AND content_type = 'music') AS songs_completed,
           -- null for a device with no complete or pause event: nothing was measured (marts.RULES["sums"]).
           sum(listened)::BIGINT AS listen_seconds,
           count(*) FILTER (WHERE kind = 'scan') AS rfid_scans,
           max(event_at) FILTER (WHERE kind IN ('turn', 'attempt', 'media_play', 'media_complete', 'scan')) AS last_active_at
    FROM in_scope e JOIN as_of_dates d ON e.local_date <= d.as_of_date
    GROUP BY d.as_of_date, e.mac_address
),
active_days AS (
    SELECT DISTINCT mac_address, local_date FROM staging.qualifying_events WHERE event_at <= $cutoff AND local_date <= $last_day
),
active AS (
    SELECT d.as_of_date, a.mac_address, count(*) AS total_active_days
    FROM active_days a JOIN as_of_dates d ON a.local_date <= d.as_of_date
    GROUP BY d.as_of_date, a.mac_address
)
SELECT c.as_of_date, c.mac_address, coalesce(a.total_active_days, 0) AS total_active_days, c.user_turns,
       c.game_sessions, c.attempts, c.correct, CASE WHEN c.attempts > 0 THEN c.correct / c.attempts END AS accuracy,
       c.stories_completed, c.songs_completed, c.listen_seconds, c.rfid_scans, c.last_active_at
FROM counted c LEFT JOIN active a USING (as_of_date, mac_address)
