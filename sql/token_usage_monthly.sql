-- token_usage_monthly: per owner and calendar month of usage_date, up to $last_day (metrics.md "Token usage").
WITH usage AS (
    SELECT normal_mac(mac_address) AS mac_address, *  EXCLUDE (mac_address)
    FROM raw_cheeko.device_token_usage
    WHERE usage_date <= $last_day AND normal_mac(mac_address) IS NOT NULL
),
priced AS (
    SELECT u.*, d.owner_user_id,
           coalesce(p.input_per_million, dp.input_per_million) AS input_price,
           coalesce(p.output_per_million, dp.output_per_million) AS output_price,
           dp.version AS price_sheet_version
    FROM usage u
    LEFT JOIN staging.devices d USING (mac_address)
    LEFT JOIN staging.prices p ON p.model = d.llm_model
    CROSS JOIN (SELECT * FROM staging.prices WHERE model IS NULL) dp
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
    sum(avg_ttft_seconds * message_count) FILTER (WHERE avg_ttft_seconds IS NOT NULL AND message_count IS NOT NULL)::DOUBLE
        / nullif(sum(message_count) FILTER (WHERE avg_ttft_seconds IS NOT NULL AND message_count IS NOT NULL), 0) AS avg_ttft_seconds,
    sum((coalesce(input_tokens, 0) * input_price + coalesce(output_tokens, 0) * output_price) / 1e6) AS est_cost_usd,
    any_value(price_sheet_version) AS price_sheet_version
FROM priced
GROUP BY month, owner_user_id
