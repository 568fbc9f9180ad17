-- admin_subjects: game attempts in the report's local day, by subject: the game_type (deduplicated staging attempts).
SELECT game_type AS subject,
       count(*) AS attempts,
       count(*) FILTER (WHERE is_correct) AS correct,
       count(*) FILTER (WHERE is_correct)::DOUBLE / count(*) AS accuracy,
       count(DISTINCT mac_address) AS devices
FROM staging.game_attempts
WHERE event_at >= $window_start AND event_at < $window_end
GROUP BY ALL
ORDER BY attempts DESC, subject
LIMIT 8
