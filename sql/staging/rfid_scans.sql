-- rfid_scans: scans with a valid MAC and a time (created_at), once per natural key (rfid_uid, MAC, created_at).
-- rfid_scans_between(window_start, window_end): the rows of the scans in [window_start, window_end) (UTC; NULL bounds:
-- all of history); the natural key holds the time, so a window is deduplicated on its own rows (as chat_turns).
CREATE OR REPLACE MACRO rfid_scans_between(window_start, window_end) AS TABLE
WITH normalised AS (
    SELECT rfid_uid, normal_mac(mac_address) AS mac_address, created_at AS event_at, id
    FROM raw_cheeko.rfid_scan_log
    WHERE normal_mac(mac_address) IS NOT NULL AND created_at IS NOT NULL AND in_window(created_at, window_start, window_end)
),
deduplicated AS (
    SELECT * FROM normalised
    QUALIFY row_number() OVER (PARTITION BY rfid_uid, mac_address, event_at ORDER BY id) = 1
)
SELECT s.rfid_uid, s.mac_address, s.event_at, local_day(d.zone, s.event_at, o.offset_seconds) AS local_date
FROM deduplicated s
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.zone_offsets o ON o.zone = coalesce(d.zone, 'UTC') AND o.slot = time_bucket(INTERVAL 15 MINUTE, s.event_at);
CREATE TABLE IF NOT EXISTS staging.rfid_scans AS FROM rfid_scans_between(NULL, NULL);
