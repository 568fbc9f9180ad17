-- admin_streaks: engagement as of the report date, from marts.device_streaks (as of each device's local date).
SELECT
    count(*) FILTER (WHERE current_streak_days > 0) AS devices_on_a_streak,
    count(*) FILTER (WHERE current_streak_days >= 3) AS streaks_3_plus,
    count(*) FILTER (WHERE current_streak_days >= 7) AS streaks_7_plus,
    coalesce(max(current_streak_days), 0) AS longest_current_streak,
    coalesce(max(longest_streak_days), 0) AS longest_streak_ever,
    avg(current_streak_days) FILTER (WHERE current_streak_days > 0) AS avg_current_streak,
    count(*) AS devices_ever_active
FROM marts.device_streaks
WHERE as_of_date = $report_date
