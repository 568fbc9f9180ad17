-- family_content: stories and songs the kid finished in the week, with titles, most finished first.
WITH finished AS (
    SELECT content_type, content_id, count(*) AS times FROM staging.media_events
    WHERE mac_address IN (SELECT mac_address FROM staging.devices WHERE kid_id = $kid_id)
      AND event_type = 'complete' AND content_type IN ('story', 'music')
      AND local_date BETWEEN $first_day AND $last_day
    GROUP BY ALL
),
titles AS (
    -- Playback names content_library items (content_id is their id).
    SELECT content_type, id AS content_id, title FROM raw_cheeko.content_library
)
SELECT f.content_type, coalesce(t.title, '') AS title, f.times
FROM finished f LEFT JOIN titles t USING (content_type, content_id)
ORDER BY f.times DESC, title
