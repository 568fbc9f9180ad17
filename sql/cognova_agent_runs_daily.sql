-- cognova_agent_runs_daily: cron agent runs per agent and UTC day of started_at (metrics.md "Cognova operations").
-- A run still 'running' more than 6 hours after it started (as of $as_of_time) is stale.
WITH runs AS (
    SELECT r.*, CAST(r.started_at AS DATE) AS day,
           r.status = 'running' AND r.started_at < $as_of_time - INTERVAL 6 HOUR AS is_stale
    FROM raw_cognova.cron_agent_runs r
    WHERE CAST(r.started_at AS DATE) BETWEEN $first_day AND $last_day AND r.started_at <= $cutoff
)
SELECT
    r.day,
    r.agent_id,
    any_value(a.name) AS agent_name,
    count(*) AS runs,
    count(*) FILTER (WHERE r.status = 'success') AS success,
    count(*) FILTER (WHERE r.status = 'error') AS error,
    count(*) FILTER (WHERE r.status = 'budget_exceeded') AS budget_exceeded,
    count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
    count(*) FILTER (WHERE r.status = 'running' AND NOT r.is_stale) AS running,
    count(*) FILTER (WHERE r.is_stale) AS stale,
    count(*) FILTER (WHERE r.status = 'success')
        / nullif(count(*) FILTER (WHERE r.status IN ('success', 'error', 'budget_exceeded', 'cancelled')), 0) AS success_rate,
    quantile_cont(r.duration_ms, 0.5) FILTER (WHERE r.status <> 'running') AS p50_duration_ms,
    quantile_cont(r.duration_ms, 0.95) FILTER (WHERE r.status <> 'running') AS p95_duration_ms,
    CAST(sum(stored_money(r.cost_usd)) AS DECIMAL(18, 8)) AS cost_usd,
    sum(r.input_tokens)::BIGINT AS input_tokens,
    sum(r.output_tokens)::BIGINT AS output_tokens
FROM runs r
LEFT JOIN raw_cognova.cron_agents a ON a.id = r.agent_id
GROUP BY r.day, r.agent_id
