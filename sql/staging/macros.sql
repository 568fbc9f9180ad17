-- Macros every mart shares (recreated on every build; cheap).
-- trimmed: the text without surrounding whitespace (space, tab, newline, carriage return, form and line feed;
-- trim() takes spaces only). pipelines/chunker.py strips the same set from a MAC.
CREATE OR REPLACE MACRO trimmed(text) AS regexp_replace(text, '^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$', '', 'g');
-- normal_mac: the rules' MAC normalisation (marts.RULES["mac"]): trim, lower-case, drop ':' '-' '.' and spaces,
-- valid only as exactly 12 hex digits.
CREATE OR REPLACE MACRO bare_mac(mac) AS regexp_replace(lower(trimmed(mac)), '[:\-. ]', '', 'g');
CREATE OR REPLACE MACRO normal_mac(mac) AS
    CASE WHEN regexp_full_match(bare_mac(mac), '[0-9a-f]{12}')
         THEN concat_ws(':', bare_mac(mac)[1:2], bare_mac(mac)[3:4], bare_mac(mac)[5:6],
                             bare_mac(mac)[7:8], bare_mac(mac)[9:10], bare_mac(mac)[11:12])
    END;
-- The calendar date of a UTC instant in a zone (NULL zone: UTC).
CREATE OR REPLACE MACRO local_date(zone, instant) AS CAST(timezone(coalesce(zone, 'UTC'), instant) AS DATE);
-- The local date from a precomputed offset (staging.zone_offsets), else by converting the instant.
CREATE OR REPLACE MACRO local_day(zone, instant, offset_seconds) AS
    coalesce(CAST(CAST(instant AS TIMESTAMP) + to_seconds(offset_seconds) AS DATE), local_date(zone, instant));
-- Whether an instant (or a date) is in [window_start, window_end); a NULL bound is open, so (NULL, NULL) holds all of
-- history, rows without a time included. Each event staging file defines <table>_between(window_start, window_end),
-- the table's rows for such a window, and builds the table from all of history only when it is missing;
-- rollups.prepare replaces the rows of the window a daily load replaced, or drops and rebuilds the table whole.
CREATE OR REPLACE MACRO in_window(instant, window_start, window_end) AS
    (window_start IS NULL OR instant >= window_start) AND (window_end IS NULL OR instant < window_end);
-- metrics.md: average TTFT over a group, weighted by message_count, over rows with both set; null if none.
CREATE OR REPLACE MACRO weighted_ttft(ttft, messages) AS
    sum(ttft * messages) FILTER (WHERE ttft IS NOT NULL AND messages IS NOT NULL)::DOUBLE
        / nullif(sum(messages) FILTER (WHERE ttft IS NOT NULL AND messages IS NOT NULL), 0);
-- A set time zone (marts.RULES["local_day"]): trimmed, and NULL when blank (unset: the next source applies).
CREATE OR REPLACE MACRO set_zone(zone) AS nullif(trimmed(zone), '');
-- stored_money: a cost the source stores as a float (Cognova's real cost_usd) as DECIMAL(18, 8) US dollars, rounded
-- half away from zero from its exact binary value (marts.RULES["money"]). Widened to DOUBLE first: DuckDB's direct
-- cast from FLOAT rounds from a shorter decimal text, so 0.3f (0.300000011920...) would become 0.30000000.
CREATE OR REPLACE MACRO stored_money(cost) AS CAST(CAST(cost AS DOUBLE) AS DECIMAL(18, 8));
