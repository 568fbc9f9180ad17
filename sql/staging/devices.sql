-- devices: one device per normalised MAC (marts.RULES["devices"]): new on the earliest create_date of its
-- ai_device rows, with the owner, kid and agent of the most recently updated one; the zone of its local day
-- (RULES["local_day"]) and the LLM that prices its tokens (RULES["prices"]). Invalid MACs are no device.
CREATE OR REPLACE TABLE staging.devices AS
WITH registered AS (
    SELECT normal_mac(mac_address) AS mac_address, user_id, kid_id, agent_id, create_date, update_date, id
    FROM raw_cheeko.ai_device
    WHERE normal_mac(mac_address) IS NOT NULL
),
latest AS (
    SELECT *, min(create_date) OVER (PARTITION BY mac_address) AS first_created_at
    FROM registered
    QUALIFY row_number() OVER (PARTITION BY mac_address ORDER BY update_date DESC NULLS LAST, id DESC) = 1
),
known_zones AS (
    SELECT DISTINCT name FROM pg_timezone_names()
),
declared AS (
    -- The kid's zone wins over the owner's; a blank one is unset, a set but unknown one counts as UTC.
    SELECT l.*, coalesce(set_zone(k.timezone), set_zone(p.timezone)) AS declared_zone
    FROM latest l
    LEFT JOIN raw_cheeko.kid_profile k ON k.id = l.kid_id
    LEFT JOIN raw_cheeko.parent_profile p ON p.user_id = l.user_id
)
SELECT
    d.mac_address,
    d.user_id AS owner_user_id,
    d.kid_id,
    CASE WHEN d.declared_zone IN (SELECT name FROM known_zones) THEN d.declared_zone ELSE 'UTC' END AS zone,
    m.model_code AS llm_model,
    d.first_created_at AS created_at
FROM declared d
LEFT JOIN raw_cheeko.ai_agent a ON CAST(a.id AS VARCHAR) = CAST(d.agent_id AS VARCHAR)
LEFT JOIN raw_cheeko.ai_model_config m ON CAST(m.id AS VARCHAR) = CAST(a.llm_model_id AS VARCHAR);
