-- family_mastery: the kid's topics whose mastery changed during the week (marts.learning_progress as of the
-- day before the week and as of its last day). A topic first seen this week counts as changed from 'new'.
WITH now AS (
    SELECT subject, topic, mastery, accuracy FROM marts.learning_progress WHERE kid_id = $kid_id AND as_of_date = $last_day
),
before AS (
    SELECT subject, topic, mastery FROM marts.learning_progress WHERE kid_id = $kid_id AND as_of_date = $before_day
)
SELECT n.subject, n.topic, coalesce(b.mastery, 'new') AS was, n.mastery AS now, n.accuracy
FROM now n LEFT JOIN before b USING (subject, topic)
WHERE b.mastery IS DISTINCT FROM n.mastery AND n.mastery <> 'needs_data'
ORDER BY CASE n.mastery WHEN 'mastered' THEN 1 WHEN 'practicing' THEN 2 ELSE 3 END, n.subject, n.topic
