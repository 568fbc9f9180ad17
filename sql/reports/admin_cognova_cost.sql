-- admin_cognova_cost: Cognova token_usage in the report's local day, by source. cost_usd as stored, made exact as
-- the marts do (marts.RULES["money"]: DECIMAL(18, 8) per row, summed in decimal; null when no row has a cost).
SELECT source, count(*) AS operations,
       sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))::BIGINT AS total_tokens,
       CAST(sum(stored_money(cost_usd)) AS DECIMAL(18, 8)) AS cost_usd
FROM raw_cognova.token_usage
WHERE created_at >= $window_start AND created_at < $window_end
GROUP BY source
ORDER BY cost_usd DESC NULLS LAST, source
