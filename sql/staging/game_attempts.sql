-- game_attempts: attempts with a valid MAC and an event time (attempt_time, else answered_at, else created_at:
-- marts.RULES["event_times"]), once per natural key (session_id, attempt_number, attempt_time, question_text;
-- the smallest id is kept), with the device-local date and the device's kid.
-- attempt_sessions_between(window_start, window_end): the sessions with an attempt (of any MAC) whose event time is in
-- [window_start, window_end) (UTC). An attempt without attempt_time can repeat another's natural key on another day,
-- so a window's duplicates may lie outside it; never outside its session, though.
CREATE OR REPLACE MACRO attempt_sessions_between(window_start, window_end) AS TABLE
SELECT DISTINCT session_id FROM raw_cheeko.analytics_game_attempts
WHERE in_window(coalesce(attempt_time, answered_at, created_at), window_start, window_end);
-- game_attempts_between(window_start, window_end): the rows of every attempt of those sessions (NULL bounds: all of
-- history), so rollups.prepare rebuilds whole sessions around the window a load replaced.
CREATE OR REPLACE MACRO game_attempts_between(window_start, window_end) AS TABLE
WITH normalised AS (
    SELECT id, session_id, normal_mac(mac_address) AS mac_address, game_type, question_type, difficulty_level,
           attempt_number, attempt_time, question_text, is_correct,
           coalesce(attempt_time, answered_at, created_at) AS event_at
    FROM raw_cheeko.analytics_game_attempts
    WHERE normal_mac(mac_address) IS NOT NULL AND coalesce(attempt_time, answered_at, created_at) IS NOT NULL
      AND (window_start IS NULL AND window_end IS NULL
           OR session_id IN (FROM attempt_sessions_between(window_start, window_end)))
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY session_id, attempt_number, attempt_time, question_text ORDER BY id) = 1
)
SELECT a.id, a.session_id, a.mac_address, a.game_type, a.question_type, a.difficulty_level, a.attempt_number,
       a.is_correct, a.event_at, local_day(d.zone, a.event_at, o.offset_seconds) AS local_date, d.kid_id AS device_kid_id
FROM deduplicated a
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, a.event_at);
CREATE TABLE IF NOT EXISTS staging.game_attempts AS FROM game_attempts_between(NULL, NULL);
