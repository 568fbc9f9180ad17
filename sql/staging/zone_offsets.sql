-- zone_offsets: each zone's offset from UTC in every 15-minute slot of the data's range.
-- Zone transitions fall on 15-minute boundaries, so an event's local date is its UTC time plus
-- the offset of its slot: one ICU conversion per slot instead of one per event.
CREATE OR REPLACE TABLE staging.zone_offsets AS
WITH zones AS (
    SELECT DISTINCT zone FROM staging.devices UNION SELECT 'UTC'
),
bounds AS (
    -- The events' range, capped a little after now: far-future rows fall back to a per-row conversion.
    SELECT time_bucket(INTERVAL 15 MINUTE, min(lo)) - INTERVAL 1 DAY AS lo,
           least(max(hi), now()::TIMESTAMPTZ + INTERVAL 3 DAY) + INTERVAL 1 DAY AS hi
    FROM (
        SELECT min(created_at) AS lo, max(created_at) AS hi FROM raw_cheeko.ai_agent_chat_history
        UNION ALL SELECT min(coalesce(attempt_time, answered_at, created_at)), max(coalesce(attempt_time, answered_at, created_at))
                  FROM raw_cheeko.analytics_game_attempts
        UNION ALL SELECT min(created_at), max(created_at) FROM raw_cheeko.analytics_media_playback
        UNION ALL SELECT min(created_at), max(created_at) FROM raw_cheeko.rfid_scan_log
        UNION ALL SELECT min(started_at), max(started_at) FROM raw_cheeko.analytics_game_sessions
    )
),
slots AS (
    SELECT unnest(range(lo, hi, INTERVAL 15 MINUTE)) AS slot FROM bounds WHERE lo IS NOT NULL
)
SELECT z.zone, s.slot, date_diff('second', CAST(s.slot AS TIMESTAMP), timezone(z.zone, s.slot)) AS offset_seconds
FROM zones z CROSS JOIN slots s;
