-- family_subjects: the kid's answers in the week by subject (the game_type). The kid of an attempt is its
-- device's kid (metrics.md "Overrides").
SELECT game_type AS subject, count(*) AS attempts,
       count(*) FILTER (WHERE is_correct) AS correct,
       count(*) FILTER (WHERE is_correct)::DOUBLE / count(*) AS accuracy
FROM staging.game_attempts
WHERE device_kid_id = $kid_id AND local_date BETWEEN $first_day AND $last_day
GROUP BY ALL
ORDER BY attempts DESC, subject
