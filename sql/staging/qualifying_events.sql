-- qualifying_events: every event that makes a device active on its local day (metrics.md "Qualifying activity"),
-- deduplicated; marts apply their own as-of cutoff.
-- qualifying_events_between(window_start, window_end): the rows of the events in [window_start, window_end) (UTC; NULL
-- bounds: all of history); each row stands alone.
CREATE OR REPLACE MACRO qualifying_events_between(window_start, window_end) AS TABLE
SELECT mac_address, local_date, event_at, 'turn' AS kind FROM staging.chat_turns
WHERE chat_type = 1 AND in_window(event_at, window_start, window_end)
UNION ALL
SELECT mac_address, local_date, event_at, 'attempt' FROM staging.game_attempts WHERE in_window(event_at, window_start, window_end)
UNION ALL
SELECT mac_address, local_date, event_at, 'play' FROM staging.media_events
WHERE event_type IN ('play', 'complete') AND in_window(event_at, window_start, window_end)
UNION ALL
SELECT mac_address, local_date, event_at, 'scan' FROM staging.rfid_scans WHERE in_window(event_at, window_start, window_end);
CREATE TABLE IF NOT EXISTS staging.qualifying_events AS FROM qualifying_events_between(NULL, NULL);
