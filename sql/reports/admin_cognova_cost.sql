-- admin_cognova_cost: Cognova token_usage in the report's local day, by source (cost_usd as stored).
SELECT source, count(*) AS operations,
       sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))::BIGINT AS total_tokens,
       coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd
FROM raw_cognova.token_usage
WHERE created_at >= $window_start AND created_at < $window_end
GROUP BY source
ORDER BY cost_usd DESC, source
