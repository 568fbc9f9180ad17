-- game_sessions: every mode session with a valid MAC (marts.RULES["sessions"]), the local date of started_at and
-- the device's kid. A session is a game when its mode is one of the game modes or an attempt carries its id.
-- game_sessions_between(window_start, window_end): the rows of the sessions started in [window_start, window_end)
-- (UTC; NULL bounds: all of history) and of the sessions whose attempts game_attempts rebuilds for that window.
CREATE OR REPLACE MACRO game_sessions_between(window_start, window_end) AS TABLE
WITH picked AS (
    -- Two disjoint parts, so each keeps its own fast path: a range of started_at, and a semi-join on few ids.
    SELECT * FROM raw_cheeko.analytics_game_sessions WHERE in_window(started_at, window_start, window_end)
    UNION ALL
    SELECT * FROM raw_cheeko.analytics_game_sessions
    WHERE NOT coalesce(in_window(started_at, window_start, window_end), false)
      AND session_id IN (FROM attempt_sessions_between(window_start, window_end))
)
SELECT s.session_id, normal_mac(s.mac_address) AS mac_address, d.kid_id, s.agent_id, s.mode_type,
       s.mode_type IN ('Math', 'Riddle', 'WordLadder')
           OR s.session_id IN (SELECT session_id FROM staging.game_attempts) AS is_game,
       s.started_at, s.ended_at, s.duration_seconds AS stored_duration_seconds, s.interaction_count,
       s.completion_status, local_day(d.zone, s.started_at, o.offset_seconds) AS local_date
FROM picked s
LEFT JOIN staging.devices d ON d.mac_address = normal_mac(s.mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, s.started_at)
WHERE normal_mac(s.mac_address) IS NOT NULL;
CREATE TABLE IF NOT EXISTS staging.game_sessions AS FROM game_sessions_between(NULL, NULL);
