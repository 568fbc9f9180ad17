-- family_days: one kid's week, one row per local day $first_day..$last_day: was the kid active, and for how
-- many seconds did they play games, listen to stories and songs, and talk with Cheeko.
-- Only the kid's own devices (staging.devices.kid_id = $kid_id) are read.
WITH family AS (
    SELECT mac_address FROM staging.devices WHERE kid_id = $kid_id
),
days AS (
    SELECT CAST(d AS DATE) AS day FROM range($first_day::TIMESTAMP, $last_day::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
),
active AS (
    SELECT DISTINCT activity_date AS day FROM marts.daily_device_activity
    WHERE mac_address IN (SELECT mac_address FROM family) AND activity_date BETWEEN $first_day AND $last_day
),
games AS (
    SELECT local_date AS day, sum(coalesce(duration_seconds, 0)) AS seconds FROM marts.game_sessions
    WHERE is_game AND mac_address IN (SELECT mac_address FROM family) AND local_date BETWEEN $first_day AND $last_day
    GROUP BY 1
),
listening AS (
    -- As device_progress.listen_seconds: position_seconds of 'complete' and 'pause' events.
    SELECT local_date AS day, sum(coalesce(position_seconds, 0)) AS seconds FROM staging.media_events
    WHERE mac_address IN (SELECT mac_address FROM family) AND event_type IN ('complete', 'pause')
      AND local_date BETWEEN $first_day AND $last_day GROUP BY 1
),
talking AS (
    SELECT usage_date AS day, sum(coalesce(session_duration_seconds, 0)) AS seconds FROM staging.priced_usage
    WHERE mac_address IN (SELECT mac_address FROM family) AND usage_date BETWEEN $first_day AND $last_day GROUP BY 1
)
SELECT d.day, a.day IS NOT NULL AS active,
       coalesce(g.seconds, 0)::BIGINT AS game_seconds,
       coalesce(l.seconds, 0)::BIGINT AS listen_seconds,
       coalesce(t.seconds, 0)::BIGINT AS talk_seconds
FROM days d LEFT JOIN active a USING (day) LEFT JOIN games g USING (day) LEFT JOIN listening l USING (day)
LEFT JOIN talking t USING (day)
ORDER BY d.day
