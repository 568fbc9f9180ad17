-- priced_usage: Cheeko token rows with a valid MAC, their owner, and their cost priced by their device's LLM in the
-- price sheet, else its default (marts.RULES["prices"]): a DECIMAL(18, 8), rounded once per row (RULES["money"]);
-- null when the row reports neither input nor output tokens. One place for the pricing rule.
-- priced_usage_between(first_date, end_date): the rows with a usage_date in [first_date, end_date) (NULL bounds: all
-- of history); each row stands alone, so rollups.prepare rebuilds just the days a load replaced.
CREATE OR REPLACE MACRO priced_usage_between(first_date, end_date) AS TABLE
WITH usage AS (
    SELECT normal_mac(mac_address) AS mac_address, * EXCLUDE (mac_address)
    FROM raw_cheeko.device_token_usage
    WHERE normal_mac(mac_address) IS NOT NULL AND in_window(usage_date, first_date, end_date)
)
SELECT u.*, d.owner_user_id,
       CASE WHEN p.model IS NOT NULL THEN p.model ELSE 'default' END AS llm_model,
       CASE WHEN u.input_tokens IS NOT NULL OR u.output_tokens IS NOT NULL
            THEN CAST((coalesce(u.input_tokens, 0) * coalesce(p.input_per_million, dp.input_per_million)
                       + coalesce(u.output_tokens, 0) * coalesce(p.output_per_million, dp.output_per_million))
                      * 0.000001 AS DECIMAL(18, 8))
       END AS est_cost_usd,
       dp.version AS price_sheet_version
FROM usage u
LEFT JOIN staging.devices d USING (mac_address)
LEFT JOIN staging.prices p ON p.model = d.llm_model
CROSS JOIN (SELECT * FROM staging.prices WHERE model IS NULL) dp;
CREATE TABLE IF NOT EXISTS staging.priced_usage AS FROM priced_usage_between(NULL, NULL);
