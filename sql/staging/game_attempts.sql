-- game_attempts: attempts with a valid MAC, once per natural key (session_id, question_key, attempted_at),
-- with the device-local date and the device's kid.
CREATE OR REPLACE TABLE staging.game_attempts AS
WITH normalised AS (
    SELECT normal_mac(mac_address) AS mac_address, session_id, question_key, subject, topic, is_correct,
           attempted_at AS event_at, id
    FROM raw_cheeko.analytics_game_attempts
    WHERE normal_mac(mac_address) IS NOT NULL
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY session_id, question_key, event_at ORDER BY id) = 1
)
SELECT a.mac_address, a.session_id, a.question_key, a.subject, a.topic, a.is_correct, a.event_at,
       local_day(d.zone, a.event_at, o.offset_seconds) AS local_date, d.kid_id AS device_kid_id
FROM deduplicated a
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, a.event_at);
