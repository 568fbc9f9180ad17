-- daily_device_activity: one row per device and local day with qualifying activity (metrics.md "Qualifying activity").
-- Parameters: $first_day, $last_day (local dates), $cutoff (as-of time + 5 minutes).
WITH in_scope AS (
    SELECT * FROM staging.qualifying_events
    WHERE event_at <= $cutoff AND local_date BETWEEN $first_day AND $last_day
)
SELECT
    local_date AS activity_date,
    mac_address,
    count(*) FILTER (WHERE kind = 'turn') AS user_turns,
    count(*) FILTER (WHERE kind = 'attempt') AS game_attempts,
    count(*) FILTER (WHERE kind = 'play') AS media_plays,
    count(*) FILTER (WHERE kind = 'scan') AS rfid_scans,
    min(event_at) AS first_event_at,
    max(event_at) AS last_event_at
FROM in_scope
GROUP BY local_date, mac_address
