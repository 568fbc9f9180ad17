-- cognova_cost_daily: Cognova token_usage per UTC day of created_at and source.
SELECT
    CAST(created_at AS DATE) AS day,
    source,
    count(*) AS operations,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    sum(input_tokens)::BIGINT + sum(output_tokens)::BIGINT AS total_tokens,
    sum(cost_usd::DOUBLE) AS cost_usd,
    sum(duration_ms)::BIGINT AS duration_ms
FROM raw_cognova.token_usage
WHERE CAST(created_at AS DATE) BETWEEN $first_day AND $last_day AND created_at <= $cutoff
GROUP BY day, source
