-- admin_tokens_by_model: Cheeko token usage on the report date (usage_date) per priced LLM model.
SELECT llm_model,
       count(DISTINCT mac_address) AS devices,
       sum(total_tokens)::BIGINT AS total_tokens,
       sum(est_cost_usd) AS est_cost_usd,
       weighted_ttft(avg_ttft_seconds, message_count) AS avg_ttft_seconds
FROM staging.priced_usage
WHERE usage_date = $report_date
GROUP BY llm_model
ORDER BY est_cost_usd DESC NULLS LAST, llm_model
