-- streaks_as_of: metrics.md "Streaks", per device with an active day, as of every local date D in [first_day, last_day], over the
-- qualifying events up to cutoff (marts.device_streaks, and app_counter_drift's exact streaks). Runs of consecutive
-- active days ("islands") are found once, then cut at each D. A macro, not a table: it takes the dates and the
-- cutoff; it is made after staging.qualifying_events, which DuckDB binds it to.
CREATE OR REPLACE MACRO streaks_as_of(first_day, last_day, cutoff) AS TABLE
WITH active_days AS (
    SELECT DISTINCT mac_address, local_date AS activity_date FROM staging.qualifying_events
    WHERE event_at <= cutoff AND local_date <= CAST(last_day AS DATE)
),
islands AS (
    SELECT mac_address, activity_date,
           activity_date - CAST(row_number() OVER (PARTITION BY mac_address ORDER BY activity_date) AS INTEGER) AS island
    FROM active_days
),
runs AS (
    SELECT mac_address, min(activity_date) AS run_start, max(activity_date) AS run_end
    FROM islands GROUP BY mac_address, island
),
as_of_dates AS (
    SELECT CAST(unnest(generate_series(CAST(first_day AS DATE), CAST(last_day AS DATE), INTERVAL 1 DAY)) AS DATE) AS as_of_date
),
runs_as_of AS (
    -- Each run as far as it had got by D.
    SELECT a.as_of_date, r.mac_address, r.run_start, least(r.run_end, a.as_of_date) AS run_end
    FROM runs r JOIN as_of_dates a ON r.run_start <= a.as_of_date
),
summary AS (
    SELECT as_of_date, mac_address,
           CAST(max(datediff('day', run_start, run_end) + 1) AS BIGINT) AS longest_streak_days,
           max(run_end) AS last_active_date,
           CAST(sum(datediff('day', run_start, run_end) + 1) AS BIGINT) AS total_active_days,
           arg_max(run_start, run_end) AS last_run_start
    FROM runs_as_of GROUP BY as_of_date, mac_address
)
SELECT
    as_of_date,
    mac_address,
    -- The run ending on D, else on D-1 (a child who played yesterday keeps the streak), else 0.
    CASE WHEN last_active_date >= as_of_date - 1 THEN datediff('day', last_run_start, last_active_date) + 1 ELSE 0 END
        AS current_streak_days,
    longest_streak_days,
    last_active_date,
    CASE WHEN last_active_date >= as_of_date - 1 THEN last_run_start END AS streak_start_date,
    total_active_days
FROM summary;
