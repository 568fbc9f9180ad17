-- chat_turns: chat rows with a valid MAC and a time, once per natural key (MAC, session_id, chat_type, created_at),
-- with the device-local date of the turn.
CREATE OR REPLACE TABLE staging.chat_turns AS
WITH normalised AS (
    SELECT normal_mac(mac_address) AS mac_address, session_id, chat_type, created_at AS event_at, id
    FROM raw_cheeko.ai_agent_chat_history
    WHERE normal_mac(mac_address) IS NOT NULL AND created_at IS NOT NULL
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY mac_address, session_id, chat_type, event_at ORDER BY id) = 1
)
SELECT t.mac_address, t.session_id, t.chat_type, t.event_at, local_day(d.zone, t.event_at, o.offset_seconds) AS local_date
FROM deduplicated t
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, t.event_at);
