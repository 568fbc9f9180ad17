-- family_subjects: the kid's answers in the week by subject. The kid of an attempt is its session's kid_id,
-- else its device's (metrics.md "Learning progress").
SELECT coalesce(a.subject, 'other') AS subject, count(*) AS attempts,
       count(*) FILTER (WHERE a.is_correct) AS correct,
       count(*) FILTER (WHERE a.is_correct)::DOUBLE / count(*) AS accuracy
FROM staging.game_attempts a LEFT JOIN staging.game_sessions s USING (session_id)
WHERE coalesce(s.kid_id, a.device_kid_id) = $kid_id AND a.local_date BETWEEN $first_day AND $last_day
GROUP BY ALL
ORDER BY attempts DESC, subject
