-- family_streak: the kid's streak at the end of the week: the best of their devices' (marts.device_streaks).
SELECT coalesce(max(current_streak_days), 0) AS current_streak_days,
       coalesce(max(longest_streak_days), 0) AS longest_streak_days
FROM marts.device_streaks
WHERE as_of_date = $last_day AND mac_address IN (SELECT mac_address FROM staging.devices WHERE kid_id = $kid_id)
