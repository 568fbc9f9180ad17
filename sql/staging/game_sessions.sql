-- game_sessions: every mode session with a valid MAC (marts.RULES["sessions"]), the local date of started_at and
-- the device's kid. A session is a game when its mode is one of the game modes or an attempt carries its id.
CREATE OR REPLACE TABLE staging.game_sessions AS
SELECT s.session_id, normal_mac(s.mac_address) AS mac_address, d.kid_id, s.agent_id, s.mode_type,
       s.mode_type IN ('Math', 'Riddle', 'WordLadder')
           OR s.session_id IN (SELECT session_id FROM staging.game_attempts) AS is_game,
       s.started_at, s.ended_at, s.duration_seconds AS stored_duration_seconds, s.interaction_count,
       s.completion_status, local_day(d.zone, s.started_at, o.offset_seconds) AS local_date
FROM raw_cheeko.analytics_game_sessions s
LEFT JOIN staging.devices d ON d.mac_address = normal_mac(s.mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, s.started_at)
WHERE normal_mac(s.mac_address) IS NOT NULL;
