-- game_sessions: one row per session started on a local day in [$first_day, $last_day] (metrics.md "Game sessions").
-- Parameters: $as_of_time, $cutoff (as-of time + 5 minutes).
WITH sessions AS (
    SELECT * FROM staging.game_sessions
    WHERE local_date BETWEEN $first_day AND $last_day AND started_at <= $cutoff
),
attempt_totals AS (
    SELECT session_id, count(*) AS attempts, count(*) FILTER (WHERE is_correct) AS correct, max(event_at) AS last_attempt_at
    FROM staging.game_attempts
    WHERE event_at <= $cutoff AND session_id IN (SELECT session_id FROM sessions)
    GROUP BY session_id
),
with_status AS (
    SELECT s.*, coalesce(t.attempts, 0) AS attempts, coalesce(t.correct, 0) AS correct,
           coalesce(t.last_attempt_at, s.started_at) AS last_event_at,
           CASE WHEN s.ended_at IS NOT NULL THEN 'completed'
                WHEN coalesce(t.last_attempt_at, s.started_at) < $as_of_time - INTERVAL 30 MINUTE THEN 'abandoned'
                ELSE 'open' END AS status
    FROM sessions s LEFT JOIN attempt_totals t USING (session_id)
)
SELECT
    session_id,
    local_date,
    mac_address,
    kid_id,
    game_type,
    started_at,
    ended_at,
    status,
    CASE status WHEN 'completed' THEN ended_at WHEN 'abandoned' THEN last_event_at END AS ended_at_effective,
    CASE WHEN status <> 'open'
         -- Difference of the instants, in microseconds: subtracting two epoch doubles would lose precision.
         THEN greatest(0, date_diff('microsecond', started_at, CASE status WHEN 'completed' THEN ended_at ELSE last_event_at END) / 1e6)
    END AS duration_seconds,
    attempts,
    correct,
    CASE WHEN attempts > 0 THEN correct / attempts END AS accuracy,
    total_questions AS stored_total_questions,
    correct_answers AS stored_correct_answers,
    (total_questions IS DISTINCT FROM attempts) OR (correct_answers IS DISTINCT FROM correct) AS totals_disagree
FROM with_status
