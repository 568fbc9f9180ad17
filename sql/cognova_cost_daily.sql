-- cognova_cost_daily: Cognova token_usage per UTC day of created_at and source.
SELECT
    CAST(created_at AS DATE) AS day,
    source,
    count(*) AS operations,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    -- A null part counts 0; a day whose rows report neither part measured nothing (marts.RULES["sums"]).
    sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))
        FILTER (WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL)::BIGINT AS total_tokens,
    -- Each stored cost as a DECIMAL(18, 8), summed in decimal (marts.RULES["money"]).
    CAST(sum(stored_money(cost_usd)) AS DECIMAL(18, 8)) AS cost_usd,
    sum(duration_ms)::BIGINT AS duration_ms
FROM raw_cognova.token_usage
WHERE CAST(created_at AS DATE) BETWEEN $first_day AND $last_day AND created_at <= $cutoff
GROUP BY day, source
