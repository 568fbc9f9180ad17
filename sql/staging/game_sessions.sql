-- game_sessions: sessions with a valid MAC and the device-local date of started_at.
CREATE OR REPLACE VIEW staging.game_sessions AS
SELECT s.session_id, normal_mac(s.mac_address) AS mac_address, s.kid_id, s.game_type, s.started_at, s.ended_at,
       s.total_questions, s.correct_answers, local_date(d.zone, s.started_at) AS local_date
FROM raw_cheeko.analytics_game_sessions s
LEFT JOIN staging.devices d ON d.mac_address = normal_mac(s.mac_address)
WHERE normal_mac(s.mac_address) IS NOT NULL;
