-- token_usage_monthly: per owner and calendar month of usage_date, up to $last_day (metrics.md "Token usage").
WITH priced AS (
    SELECT * FROM staging.priced_usage WHERE usage_date <= $last_day
)
SELECT
    CAST(date_trunc('month', usage_date) AS DATE) AS month,
    owner_user_id,
    count(DISTINCT mac_address) AS devices,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    sum(total_tokens)::BIGINT AS total_tokens,
    sum(message_count)::BIGINT AS message_count,
    sum(session_count)::BIGINT AS session_count,
    weighted_ttft(avg_ttft_seconds, message_count) AS avg_ttft_seconds,
    CAST(sum(est_cost_usd) AS DECIMAL(18, 8)) AS est_cost_usd,
    any_value(price_sheet_version) AS price_sheet_version
FROM priced
GROUP BY month, owner_user_id
