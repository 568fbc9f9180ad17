-- app_counter_drift: the app's running counters (analytics_user_progress, one row per device) against the
-- warehouse's exact values at the moment the app last wrote them (marts.RULES["app_tables"], metrics.md
-- "Overrides"): every deduplicated event up to the row's updated_at (capped at $as_of_time; with the as-of rule's
-- grace for clocks, $cutoff - $as_of_time), streaks as of the device's local date then. A counter the app left null
-- reported nothing and never drifts.
WITH app AS (
    SELECT normal_mac(mac_address) AS mac_address, kid_id, total_games_played, total_correct_answers,
           total_wrong_answers, current_streak, longest_streak, last_activity_at,
           least(coalesce(updated_at, $as_of_time::TIMESTAMPTZ), $as_of_time::TIMESTAMPTZ) AS compared_at
    FROM raw_cheeko.analytics_user_progress
    WHERE normal_mac(mac_address) IS NOT NULL
    -- Two rows of one device (spelled differently): the most recently updated speaks for it.
    QUALIFY row_number() OVER (PARTITION BY normal_mac(mac_address) ORDER BY updated_at DESC NULLS LAST, id DESC) = 1
),
today AS (
    SELECT a.mac_address, a.compared_at, a.compared_at + ($cutoff - $as_of_time) AS counted_to,
           local_date(d.zone, a.compared_at) AS as_of_date
    FROM app a LEFT JOIN staging.devices d USING (mac_address)
),
games AS (
    SELECT t.mac_address, count(*) AS games_played FROM today t JOIN staging.game_sessions s USING (mac_address)
    WHERE s.is_game AND s.started_at <= t.counted_to GROUP BY t.mac_address
),
answers AS (
    SELECT t.mac_address, count(*) FILTER (WHERE a.is_correct) AS correct_answers,
           count(*) - count(*) FILTER (WHERE a.is_correct) AS wrong_answers
    FROM today t JOIN staging.game_attempts a USING (mac_address) WHERE a.event_at <= t.counted_to GROUP BY t.mac_address
),
activity AS (
    SELECT t.mac_address, max(q.event_at) AS last_activity_at
    FROM today t JOIN staging.qualifying_events q USING (mac_address) WHERE q.event_at <= t.counted_to GROUP BY t.mac_address
),
streaks AS (
    -- Days after the device's as-of date do not count; an event later that same day does (a day is active or not).
    SELECT s.mac_address, s.current_streak_days, s.longest_streak_days
    FROM streaks_as_of((SELECT min(as_of_date) FROM today), (SELECT max(as_of_date) FROM today), $cutoff) s
    JOIN today t USING (mac_address, as_of_date)
),
compared AS (
    SELECT a.mac_address, a.kid_id, t.compared_at, t.as_of_date,
           a.total_games_played AS app_games_played, coalesce(g.games_played, 0) AS warehouse_games_played,
           a.total_correct_answers AS app_correct_answers, coalesce(n.correct_answers, 0) AS warehouse_correct_answers,
           a.total_wrong_answers AS app_wrong_answers, coalesce(n.wrong_answers, 0) AS warehouse_wrong_answers,
           a.current_streak AS app_current_streak, coalesce(s.current_streak_days, 0) AS warehouse_current_streak,
           a.longest_streak AS app_longest_streak, coalesce(s.longest_streak_days, 0) AS warehouse_longest_streak,
           a.last_activity_at AS app_last_activity_at, v.last_activity_at AS warehouse_last_activity_at
    FROM app a
    JOIN today t USING (mac_address)
    LEFT JOIN games g USING (mac_address)
    LEFT JOIN answers n USING (mac_address)
    LEFT JOIN activity v USING (mac_address)
    LEFT JOIN streaks s USING (mac_address)
),
drifts AS (
    SELECT *,
           app_games_played - warehouse_games_played AS games_played_drift,
           app_correct_answers - warehouse_correct_answers AS correct_answers_drift,
           app_wrong_answers - warehouse_wrong_answers AS wrong_answers_drift,
           app_current_streak - warehouse_current_streak AS current_streak_drift,
           app_longest_streak - warehouse_longest_streak AS longest_streak_drift,
           date_diff('microsecond', warehouse_last_activity_at, app_last_activity_at) / 1e6 AS last_activity_drift_seconds
    FROM compared
)
SELECT
    mac_address, kid_id, compared_at, as_of_date,
    app_games_played, warehouse_games_played, games_played_drift,
    app_correct_answers, warehouse_correct_answers, correct_answers_drift,
    app_wrong_answers, warehouse_wrong_answers, wrong_answers_drift,
    app_current_streak, warehouse_current_streak, current_streak_drift,
    app_longest_streak, warehouse_longest_streak, longest_streak_drift,
    app_last_activity_at, warehouse_last_activity_at, last_activity_drift_seconds,
    coalesce(greatest(abs(games_played_drift), abs(correct_answers_drift), abs(wrong_answers_drift),
                      abs(current_streak_drift), abs(longest_streak_drift)), 0) AS max_count_drift,
    coalesce(games_played_drift <> 0, false) OR coalesce(correct_answers_drift <> 0, false)
        OR coalesce(wrong_answers_drift <> 0, false) OR coalesce(current_streak_drift <> 0, false)
        OR coalesce(longest_streak_drift <> 0, false) OR coalesce(abs(last_activity_drift_seconds) > 1, false)
        -- An app that claims activity the warehouse never saw drifts too.
        OR (app_last_activity_at IS NOT NULL AND warehouse_last_activity_at IS NULL)
        AS drifting
FROM drifts
