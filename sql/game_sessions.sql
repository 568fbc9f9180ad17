-- game_sessions: one row per mode session started on a local day in [$first_day, $last_day], games and not
-- (metrics.md "Game sessions" and "Overrides"). Parameters: $as_of_time, $cutoff (as-of time + 5 minutes).
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
    agent_id,
    mode_type,
    is_game,
    started_at,
    ended_at,
    status,
    completion_status,
    CASE status WHEN 'completed' THEN ended_at WHEN 'abandoned' THEN last_event_at END AS ended_at_effective,
    CASE WHEN status <> 'open'
         -- Difference of the instants, in microseconds: subtracting two epoch doubles would lose precision.
         THEN greatest(0, date_diff('microsecond', started_at, CASE status WHEN 'completed' THEN ended_at ELSE last_event_at END) / 1e6)
    END AS duration_seconds,
    attempts,
    correct,
    CASE WHEN attempts > 0 THEN correct / attempts END AS accuracy,
    interaction_count,
    stored_duration_seconds,
    -- A stored duration reported nothing when it or ended_at is null; otherwise it disagrees beyond a second.
    coalesce(abs(stored_duration_seconds - date_diff('microsecond', started_at, ended_at) / 1e6) > 1, false)
        AS duration_disagrees
FROM with_status
