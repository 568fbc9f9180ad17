-- devices: each registered device by normalised MAC, with the zone of its local day,
-- its owner, its kid and the LLM that prices its tokens (marts.RULES["local_day"], ["prices"]).
CREATE OR REPLACE TABLE staging.devices AS
WITH registered AS (
    -- ai_device is unique on the MAC as written; two spellings of one device keep the latest registration.
    SELECT normal_mac(mac_address) AS mac_address, user_id, kid_id, agent_id
    FROM raw_cheeko.ai_device
    WHERE normal_mac(mac_address) IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY normal_mac(mac_address) ORDER BY update_date DESC NULLS LAST, id) = 1
),
known_zones AS (
    SELECT DISTINCT name FROM pg_timezone_names()
),
declared AS (
    -- The kid's zone wins over the owner's; a zone that is set but unknown counts as UTC.
    SELECT r.*, coalesce(k.timezone, p.timezone) AS declared_zone
    FROM registered r
    LEFT JOIN raw_cheeko.kid_profile k ON k.id = r.kid_id
    LEFT JOIN raw_cheeko.parent_profile p ON p.user_id = r.user_id
)
SELECT
    d.mac_address,
    d.user_id AS owner_user_id,
    d.kid_id,
    CASE WHEN d.declared_zone IN (SELECT name FROM known_zones) THEN d.declared_zone ELSE 'UTC' END AS zone,
    m.model_code AS llm_model
FROM declared d
LEFT JOIN raw_cheeko.ai_agent a ON a.id = d.agent_id
LEFT JOIN raw_cheeko.ai_model_config m ON m.id = a.llm_model_id;
