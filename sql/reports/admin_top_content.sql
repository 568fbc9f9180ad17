-- admin_top_content: the most completed stories and songs in the report's local day, with their titles.
WITH completed AS (
    SELECT content_type, content_id, count(*) AS completions, count(DISTINCT mac_address) AS devices
    FROM staging.media_events
    WHERE event_type = 'complete' AND content_type IN ('story', 'music')
      AND event_at >= $window_start AND event_at < $window_end
    GROUP BY ALL
),
titles AS (
    -- Playback names content_library items (content_id is their id).
    SELECT content_type, id AS content_id, title FROM raw_cheeko.content_library
)
SELECT c.content_type, coalesce(t.title, '(unknown title)') AS title, c.completions, c.devices
FROM completed c LEFT JOIN titles t USING (content_type, content_id)
QUALIFY row_number() OVER (PARTITION BY c.content_type ORDER BY c.completions DESC, t.title) <= 5
ORDER BY c.content_type, c.completions DESC, title
