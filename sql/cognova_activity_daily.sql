-- cognova_activity_daily: one row per UTC day in [$first_day, $last_day] (metrics.md "Cognova operations").
WITH days AS (
    SELECT CAST(d AS DATE) AS day FROM range($first_day::TIMESTAMP, $last_day::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
),
conversations AS (
    SELECT CAST(started_at AS DATE) AS day, count(*) AS conversations_started
    FROM raw_cognova.conversations WHERE started_at <= $cutoff GROUP BY 1
),
messages AS (
    SELECT CAST(created_at AS DATE) AS day, count(*) AS messages,
           CAST(sum(stored_money(cost_usd)) AS DECIMAL(18, 8)) AS chat_cost_usd
    FROM raw_cognova.conversation_messages WHERE created_at <= $cutoff GROUP BY 1
),
created AS (
    SELECT CAST(created_at AS DATE) AS day, count(*) AS tasks_created FROM raw_cognova.tasks WHERE created_at <= $cutoff GROUP BY 1
),
completed AS (
    SELECT CAST(completed_at AS DATE) AS day, count(*) AS tasks_completed
    FROM raw_cognova.tasks WHERE completed_at <= $cutoff GROUP BY 1
),
reminders AS (
    SELECT CAST(remind_at AS DATE) AS day, count(*) AS reminders_due, count(*) FILTER (WHERE notified) AS reminders_notified
    FROM raw_cognova.reminders GROUP BY 1
),
hooks AS (
    SELECT CAST(created_at AS DATE) AS day, count(*) AS hook_events, count(*) FILTER (WHERE blocked) AS blocked_hook_events
    FROM raw_cognova.hook_events WHERE created_at <= $cutoff GROUP BY 1
)
SELECT
    d.day,
    coalesce(c.conversations_started, 0) AS conversations_started,
    coalesce(m.messages, 0) AS messages,
    m.chat_cost_usd,  -- null when no message reported a cost (marts.RULES["sums"])
    coalesce(t.tasks_created, 0) AS tasks_created,
    coalesce(k.tasks_completed, 0) AS tasks_completed,
    coalesce(r.reminders_due, 0) AS reminders_due,
    coalesce(r.reminders_notified, 0) AS reminders_notified,
    coalesce(h.hook_events, 0) AS hook_events,
    coalesce(h.blocked_hook_events, 0) AS blocked_hook_events
FROM days d
LEFT JOIN conversations c USING (day)
LEFT JOIN messages m USING (day)
LEFT JOIN created t USING (day)
LEFT JOIN completed k USING (day)
LEFT JOIN reminders r USING (day)
LEFT JOIN hooks h USING (day)
