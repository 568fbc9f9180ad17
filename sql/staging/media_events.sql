-- media_events: playback events with a valid MAC and a time (created_at), once per natural key
-- (MAC, content_id, event_type, created_at).
-- media_events_between(window_start, window_end): the rows of the events in [window_start, window_end) (UTC; NULL
-- bounds: all of history); the natural key holds the time, so a window is deduplicated on its own rows (as chat_turns).
CREATE OR REPLACE MACRO media_events_between(window_start, window_end) AS TABLE
WITH normalised AS (
    SELECT normal_mac(mac_address) AS mac_address, content_type, content_id, event_type, position_seconds,
           created_at AS event_at, id
    FROM raw_cheeko.analytics_media_playback
    WHERE normal_mac(mac_address) IS NOT NULL AND created_at IS NOT NULL AND in_window(created_at, window_start, window_end)
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY mac_address, content_id, event_type, event_at ORDER BY id) = 1
)
SELECT m.mac_address, m.content_type, m.content_id, m.event_type, m.position_seconds, m.event_at,
       local_day(d.zone, m.event_at, o.offset_seconds) AS local_date
FROM deduplicated m
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, m.event_at);
CREATE TABLE IF NOT EXISTS staging.media_events AS FROM media_events_between(NULL, NULL);
