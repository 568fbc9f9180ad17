-- game_sessions: sessions with a valid MAC and the device-local date of started_at.
CREATE OR REPLACE TABLE staging.game_sessions AS
SELECT s.session_id, normal_mac(s.mac_address) AS mac_address, s.kid_id, s.game_type, s.started_at, s.ended_at,
       s.total_questions, s.correct_answers, local_day(d.zone, s.started_at, o.offset_seconds) AS local_date
FROM raw_cheeko.analytics_game_sessions s
LEFT JOIN staging.devices d ON d.mac_address = normal_mac(s.mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, s.started_at)
WHERE normal_mac(s.mac_address) IS NOT NULL;
