-- game_daily: per device and local day of started_at, from marts.game_sessions: games only (marts.RULES["sessions"]).
SELECT
    local_date,
    mac_address,
    count(*) AS sessions,
    count(*) FILTER (WHERE status = 'completed') AS completed_sessions,
    sum(attempts)::BIGINT AS attempts,
    sum(correct)::BIGINT AS correct,
    CASE WHEN sum(attempts)::BIGINT > 0 THEN sum(correct)::BIGINT / sum(attempts)::BIGINT END AS accuracy,
    -- Open sessions have no duration; a day of only open sessions measured none (marts.RULES["sums"]).
    sum(duration_seconds) AS total_duration_seconds
FROM marts.game_sessions
WHERE is_game AND local_date BETWEEN $first_day AND $last_day
GROUP BY local_date, mac_address
