-- admin_mastery: how many (kid, subject, topic) pairs sit at each mastery level as of the report date.
SELECT mastery, count(*) AS topics, count(DISTINCT kid_id) AS kids
FROM marts.learning_progress
WHERE as_of_date = $report_date
GROUP BY mastery
ORDER BY CASE mastery WHEN 'mastered' THEN 1 WHEN 'practicing' THEN 2 WHEN 'struggling' THEN 3 ELSE 4 END
