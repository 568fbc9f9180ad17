-- learning_progress: per kid, subject and topic as of each local date D in [$first_day, $last_day]
-- (metrics.md "Learning progress" and "Overrides"): the kid is the device's kid, the subject the game_type,
-- the topic the question_type ('general' when null).
WITH attempts AS (
    SELECT device_kid_id AS kid_id, game_type AS subject, coalesce(question_type, 'general') AS topic, is_correct,
           event_at, attempt_number, id, local_date
    FROM staging.game_attempts
    WHERE event_at <= $cutoff AND local_date <= $last_day AND device_kid_id IS NOT NULL
),
as_of_dates AS (
    SELECT CAST(d AS DATE) AS as_of_date FROM range($first_day::TIMESTAMP, $last_day::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
),
attempts_as_of AS (
    SELECT d.as_of_date, a.*,
           row_number() OVER (PARTITION BY d.as_of_date, a.kid_id, a.subject, a.topic
                              ORDER BY a.event_at DESC, a.attempt_number DESC NULLS LAST, a.id DESC) AS recency
    FROM attempts a JOIN as_of_dates d ON a.local_date <= d.as_of_date
),
progress AS (
    SELECT as_of_date, kid_id, subject, topic,
           count(*) AS attempts,
           count(*) FILTER (WHERE is_correct) AS correct,
           count(*) FILTER (WHERE is_correct) / count(*) AS accuracy,
           count(*) FILTER (WHERE is_correct AND recency <= 20) / count(*) FILTER (WHERE recency <= 20) AS recent_accuracy,
           max(event_at) AS last_practiced_at
    FROM attempts_as_of GROUP BY as_of_date, kid_id, subject, topic
)
SELECT as_of_date, kid_id, subject, topic, attempts, correct, accuracy, recent_accuracy,
       CASE WHEN attempts < 5 THEN 'needs_data'
            WHEN recent_accuracy < 0.5 THEN 'struggling'
            WHEN recent_accuracy < 0.8 THEN 'practicing'
            ELSE 'mastered' END AS mastery,
       last_practiced_at
FROM progress
