-- chat_turns: chat rows with a valid MAC and a time, once per natural key (MAC, session_id, chat_type, created_at),
-- with the device-local date of the turn.
-- chat_turns_between(window_start, window_end): the rows of the turns in [window_start, window_end) (UTC; NULL bounds:
-- all of history). The natural key holds the turn's time, so a window's duplicates are all inside it.
CREATE OR REPLACE MACRO chat_turns_between(window_start, window_end) AS TABLE
WITH normalised AS (
    SELECT normal_mac(mac_address) AS mac_address, session_id, chat_type, created_at AS event_at, id
    FROM raw_cheeko.ai_agent_chat_history
    WHERE normal_mac(mac_address) IS NOT NULL AND created_at IS NOT NULL AND in_window(created_at, window_start, window_end)
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY mac_address, session_id, chat_type, event_at ORDER BY id) = 1
)
SELECT t.mac_address, t.session_id, t.chat_type, t.event_at, local_day(d.zone, t.event_at, o.offset_seconds) AS local_date
FROM deduplicated t
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, t.event_at);
CREATE TABLE IF NOT EXISTS staging.chat_turns AS FROM chat_turns_between(NULL, NULL);
