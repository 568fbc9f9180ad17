-- token_usage_daily: Cheeko token usage per usage_date and device, priced (metrics.md "Token usage").
-- Parameters: $first_day, $last_day; rows are priced in staging.priced_usage.
WITH priced AS (
    SELECT * FROM staging.priced_usage WHERE usage_date BETWEEN $first_day AND $last_day
)
SELECT
    usage_date,
    mac_address,
    any_value(owner_user_id) AS owner_user_id,
    any_value(llm_model) AS llm_model,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    sum(total_tokens)::BIGINT AS total_tokens,
    sum(input_audio_tokens)::BIGINT AS input_audio_tokens,
    sum(input_text_tokens)::BIGINT AS input_text_tokens,
    sum(input_cached_tokens)::BIGINT AS input_cached_tokens,
    sum(output_audio_tokens)::BIGINT AS output_audio_tokens,
    sum(output_text_tokens)::BIGINT AS output_text_tokens,
    sum(message_count)::BIGINT AS message_count,
    sum(session_count)::BIGINT AS session_count,
    sum(session_duration_seconds) AS session_duration_seconds,
    sum(total_response_duration_seconds) AS total_response_duration_seconds,
    weighted_ttft(avg_ttft_seconds, message_count) AS avg_ttft_seconds,
    CAST(sum(est_cost_usd) AS DECIMAL(18, 8)) AS est_cost_usd,
    any_value(price_sheet_version) AS price_sheet_version
FROM priced
GROUP BY usage_date, mac_address
