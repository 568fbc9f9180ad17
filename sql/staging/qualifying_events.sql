-- qualifying_events: every event that makes a device active on its local day (metrics.md "Qualifying activity"),
-- deduplicated; marts apply their own as-of cutoff.
CREATE OR REPLACE TABLE staging.qualifying_events AS
SELECT mac_address, local_date, event_at, 'turn' AS kind FROM staging.chat_turns WHERE chat_type = 1
UNION ALL
SELECT mac_address, local_date, event_at, 'attempt' FROM staging.game_attempts
UNION ALL
SELECT mac_address, local_date, event_at, 'play' FROM staging.media_events WHERE event_type IN ('play', 'complete')
UNION ALL
SELECT mac_address, local_date, event_at, 'scan' FROM staging.rfid_scans;
