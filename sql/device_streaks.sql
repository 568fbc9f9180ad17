-- device_streaks: streaks per device as of each local date D in [$first_day, $last_day] (metrics.md "Streaks").
-- The rule is the macro streaks_as_of (sql/staging/streaks.sql), shared with app_counter_drift. Active days come
-- from the events themselves (every local day on or before D, however much of daily_device_activity is built).
SELECT * FROM streaks_as_of($first_day, $last_day, $cutoff)
