-- admin_agent_runs: Cognova cron agent runs started in the report's local day, per agent
-- (statuses as in marts.cognova_agent_runs_daily; success rate over finished runs).
SELECT coalesce(a.name, r.agent_id::VARCHAR) AS agent_name,
       count(*) AS runs,
       count(*) FILTER (WHERE r.status = 'success') AS success,
       count(*) FILTER (WHERE r.status = 'error') AS errors,
       count(*) FILTER (WHERE r.status = 'budget_exceeded') AS budget_exceeded,
       count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE r.status = 'success')::DOUBLE
           / nullif(count(*) FILTER (WHERE r.status IN ('success', 'error', 'budget_exceeded', 'cancelled')), 0)
           AS success_rate,
       -- money as the marts keep it (marts.RULES["money"]); null when no run reported a cost
       CAST(sum(stored_money(r.cost_usd)) AS DECIMAL(18, 8)) AS cost_usd
FROM raw_cognova.cron_agent_runs r LEFT JOIN raw_cognova.cron_agents a ON a.id = r.agent_id
WHERE r.started_at >= $window_start AND r.started_at < $window_end
GROUP BY ALL
ORDER BY errors + budget_exceeded DESC, runs DESC, agent_name
LIMIT 10
